package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// openOnSentinel opens a store through rig's Sentinels that waits for one
// replica on the writes that need one.
func openOnSentinel(t *testing.T, ctx context.Context, rig *redistest.Sentinel) *Store {
	t.Helper()
	s, err := New(ctx, Options{Addrs: rig.Addrs(), MasterName: redistest.MasterName, Prefix: uniquePrefix(),
		Sealer: testSealer(t), MinReplicas: 1, ReplicaTimeout: replicaTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSentinelFailoverKeepsAcknowledgedWrites runs the store through
// go-redis's Sentinel client against three real Sentinels: what it wrote
// with min_replicas 1 (a used marker, a lock) survives the primary's
// death, the store notices the new primary, and until a replica is back
// the writes that need one fail closed.
func TestSentinelFailoverKeepsAcknowledgedWrites(t *testing.T) {
	rig := redistest.StartSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := openOnSentinel(t, ctx, rig)
	told := make(chan struct{}, 4)
	defer s.WatchFailover(func() { told <- struct{}{} })()

	if fresh, err := s.UseJTI(ctx, "jti/before", time.Now().Add(time.Minute)); err != nil || !fresh {
		t.Fatalf("UseJTI: %v %v", fresh, err)
	}
	if _, locked, err := s.AddFailure(ctx, "mallory", 1, false, time.Now()); err != nil || !locked {
		t.Fatalf("AddFailure: %v %v", locked, err)
	}
	now := time.Now()
	c := &pushauth.Challenge{ID: "f1", UserKey: "alice", CredentialID: "cred1", Status: pushauth.StatusPending,
		CreatedAt: now, ExpiresAt: now.Add(time.Minute), Context: "{}"}
	if _, err := s.CreateChallenge(ctx, c, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}

	old, err := rig.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	rig.ServerAt(old).Kill()
	promoted := rig.WaitFailover(old, 30*time.Second)
	t.Logf("failover %s → %s took %s", old, promoted, time.Since(killed).Round(time.Millisecond))

	// The store reaches the new primary and notices it is a new one.
	var fresh bool
	for {
		fresh, err = s.UseJTI(ctx, "jti/before", time.Now().Add(time.Minute))
		if err == nil || time.Since(killed) > 30*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("UseJTI on the new primary: %v", err)
	}
	select {
	case <-told:
	case <-time.After(5 * time.Second):
		t.Fatal("the store did not report the failover")
	}
	if fresh {
		t.Fatal("a token ID used before the failover is fresh again after it")
	}
	u, err := s.GetUser(ctx, "mallory")
	if err != nil || u.State != pushauth.UserLocked {
		t.Fatalf("the user locked before the failover is %+v, %v after it", u, err)
	}
	if got, err := s.GetChallenge(ctx, "f1"); err != nil || got.Status != pushauth.StatusCancelled {
		t.Fatalf("a challenge from before the failover reads %+v, %v; want cancelled", got, err)
	}

	// Only the promoted server is left: approvals fail closed until a
	// replica acknowledges again.
	now = time.Now()
	c2 := &pushauth.Challenge{ID: "f2", UserKey: "bob", CredentialID: "cred1", Status: pushauth.StatusPending,
		CreatedAt: now, ExpiresAt: now.Add(time.Minute), Context: "{}"}
	if _, err := s.CreateChallenge(ctx, c2, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Resolve(ctx, "f2", pushauth.StatusApproved, false, time.Now()); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("approval with no replica left: %+v, %v; want ErrNotReplicated", got, err)
	}
	back := time.Now()
	rig.Rejoin(old, promoted)
	t.Logf("the old primary replicates the new one %s after its restart", time.Since(back).Round(time.Millisecond))
	if got, err := s.Resolve(ctx, "f2", pushauth.StatusApproved, false, time.Now()); err != nil || got.Status != pushauth.StatusApproved {
		t.Fatalf("approval once a replica is back: %+v, %v", got, err)
	}
}
