package redis

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// simulateFailover gives the primary a new replication ID, as a promoted
// replica has, and drops the writes a failover could lose: here the used
// marker and the approval (the record goes back to pending).
func simulateFailover(t *testing.T, rc *goredis.Client, lost ...func()) {
	t.Helper()
	for _, f := range lost {
		f()
	}
	if err := rc.Do(ctxT(t), "DEBUG", "CHANGE-REPL-ID").Err(); err != nil {
		t.Fatalf("DEBUG CHANGE-REPL-ID: %v", err)
	}
}

// TestNothingFromBeforeAFailoverIsUsable: after the primary changes, a
// challenge created before it can be neither approved nor replayed, also
// through an instance that has not noticed the failover yet, and markers
// whose loss the failover may have caused cannot be trusted by such an
// instance either; challenges created after it work.
func TestNothingFromBeforeAFailoverIsUsable(t *testing.T) {
	old := epochCheckInterval
	epochCheckInterval = time.Hour // the instances notice only through their own calls
	t.Cleanup(func() { epochCheckInterval = old })
	srv := redistest.StartServer(t, "--enable-debug-command", "yes")
	prefix := uniquePrefix()
	noticing := open(t, []string{srv.Addr()}, prefix)
	stale := open(t, []string{srv.Addr()}, prefix)
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rc.Close()
	ctx := ctxT(t)
	var told atomic.Int32
	stop := noticing.WatchFailover(func() { told.Add(1) })
	defer stop()

	now := time.Now()
	mk := func(s *Store, id, user string) {
		t.Helper()
		c := &pushauth.Challenge{ID: id, UserKey: user, CredentialID: "cred1", Status: pushauth.StatusPending,
			CreatedAt: now, ExpiresAt: now.Add(time.Minute), Context: "{}"}
		if _, err := s.CreateChallenge(ctx, c, now.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	mk(noticing, "pending-before", "alice")
	mk(noticing, "approved-before", "bob")
	if _, err := noticing.Resolve(ctx, "approved-before", pushauth.StatusApproved, false, now); err != nil {
		t.Fatal(err)
	}
	if fresh, err := noticing.UseJTI(ctx, "replay/approved-before", now.Add(time.Minute)); err != nil || !fresh {
		t.Fatal(fresh, err)
	}
	before := noticing.PrimaryID()

	simulateFailover(t, rc, func() {
		// the replay marker never reached the replica
		_ = rc.Del(ctx, noticing.jtiKey("replay/approved-before")).Err()
	})

	// The stale instance: its first fenced call fails, and teaches it.
	if fresh, err := stale.UseJTI(ctx, "replay/approved-before", now.Add(time.Minute)); !errors.Is(err, ErrFailover) || fresh {
		t.Fatalf("replay marker through the stale instance: %v %v; want ErrFailover", fresh, err)
	}
	if stale.PrimaryID() == before || stale.LastFailover().IsZero() {
		t.Fatalf("the stale instance did not learn of the failover (primary %s, last failover %s)", stale.PrimaryID(), stale.LastFailover())
	}
	if c, err := stale.GetChallenge(ctx, "approved-before"); err != nil || c.Status != pushauth.StatusCancelled {
		t.Fatalf("a challenge approved before the failover reads %+v, %v; want cancelled (its replay may be lost)", c, err)
	}

	// The other instance has noticed nothing yet: the script refuses the
	// approval anyway, cancels the challenge, and the instance learns.
	if c, err := noticing.Resolve(ctx, "pending-before", pushauth.StatusApproved, false, time.Now()); !errors.Is(err, pushauth.ErrConflict) || c.Status != pushauth.StatusCancelled {
		t.Fatalf("approving a challenge from before the failover: %+v, %v; want a conflict, cancelled", c, err)
	}
	if told.Load() != 1 {
		t.Fatalf("WatchFailover called %d times, want once", told.Load())
	}
	if c, err := stale.PendingForCredential(ctx, "cred1"); err != nil || len(c) != 0 {
		t.Fatalf("the phone still lists %d challenges from before the failover (%v)", len(c), err)
	}
	if c, err := noticing.Resolve(ctx, "approved-before", pushauth.StatusCancelled, false, time.Now()); !errors.Is(err, pushauth.ErrConflict) || c.Status != pushauth.StatusCancelled {
		t.Fatalf("closing an approved challenge from before the failover: %+v, %v", c, err)
	}

	// After the failover: new challenges and markers work as ever.
	mk(stale, "after", "carol")
	if c, err := noticing.Resolve(ctx, "after", pushauth.StatusApproved, false, time.Now()); err != nil || c.Status != pushauth.StatusApproved {
		t.Fatalf("approving a challenge created after the failover: %+v, %v", c, err)
	}
	if fresh, err := stale.UseJTI(ctx, "replay/after", time.Now().Add(time.Minute)); err != nil || !fresh {
		t.Fatalf("a marker after the failover: %v %v", fresh, err)
	}

	// An instance started after the failover knows when it happened.
	late := open(t, []string{srv.Addr()}, prefix)
	deadline := time.Now().Add(5 * time.Second)
	for late.LastFailover().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("an instance started after the failover does not know of it")
		}
		time.Sleep(20 * time.Millisecond)
		late.Close()
		late = open(t, []string{srv.Addr()}, prefix)
	}
	if d := late.LastFailover().Sub(stale.LastFailover()); d > time.Second || d < -time.Second {
		t.Fatalf("failover seen at %s by one instance and %s by another", stale.LastFailover(), late.LastFailover())
	}
}

// TestBackgroundCheckNoticesFailover: with no call of its own, an instance
// notices a failover within a check interval and tells its engine.
func TestBackgroundCheckNoticesFailover(t *testing.T) {
	old := epochCheckInterval
	epochCheckInterval = 50 * time.Millisecond
	t.Cleanup(func() { epochCheckInterval = old })
	srv := redistest.StartServer(t, "--enable-debug-command", "yes")
	s := open(t, []string{srv.Addr()}, uniquePrefix())
	told := make(chan struct{}, 1)
	stop := s.WatchFailover(func() { told <- struct{}{} })
	defer stop()
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rc.Close()
	simulateFailover(t, rc)
	select {
	case <-told:
	case <-time.After(5 * time.Second):
		t.Fatal("the background check did not notice the new primary")
	}
}
