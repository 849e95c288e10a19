package pushauth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// testEngine is an engine on a memory store with n enrolled users
// ("u0"...), all on one poll-mode credential.
func testEngine(t *testing.T, cfg pushauth.Config, n int) (*pushauth.Engine, *pushauth.Credential, []*pushauth.User) {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = memory.New(nil)
	}
	cfg.Logger = pushauthtest.Quiet()
	e, err := pushauth.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	_, der := pushauthtest.Key(t)
	ctx := context.Background()
	cred, err := e.RegisterCredential(ctx, der, "none", "")
	if err != nil {
		t.Fatal(err)
	}
	var users []*pushauth.User
	for i := range n {
		u := &pushauth.User{Key: "u" + string(rune('0'+i)), CredentialID: cred.ID, State: pushauth.UserActive}
		if err := cfg.Store.PutUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	return e, cred, users
}

// await starts a poll and reports its error once it ends (nil for a poll
// that waited until ctx ended).
func await(e *pushauth.Engine, ctx context.Context, id, ip string) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := e.Await(ctx, id, ip)
		ch <- err
	}()
	return ch
}

func refusedNow(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if !errors.Is(err, pushauth.ErrTooManyPolls) {
			t.Fatalf("%s: %v, want ErrTooManyPolls", what, err)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: still waiting, want refused at once", what)
	}
}

func stillWaiting(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s ended with %v, want it waiting", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestLongPollsAreBoundedApartFromHeldRequests: polls are limited per
// challenge, per address and in all, and never take the slots of held
// requests (MaxHeld), so a flood of polls leaves other logins held.
func TestLongPollsAreBoundedApartFromHeldRequests(t *testing.T) {
	e, _, users := testEngine(t, pushauth.Config{MaxHeld: 2, MaxPolls: 5, MaxPollsPerIP: 3}, 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(u *pushauth.User) *pushauth.Challenge {
		c, err := e.Start(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "transfer", Kind: "transaction", Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c0, c1, c2 := start(users[0]), start(users[1]), start(users[2])

	// Per challenge: two.
	a := await(e, ctx, c0.ID, "198.51.100.1")
	b := await(e, ctx, c0.ID, "198.51.100.2")
	stillWaiting(t, a, "first poll")
	stillWaiting(t, b, "second poll")
	refusedNow(t, await(e, ctx, c0.ID, "198.51.100.3"), "third poll on one challenge")
	// Per address: three.
	x := await(e, ctx, c1.ID, "203.0.113.7")
	y := await(e, ctx, c1.ID, "203.0.113.7")
	z := await(e, ctx, c2.ID, "203.0.113.7")
	stillWaiting(t, z, "third poll from one address")
	refusedNow(t, await(e, ctx, c2.ID, "203.0.113.7"), "fourth poll from one address")
	// In all: five.
	refusedNow(t, await(e, ctx, c2.ID, "192.0.2.1"), "sixth poll in all")

	// Five polls wait, and both held slots are still free.
	held := make(chan error, 2)
	for _, u := range users[3:5] {
		go func() {
			_, err := e.Hold(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute}, nil)
			held <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	polls := func() int { _, p := pushauth.Waiting(e); return p }
	heldNow := func() int { h, _ := pushauth.Waiting(e); return h }
	for heldNow() != 2 || polls() != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d held and %d polls waiting, want 2 and 5", heldNow(), polls())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-held:
		t.Fatalf("a login was answered while polls waited: %v", err)
	default:
	}

	// A decision answers the polls of its challenge, and frees their slots.
	if _, err := e.CancelFromBrowser(ctx, c0.ID); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan error{a, b} {
		if err := <-ch; err != nil {
			t.Fatalf("poll of a cancelled challenge: %v", err)
		}
	}
	again := await(e, ctx, c0.ID, "198.51.100.3")
	if err := <-again; err != nil {
		t.Fatalf("poll after the slots were freed: %v", err)
	}
	cancel()
	for _, ch := range []<-chan error{x, y, z} {
		<-ch
	}
}
