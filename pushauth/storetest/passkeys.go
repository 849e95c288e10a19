package storetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// The PasskeyStore contract: a passkey is stored as given and listed only
// for its user, oldest first; a second one with the same ID is refused;
// a counter is accepted once and only when it grows (assertions sent at
// once with the same counter: exactly one accepted), except for
// authenticators that keep none; a deleted passkey is gone.
func testPasskeys(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	user, other := uid("pk-user"), uid("pk-other")
	at := time.Unix(time.Now().Unix(), 0).UTC()
	mk := func(id string, created time.Time, count uint32) *pushauth.Passkey {
		return &pushauth.Passkey{ID: []byte(id), UserKey: user, PublicKey: []byte{0xa5, 0x01, 0x02, 0x03, 0x26}, SignCount: count,
			AAGUID: bytes.Repeat([]byte{0x42}, 16), Payment: true, Browser: `Mozilla/5.0 "x" \u202E`, ClientIP: "2001:db8::1",
			Challenge: "ch-" + id, CreatedAt: created}
	}
	if list, err := s.Passkeys(ctx, user); err != nil || len(list) != 0 {
		t.Fatalf("passkeys of a user with none: %v %v", list, err)
	}
	a, b := mk("cred\x00a", at.Add(time.Second), 5), mk("cred-b", at, 0)
	for _, p := range []*pushauth.Passkey{a, b} {
		if err := s.AddPasskey(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddPasskey(ctx, mk("cred-b", at, 0)); !errors.Is(err, pushauth.ErrExists) {
		t.Fatalf("same ID again: %v, want ErrExists", err)
	}
	dup := mk("cred-b", at, 0)
	dup.UserKey = other
	if err := s.AddPasskey(ctx, dup); err != nil {
		t.Fatalf("another user's passkey with that ID: %v", err)
	}
	list, err := s.Passkeys(ctx, user)
	if err != nil || len(list) != 2 {
		t.Fatalf("passkeys: %d %v, want 2", len(list), err)
	}
	if !bytes.Equal(list[0].ID, b.ID) || !bytes.Equal(list[1].ID, a.ID) {
		t.Fatalf("order %q, %q: want oldest first", list[0].ID, list[1].ID)
	}
	got := list[1]
	if !bytes.Equal(got.PublicKey, a.PublicKey) || got.SignCount != 5 || !bytes.Equal(got.AAGUID, a.AAGUID) || !got.Payment ||
		got.Browser != a.Browser || got.ClientIP != a.ClientIP || got.Challenge != a.Challenge || !got.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("stored %+v, want %+v", got, a)
	}

	// The counter: at once, one of the assertions carrying 6 wins.
	ok := 0
	for _, p := range atOnceErr(t, 10, func() (*pushauth.Passkey, error) { return s.UsePasskey(ctx, user, a.ID, 6, at.Add(time.Minute)) }) {
		if p != nil {
			ok++
			if p.SignCount != 6 || !p.LastUsed.Equal(at.Add(time.Minute)) {
				t.Fatalf("used: %+v", p)
			}
		}
	}
	if ok != 1 {
		t.Fatalf("10 assertions with counter 6 at once: %d accepted, want 1", ok)
	}
	for _, n := range []uint32{6, 5, 0} {
		if _, err := s.UsePasskey(ctx, user, a.ID, n, at); !errors.Is(err, pushauth.ErrSignCount) {
			t.Fatalf("counter %d after 6: %v, want ErrSignCount", n, err)
		}
	}
	if p, err := s.UsePasskey(ctx, user, a.ID, 7, at); err != nil || p.SignCount != 7 {
		t.Fatalf("counter 7 after 6: %v %v", p, err)
	}
	// No counter kept (0 and 0): every use is accepted; then 0 after 3 is not.
	for range 2 {
		if _, err := s.UsePasskey(ctx, user, b.ID, 0, at); err != nil {
			t.Fatalf("counterless authenticator: %v", err)
		}
	}
	if _, err := s.UsePasskey(ctx, user, b.ID, 3, at); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UsePasskey(ctx, user, b.ID, 0, at); !errors.Is(err, pushauth.ErrSignCount) {
		t.Fatalf("counter 0 after 3: %v, want ErrSignCount", err)
	}
	if _, err := s.UsePasskey(ctx, user, []byte("nope"), 9, at); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("unknown passkey: %v, want ErrNotFound", err)
	}
	if _, err := s.UsePasskey(ctx, other, a.ID, 9, at); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("another user's use of a's ID: %v, want ErrNotFound", err)
	}

	// A passkey challenge keeps its method and nonce in every record the
	// store hands out: the engine hides it from the phone by its method.
	cred := uid("pk-cred")
	c := challenge(user, cred, time.Now().Add(time.Minute))
	c.Method, c.PasskeyNonce, c.CodeDigits = pushauth.MethodPasskey, []byte{0, 1, 2, 0xff, 0x80, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 42}, 0
	if _, err := s.CreateChallenge(ctx, c, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	pending, err := s.PendingForCredential(ctx, cred)
	if err != nil || len(pending) != 1 || pending[0].Method != pushauth.MethodPasskey {
		t.Fatalf("pending records %+v (%v): want the one passkey challenge, method kept", pending, err)
	}
	got1, err := s.GetChallenge(ctx, c.ID)
	if err != nil || got1.Method != pushauth.MethodPasskey || !bytes.Equal(got1.PasskeyNonce, c.PasskeyNonce) {
		t.Fatalf("read back: %+v %v", got1, err)
	}
	res, err := s.Resolve(ctx, c.ID, pushauth.StatusApproved, false, time.Now())
	if err != nil || res.Method != pushauth.MethodPasskey {
		t.Fatalf("resolved: %+v %v", res, err)
	}
	if got1, err = s.GetChallenge(ctx, c.ID); err != nil || got1.Method != pushauth.MethodPasskey || !bytes.Equal(got1.PasskeyNonce, c.PasskeyNonce) {
		t.Fatalf("read back after resolve: %+v %v", got1, err)
	}

	if err := s.DeletePasskey(ctx, user, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePasskey(ctx, user, a.ID); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("deleting twice: %v, want ErrNotFound", err)
	}
	if list, _ := s.Passkeys(ctx, user); len(list) != 1 || !bytes.Equal(list[0].ID, b.ID) {
		t.Fatalf("after delete: %v", list)
	}
	if list, _ := s.Passkeys(ctx, other); len(list) != 1 {
		t.Fatalf("the other user's passkeys: %v", list)
	}
}

// atOnceErr runs f n times at once and returns the results of the calls
// that succeeded (nil for ErrSignCount); any other error fails t.
func atOnceErr(t *testing.T, n int, f func() (*pushauth.Passkey, error)) []*pushauth.Passkey {
	t.Helper()
	type res struct {
		p   *pushauth.Passkey
		err error
	}
	ch := make(chan res, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			p, err := f()
			ch <- res{p, err}
		}()
	}
	close(start)
	out := make([]*pushauth.Passkey, 0, n)
	for range n {
		r := <-ch
		if r.err != nil && !errors.Is(r.err, pushauth.ErrSignCount) {
			t.Fatalf("UsePasskey: %v", r.err)
		}
		out = append(out, r.p)
	}
	return out
}
