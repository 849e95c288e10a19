package pushauth_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// failingOverStore is a memory store whose primary can "change", as a
// Redis store reports a Sentinel failover.
type failingOverStore struct {
	*memory.Store
	mu  sync.Mutex
	at  time.Time
	fns map[int]func()
}

func (s *failingOverStore) WatchFailover(fn func()) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fns == nil {
		s.fns = map[int]func(){}
	}
	id := len(s.fns)
	s.fns[id] = fn
	return func() { s.mu.Lock(); delete(s.fns, id); s.mu.Unlock() }
}

func (s *failingOverStore) LastFailover() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at
}

// GetChallenge reads a live challenge created before the failover as
// cancelled, as the Redis store does.
func (s *failingOverStore) GetChallenge(ctx context.Context, id string) (*pushauth.Challenge, error) {
	c, err := s.Store.GetChallenge(ctx, id)
	at := s.LastFailover()
	if err == nil && !at.IsZero() && c.CreatedAt.Before(at) && (c.Status == pushauth.StatusPending || c.Status == pushauth.StatusApproved) {
		c.Status = pushauth.StatusCancelled
	}
	return c, err
}

func (s *failingOverStore) failover(at time.Time) {
	s.mu.Lock()
	s.at = at
	fns := make([]func(), 0, len(s.fns))
	for _, fn := range s.fns {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// TestFailoverCancelsHeldChallenges: when the store reports a new primary,
// the requests held here are answered at once (cancelled), not at their
// timeout, and a late approval of one is refused.
func TestFailoverCancelsHeldChallenges(t *testing.T) {
	store := &failingOverStore{Store: memory.New(nil)}
	e, _, users := testEngine(t, pushauth.Config{Store: store}, 2)
	ctx := context.Background()
	type answer struct {
		c   *pushauth.Challenge
		err error
	}
	answers := make(chan answer, 2)
	started := make(chan *pushauth.Challenge, 2)
	for _, u := range users {
		go func() {
			c, err := e.Hold(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute},
				func(c *pushauth.Challenge) { started <- c })
			answers <- answer{c, err}
		}()
	}
	first := <-started
	<-started
	store.failover(time.Now())
	for range users {
		select {
		case a := <-answers:
			if a.err != nil || a.c.Status != pushauth.StatusCancelled {
				t.Fatalf("held request after the failover: %+v, %v; want cancelled", a.c, a.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a held request was not answered 5s after the failover (timeout 1m)")
		}
	}
	if c, err := store.Resolve(ctx, first.ID, pushauth.StatusApproved, false, time.Now()); err == nil {
		t.Fatalf("approving a challenge cancelled by the failover succeeded: %+v", c)
	}

	// A request held since is left alone by a later notice of the same
	// failover (another instance's script reply, say).
	later := make(chan *pushauth.Challenge, 1)
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		c, _ := e.Hold(hctx, users[0], pushauth.ChallengeSpec{UserKey: users[0].Key, Rule: "login", Kind: "login", Timeout: time.Minute},
			func(c *pushauth.Challenge) { later <- c })
		answers <- answer{c, nil}
	}()
	fresh := <-later
	store.failover(store.LastFailover())
	time.Sleep(100 * time.Millisecond)
	if c, err := store.Store.GetChallenge(ctx, fresh.ID); err != nil || c.Status != pushauth.StatusPending {
		t.Fatalf("a challenge created after the failover is %+v, %v; want it pending", c, err)
	}

	if evs, _ := e.Audit().Query(ctx, pushauth.AuditQuery{Type: pushauth.AuditCancelled}); len(evs) != 2 {
		t.Fatalf("%d cancellations audited, want 2", len(evs))
	}
}

// TestCodesValidAtAFailoverAreRefused: a security code that was valid when
// the primary changed may have been used on a write the new primary never
// got, so it is refused for a while; the next codes work.
func TestCodesValidAtAFailoverAreRefused(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 10, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	store := &failingOverStore{Store: memory.New(clock)}
	e, cred, _ := testEngine(t, pushauth.Config{Store: store, Now: clock}, 0)
	ctx := context.Background()
	code := func(at time.Time) string {
		c, err := totp.GenerateCode(cred.OTPSecret, at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	failover := now
	store.failover(failover)

	for _, tc := range []struct {
		name   string
		now    time.Time
		codeAt time.Time
		want   bool
	}{
		{"the code of the failover's step", failover, failover, false},
		{"the step before it", failover.Add(20 * time.Second), failover.Add(-30 * time.Second), false},
		{"the step after it, right after", failover.Add(25 * time.Second), failover.Add(30 * time.Second), false},
		{"two steps later", failover.Add(60 * time.Second), failover.Add(60 * time.Second), true},
		{"long after", failover.Add(10 * time.Minute), failover.Add(10 * time.Minute), true},
	} {
		set(tc.now)
		if got, _ := e.CheckCode(ctx, cred, code(tc.codeAt)); got != tc.want {
			t.Errorf("%s: CheckCode = %v, want %v", tc.name, got, tc.want)
		}
	}
}
