package storetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

func activationCode(user string, expires time.Time) *pushauth.ActivationCode {
	return &pushauth.ActivationCode{
		ID:        uid("act"),
		User:      user,
		Kind:      pushauth.ActivationRecovery,
		Salt:      []byte{0, 1, 0xfe, 0xff, '"', '\\'},
		Hash:      bytes.Repeat([]byte{0xa5, 0x00}, 16),
		IssuedAt:  time.Now(),
		ExpiresAt: expires,
		IssuedBy:  "clerk «ü»@10.0.0.1",
	}
}

func sameCode(t *testing.T, what string, got *pushauth.ActivationCode, want pushauth.ActivationCode) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: nil", what)
	}
	g := *got
	g.IssuedAt, g.ExpiresAt = g.IssuedAt.UTC(), g.ExpiresAt.UTC()
	want.IssuedAt, want.ExpiresAt = want.IssuedAt.UTC(), want.ExpiresAt.UTC()
	if g.ID != want.ID || g.User != want.User || g.Kind != want.Kind || !bytes.Equal(g.Salt, want.Salt) ||
		!bytes.Equal(g.Hash, want.Hash) || !g.IssuedAt.Equal(want.IssuedAt) || !g.ExpiresAt.Equal(want.ExpiresAt) ||
		g.IssuedBy != want.IssuedBy || g.Failures != want.Failures {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, want)
	}
}

// testActivationCodes: one outstanding code per user, replaced by the
// next, failures counted against the code that was tried.
func testActivationCodes(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	user, other := uid("user")+"/ü{x}", uid("user")
	if _, err := s.GetActivationCode(ctx, user); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetActivationCode(none) = %v, want ErrNotFound", err)
	}
	first := activationCode(user, time.Now().Add(time.Hour))
	if err := s.PutActivationCode(ctx, first); err != nil {
		t.Fatalf("PutActivationCode: %v", err)
	}
	want := *first
	first.Hash[0] = 0 // the store must have copied
	got, err := s.GetActivationCode(ctx, user)
	if err != nil {
		t.Fatalf("GetActivationCode: %v", err)
	}
	want.Hash = bytes.Repeat([]byte{0xa5, 0x00}, 16)
	sameCode(t, "GetActivationCode", got, want)
	if _, err := s.GetActivationCode(ctx, other); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("another user's code = %v, want ErrNotFound", err)
	}

	if n, err := s.CountActivationFailure(ctx, user, want.ID); err != nil || n != 1 {
		t.Fatalf("CountActivationFailure = %d, %v; want 1", n, err)
	}
	if n, err := s.CountActivationFailure(ctx, user, want.ID); err != nil || n != 2 {
		t.Fatalf("CountActivationFailure = %d, %v; want 2", n, err)
	}
	want.Failures = 2
	got, _ = s.GetActivationCode(ctx, user)
	sameCode(t, "after two failures", got, want)

	// Issuing a new code voids the old one.
	second := activationCode(user, time.Now().Add(10*time.Minute))
	second.Kind = pushauth.ActivationBinding
	if err := s.PutActivationCode(ctx, second); err != nil {
		t.Fatalf("PutActivationCode(second): %v", err)
	}
	if _, err := s.CountActivationFailure(ctx, user, want.ID); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("CountActivationFailure(replaced code) = %v, want ErrNotFound", err)
	}
	if ok, err := s.TakeActivationCode(ctx, user, want.ID); err != nil || ok {
		t.Fatalf("TakeActivationCode(replaced code) = %v, %v; want false", ok, err)
	}
	got, _ = s.GetActivationCode(ctx, user)
	sameCode(t, "the replacing code", got, *second)

	if ok, err := s.TakeActivationCode(ctx, user, second.ID); err != nil || !ok {
		t.Fatalf("TakeActivationCode = %v, %v; want true", ok, err)
	}
	if ok, err := s.TakeActivationCode(ctx, user, second.ID); err != nil || ok {
		t.Fatalf("TakeActivationCode(again) = %v, %v; want false", ok, err)
	}
	if _, err := s.GetActivationCode(ctx, user); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetActivationCode after take = %v, want ErrNotFound", err)
	}
	if _, err := s.CountActivationFailure(ctx, user, second.ID); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("CountActivationFailure after take = %v, want ErrNotFound", err)
	}
}

// testActivationRace: failures are counted exactly and a code is taken by
// exactly one of many instances at once.
func testActivationRace(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	user := uid("user")
	c := activationCode(user, time.Now().Add(time.Hour))
	if err := s.PutActivationCode(ctx, c); err != nil {
		t.Fatal(err)
	}
	const n = 24
	counts := atOnce(t, n, "CountActivationFailure", func() (int, error) { return s.CountActivationFailure(ctx, user, c.ID) })
	slices.Sort(counts)
	for i, k := range counts {
		if k != i+1 {
			t.Fatalf("concurrent failure counts = %v, want 1..%d each once", counts, n)
		}
	}
	taken := 0
	for _, ok := range atOnce(t, n, "TakeActivationCode", func() (bool, error) { return s.TakeActivationCode(ctx, user, c.ID) }) {
		if ok {
			taken++
		}
	}
	if taken != 1 {
		t.Fatalf("%d concurrent takes succeeded, want exactly 1", taken)
	}
}

// testBindingExpiry waits out short lifetimes: an activation code, and a
// credential nobody bound, are gone at their expiry; a credential stored
// again without one lives on.
func testBindingExpiry(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	const life = 400 * time.Millisecond
	now := time.Now()
	user := uid("user")
	if err := s.PutActivationCode(ctx, activationCode(user, now.Add(life))); err != nil {
		t.Fatal(err)
	}
	unbound := &pushauth.Credential{ID: uid("cred"), Platform: "none", CreatedAt: now, ExpiresAt: now.Add(life)}
	bound := &pushauth.Credential{ID: uid("cred"), Platform: "none", CreatedAt: now, ExpiresAt: now.Add(life)}
	for _, c := range []*pushauth.Credential{unbound, bound} {
		if err := s.PutCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.GetCredential(ctx, unbound.ID); err != nil || !got.ExpiresAt.Equal(unbound.ExpiresAt) {
		t.Fatalf("GetCredential before expiry = %+v, %v", got, err)
	}
	// Binding keeps the credential: stored again with no expiry.
	bound.ExpiresAt = time.Time{}
	if err := s.PutCredential(ctx, bound); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetActivationCode(ctx, user); err != nil {
		t.Fatalf("GetActivationCode before expiry: %v", err)
	}

	time.Sleep(time.Until(now.Add(life + 500*time.Millisecond)))

	if _, err := s.GetActivationCode(ctx, user); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetActivationCode after expiry = %v, want ErrNotFound", err)
	}
	if _, err := s.GetCredential(ctx, unbound.ID); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetCredential of an unbound credential after its expiry = %v, want ErrNotFound", err)
	}
	if got, err := s.GetCredential(ctx, bound.ID); err != nil || !got.ExpiresAt.IsZero() {
		t.Fatalf("GetCredential of the bound credential = %+v, %v; want it, without expiry", got, err)
	}
}
