package pushauth_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
)

// outboxTypes claims every queued notification and returns their types.
func outboxTypes(t *testing.T, s pushauth.Store) []string {
	t.Helper()
	ns, err := s.ClaimNotifications(context.Background(), time.Now().Add(time.Hour), 100, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range ns {
		out = append(out, n.Type)
		_ = s.AckNotification(context.Background(), n.ID)
	}
	return out
}

// TestPasskeyChallenges: a passkey challenge is never the phone's; a
// passkey is added only with an approved passkey.add challenge of the same
// user, once per approval, and announced; a counter that does not grow
// locks the user and tells her.
func TestPasskeyChallenges(t *testing.T) {
	e, mem := pushauthtest.Engine(t, pushauth.Config{})
	ctx := context.Background()
	u, cred, _ := pushauthtest.Phone(t, e, "alice")
	_ = outboxTypes(t, mem)

	login, err := e.Start(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute, Passkey: true, CodeDigits: 6})
	if err != nil {
		t.Fatal(err)
	}
	if login.Method != pushauth.MethodPasskey || len(login.PasskeyNonce) != 16 || login.CodeDigits != 0 || login.Code != "" {
		t.Fatalf("passkey challenge: method %q nonce %d bytes, %d code digits", login.Method, len(login.PasskeyNonce), login.CodeDigits)
	}
	if list, err := e.PendingFor(ctx, cred); err != nil || len(list) != 0 {
		t.Fatalf("the phone is offered %d challenges (%v), want none", len(list), err)
	}
	if _, err := e.ChallengeFor(ctx, cred, login.ID); !errors.Is(err, pushauth.ErrChallengeNotFound) {
		t.Fatalf("the phone reads a passkey challenge: %v", err)
	}
	if err := e.Resend(ctx, login); !errors.Is(err, pushauth.ErrConflict) {
		t.Fatalf("resend of a passkey challenge: %v, want ErrConflict", err)
	}

	// An approved login is no passkey.add approval.
	if _, err := e.ApproveWithPasskey(ctx, login, []byte("nope"), 1); !errors.Is(err, pushauth.ErrUnknownPasskey) {
		t.Fatalf("an unknown passkey: %v", err)
	}
	pk := func() *pushauth.Passkey {
		return &pushauth.Passkey{ID: []byte("cred-1"), UserKey: u.Key, PublicKey: []byte{1}, SignCount: 3, Payment: true, Browser: "Chrome", ClientIP: "192.0.2.9"}
	}
	add, err := e.Start(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: pushauth.KindPasskeyAdd, Kind: pushauth.KindPasskeyAdd, Timeout: time.Minute, CodeDigits: 6})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.AddPasskey(ctx, add, pk()); !errors.Is(err, pushauth.ErrNotPasskeyAdd) {
		t.Fatalf("with a pending passkey.add: %v", err)
	}
	approved, err := e.ApproveWithCode(ctx, add.ID)
	if err != nil {
		t.Fatal(err)
	}
	other := pk()
	other.UserKey = "mallory"
	if err := e.AddPasskey(ctx, approved, other); !errors.Is(err, pushauth.ErrNotPasskeyAdd) {
		t.Fatalf("another user's passkey on alice's approval: %v", err)
	}
	if err := e.AddPasskey(ctx, approved, pk()); err != nil {
		t.Fatal(err)
	}
	if got := outboxTypes(t, mem); !slices.Contains(got, pushauth.EventPasskeyAdded) {
		t.Fatalf("outbox %v, want %s", got, pushauth.EventPasskeyAdded)
	}
	second := pk()
	second.ID = []byte("cred-2")
	if err := e.AddPasskey(ctx, approved, second); !errors.Is(err, pushauth.ErrNotPasskeyAdd) {
		t.Fatalf("a second passkey on one approval: %v", err)
	}

	// The counter: 4 after 3 approves; 4 again is a clone.
	login, err = e.Start(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute, Passkey: true})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.ApproveWithPasskey(ctx, login, []byte("cred-1"), 4); err != nil || c.Status != pushauth.StatusApproved {
		t.Fatalf("approve with counter 4: %v %v", c, err)
	}
	login, err = e.Start(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute, Passkey: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ApproveWithPasskey(ctx, login, []byte("cred-1"), 4); !errors.Is(err, pushauth.ErrSignCount) {
		t.Fatalf("counter 4 again: %v, want ErrSignCount", err)
	}
	if c, _ := mem.GetChallenge(ctx, login.ID); c.Status != pushauth.StatusDenied {
		t.Fatalf("the clone's challenge is %s, want denied", c.Status)
	}
	if st, _ := mem.GetUser(ctx, u.Key); st.State != pushauth.UserLocked {
		t.Fatalf("after a clone the user is %s, want locked", st.State)
	}
	got := outboxTypes(t, mem)
	if !slices.Contains(got, pushauth.EventPasskeyCloned) || !slices.Contains(got, pushauth.EventLocked) {
		t.Fatalf("outbox %v, want %s and %s", got, pushauth.EventPasskeyCloned, pushauth.EventLocked)
	}
	// The bank removes it: announced.
	if err := e.RemovePasskey(ctx, u.Key, []byte("cred-1"), "ops"); err != nil {
		t.Fatal(err)
	}
	if got := outboxTypes(t, mem); !slices.Contains(got, pushauth.EventPasskeyRemoved) {
		t.Fatalf("outbox %v, want %s", got, pushauth.EventPasskeyRemoved)
	}
}
