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

// newReplicationID gives the primary a new replication ID, as a promoted
// replica has, after dropping the writes lost: what a failover does to the
// data, without (yet) what it does to the connections.
func newReplicationID(t *testing.T, rc *goredis.Client, lost ...func()) {
	t.Helper()
	for _, f := range lost {
		f()
	}
	if err := rc.Do(ctxT(t), "DEBUG", "CHANGE-REPL-ID").Err(); err != nil {
		t.Fatalf("DEBUG CHANGE-REPL-ID: %v", err)
	}
}

// TestNothingFromBeforeAFailoverIsUsable: after the primary changes, a
// challenge created before it can be neither approved nor replayed. A
// failover leaves only new connections, and each learns the new primary's
// replication ID before its first command: the first instance to resolve
// such a challenge cancels it, the other reads one that was approved (its
// replay marker lost) as cancelled, and both learn of the failover without
// their background check; challenges created after it work.
func TestNothingFromBeforeAFailoverIsUsable(t *testing.T) {
	old := epochCheckInterval
	epochCheckInterval = time.Hour // the instances notice only through their own calls
	t.Cleanup(func() { epochCheckInterval = old })
	srv := redistest.StartServer(t, "--enable-debug-command", "yes")
	prefix := uniquePrefix()
	first := open(t, []string{srv.Addr()}, prefix)
	second := open(t, []string{srv.Addr()}, prefix)
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rc.Close()
	ctx := ctxT(t)
	var told atomic.Int32
	stop := first.WatchFailover(func() { told.Add(1) })
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
	mk(first, "pending-before", "alice")
	mk(first, "approved-before", "bob")
	if _, err := first.Resolve(ctx, "approved-before", pushauth.StatusApproved, false, now); err != nil {
		t.Fatal(err)
	}
	if fresh, err := first.UseJTI(ctx, "replay/approved-before", now.Add(time.Minute)); err != nil || !fresh {
		t.Fatal(fresh, err)
	}
	before := first.PrimaryID()

	newReplicationID(t, rc, func() {
		// the replay marker never reached the replica
		_ = rc.Del(ctx, first.jtiKey("replay/approved-before")).Err()
	})
	// The old primary's connections are gone.
	if err := rc.Do(ctx, "CLIENT", "KILL", "TYPE", "normal").Err(); err != nil {
		t.Fatal(err)
	}
	retry := func(f func() error) {
		for range 5 { // the first call may meet a killed connection
			if f() == nil {
				return
			}
		}
	}

	var c *pushauth.Challenge
	var err error
	retry(func() error {
		c, err = first.Resolve(ctx, "pending-before", pushauth.StatusApproved, false, time.Now())
		return err
	})
	if !errors.Is(err, pushauth.ErrConflict) || c.Status != pushauth.StatusCancelled {
		t.Fatalf("approving a challenge from before the failover: %+v, %v; want a conflict, cancelled", c, err)
	}
	if told.Load() != 1 || first.LastFailover().IsZero() || first.PrimaryID() == before {
		t.Fatalf("WatchFailover called %d times (last failover %s), want once", told.Load(), first.LastFailover())
	}
	retry(func() error { c, err = second.GetChallenge(ctx, "approved-before"); return err })
	if err != nil || c.Status != pushauth.StatusCancelled {
		t.Fatalf("a challenge approved before the failover reads %+v, %v; want cancelled (its replay may be lost)", c, err)
	}
	if second.PrimaryID() == before || second.LastFailover().IsZero() {
		t.Fatalf("the other instance did not learn of the failover (primary %s, last failover %s)", second.PrimaryID(), second.LastFailover())
	}
	if list, err := second.PendingForCredential(ctx, "cred1"); err != nil || len(list) != 0 {
		t.Fatalf("the phone still lists %d challenges from before the failover (%v)", len(list), err)
	}
	if c, err := first.Resolve(ctx, "approved-before", pushauth.StatusCancelled, false, time.Now()); !errors.Is(err, pushauth.ErrConflict) || c.Status != pushauth.StatusCancelled {
		t.Fatalf("closing an approved challenge from before the failover: %+v, %v", c, err)
	}

	// After the failover: new challenges and markers work as ever.
	mk(second, "after", "carol")
	if c, err := first.Resolve(ctx, "after", pushauth.StatusApproved, false, time.Now()); err != nil || c.Status != pushauth.StatusApproved {
		t.Fatalf("approving a challenge created after the failover: %+v, %v", c, err)
	}
	if fresh, err := second.UseJTI(ctx, "replay/after", time.Now().Add(time.Minute)); err != nil || !fresh {
		t.Fatalf("a marker after the failover: %v %v", fresh, err)
	}

	// An instance started after the failover knows when it happened.
	deadline := time.Now().Add(5 * time.Second)
	for {
		late := open(t, []string{srv.Addr()}, prefix)
		if !late.LastFailover().IsZero() {
			if d := late.LastFailover().Sub(first.LastFailover()); d > time.Second || d < -time.Second {
				t.Fatalf("failover seen at %s by one instance and %s by another", first.LastFailover(), late.LastFailover())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an instance started after the failover does not know of it")
		}
		time.Sleep(20 * time.Millisecond)
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
	newReplicationID(t, rc)
	select {
	case <-told:
	case <-time.After(5 * time.Second):
		t.Fatal("the background check did not notice the new primary")
	}
}
