package pushauth_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// flakyStore fails challenge reads and resolutions while down, as a
// Redis store does while Redis is unreachable.
type flakyStore struct {
	pushauth.Store
	down atomic.Bool
}

var errStoreDown = errors.New("store down")

func (s *flakyStore) GetChallenge(ctx context.Context, id string) (*pushauth.Challenge, error) {
	if s.down.Load() {
		return nil, errStoreDown
	}
	return s.Store.GetChallenge(ctx, id)
}

func (s *flakyStore) Resolve(ctx context.Context, id string, to pushauth.Status, fraud bool, at time.Time) (*pushauth.Challenge, error) {
	if s.down.Load() {
		return nil, errStoreDown
	}
	return s.Store.Resolve(ctx, id, to, fraud, at)
}

// A request whose store failed while it was held gets an error, and its
// challenge, which could not be closed then, is closed as cancelled once
// the store answers again: the phone stops offering a prompt for a request
// that is gone.
func TestHeldChallengeIsClosedWhenTheStoreComesBack(t *testing.T) {
	store := &flakyStore{Store: memory.New(nil)}
	e, _ := pushauthtest.Engine(t, pushauth.Config{Store: store, Audit: memory.NewAuditLog(0, 0, nil), Logger: pushauthtest.Quiet(), Backstop: 20 * time.Millisecond})
	ctx := context.Background()
	_, der := pushauthtest.Key(t)
	cred, err := e.RegisterCredential(ctx, der, "none", "")
	if err != nil {
		t.Fatal(err)
	}
	user := &pushauth.User{Key: "u1", CredentialID: cred.ID, State: pushauth.UserActive}
	if err := store.PutUser(ctx, user); err != nil {
		t.Fatal(err)
	}

	started := make(chan *pushauth.Challenge, 1)
	done := make(chan error, 1)
	go func() {
		_, err := e.Hold(ctx, user, pushauth.ChallengeSpec{UserKey: user.Key, Rule: "login", Kind: "login", Timeout: time.Minute},
			func(c *pushauth.Challenge) { started <- c })
		done <- err
	}()
	c := <-started
	store.down.Store(true)
	select {
	case err := <-done:
		if !errors.Is(err, errStoreDown) {
			t.Fatalf("Hold with the store down: %v, want the store error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Hold did not give up 10s after the store went down")
	}
	if list, _ := e.PendingFor(ctx, cred); len(list) != 1 {
		t.Fatalf("pending while the store is down: %d, want the 1 it could not close", len(list))
	}

	store.down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := e.PendingFor(ctx, cred)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("challenge still pending 10s after the store came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := store.GetChallenge(ctx, c.ID)
	if err != nil || got.Status != pushauth.StatusCancelled {
		t.Fatalf("challenge after the store came back: %v %v, want cancelled", got, err)
	}
}
