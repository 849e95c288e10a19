package redis

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// primaryWithReplica starts a primary and a replica in sync with it.
func primaryWithReplica(t *testing.T) (primary, replica *redistest.Server) {
	t.Helper()
	primary = redistest.StartServer(t)
	port := strings.TrimPrefix(primary.Addr(), "127.0.0.1:")
	replica = redistest.StartServer(t, "--replicaof", "127.0.0.1", port)
	rc := goredis.NewClient(&goredis.Options{Addr: primary.Addr()})
	defer rc.Close()
	rr := goredis.NewClient(&goredis.Options{Addr: replica.Addr()})
	defer rr.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := rc.Info(ctxT(t), "replication").Result()
		rinfo, _ := rr.Info(ctxT(t), "replication").Result()
		if strings.Contains(info, "state=online") && strings.Contains(rinfo, "master_link_status:up") {
			return primary, replica
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not in sync after 10s: %s\n%s", info, rinfo)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replicaTimeout is long enough for a healthy replica on a machine busy
// with other tests; a frozen one makes each acknowledged write take it.
const replicaTimeout = 1500 * time.Millisecond

func openAcked(t *testing.T, addr, prefix string, minReplicas int) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := New(ctx, Options{Addrs: []string{addr}, Prefix: prefix, Sealer: testSealer(t),
		MinReplicas: minReplicas, ReplicaTimeout: replicaTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestWritesWaitForReplicas: with min_replicas 1, an approval, a used
// marker and a lock count only once the replica has them. While the
// replica does not answer, each fails (fail closed): the approval is taken
// back (no watcher hears it, readers see the challenge pending), the
// marker and the count stay on the primary. With min_replicas 0 they
// succeed without the replica, which is the window a failover can lose.
func TestWritesWaitForReplicas(t *testing.T) {
	primary, replica := primaryWithReplica(t)
	prefix := uniquePrefix()
	s := openAcked(t, primary.Addr(), prefix, 1)
	ctx := ctxT(t)
	rr := goredis.NewClient(&goredis.Options{Addr: replica.Addr()})
	defer rr.Close()
	heard := make(chan *pushauth.Challenge, 10)
	stop, err := s.Watch(func(_ string, c *pushauth.Challenge) { heard <- c })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	mk := func(id, user string) {
		t.Helper()
		now := time.Now()
		c := &pushauth.Challenge{ID: id, UserKey: user, CredentialID: "cred1", Status: pushauth.StatusPending,
			CreatedAt: now, ExpiresAt: now.Add(time.Minute), Context: "{}"}
		if _, err := s.CreateChallenge(ctx, c, now.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}

	// Replica healthy: acknowledged, and on the replica when the call returns.
	mk("a1", "alice")
	c, err := s.Resolve(ctx, "a1", pushauth.StatusApproved, false, time.Now())
	if err != nil || c.Status != pushauth.StatusApproved {
		t.Fatalf("approval with the replica up: %+v, %v", c, err)
	}
	raw, err := rr.Get(ctx, s.challengeKey("alice", "a1")).Result()
	if err != nil || !strings.Contains(raw, `"status":"approved"`) || strings.Contains(raw, `"_ack"`) {
		t.Fatalf("replica holds %q (%v) right after the approval returned", raw, err)
	}
	select {
	case f := <-heard:
		if f == nil || f.Status != pushauth.StatusApproved {
			t.Fatalf("watch heard %+v", f)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the acknowledged approval was not published")
	}
	if fresh, err := s.UseJTI(ctx, "tok-1", time.Now().Add(time.Minute)); err != nil || !fresh {
		t.Fatalf("UseJTI with the replica up: %v %v", fresh, err)
	}
	if n, _ := rr.Exists(ctx, s.jtiKey("tok-1")).Result(); n != 1 {
		t.Fatal("the used marker is not on the replica when UseJTI returns")
	}

	// Replica frozen: every such write fails closed within the timeout.
	mk("a2", "bob")
	replica.Pause()
	defer replica.Resume()
	start := time.Now()
	c, err = s.Resolve(ctx, "a2", pushauth.StatusApproved, false, time.Now())
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("approval without the replica: %+v, %v; want ErrNotReplicated", c, err)
	}
	if d := time.Since(start); d > replicaTimeout+3*time.Second {
		t.Fatalf("the failed approval took %s (replica timeout %s)", d, replicaTimeout)
	}
	if c, err := s.GetChallenge(ctx, "a2"); err != nil || c.Status != pushauth.StatusPending {
		t.Fatalf("after the unacknowledged approval the challenge is %+v, %v; want pending", c, err)
	}
	select {
	case f := <-heard:
		t.Fatalf("an unacknowledged approval was published: %+v", f)
	case <-time.After(200 * time.Millisecond):
	}
	if fresh, err := s.UseJTI(ctx, "tok-2", time.Now().Add(time.Minute)); !errors.Is(err, ErrNotReplicated) || fresh {
		t.Fatalf("UseJTI without the replica: %v %v; want ErrNotReplicated", fresh, err)
	}
	if fresh, err := s.UseJTI(ctx, "tok-2", time.Now().Add(time.Minute)); err != nil || fresh {
		t.Fatalf("the marker of the failed UseJTI is not spent on the primary: %v %v", fresh, err)
	}
	if u, locked, err := s.AddFailure(ctx, "carol", 1, false, time.Now()); !errors.Is(err, ErrNotReplicated) || locked {
		t.Fatalf("AddFailure without the replica: %+v %v %v; want ErrNotReplicated", u, locked, err)
	}

	// The same without waiting for replicas: all succeed.
	loose := openAcked(t, primary.Addr(), prefix, 0)
	mk("a3", "dave")
	if c, err := loose.Resolve(ctx, "a3", pushauth.StatusApproved, false, time.Now()); err != nil || c.Status != pushauth.StatusApproved {
		t.Fatalf("min_replicas 0 approval with the replica frozen: %+v, %v", c, err)
	}
	if fresh, err := loose.UseJTI(ctx, "tok-3", time.Now().Add(time.Minute)); err != nil || !fresh {
		t.Fatalf("min_replicas 0 UseJTI with the replica frozen: %v %v", fresh, err)
	}

	// The replica is back: the challenge that failed can be approved.
	replica.Resume()
	t.Logf("frozen part done at %s", time.Since(start))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := s.Resolve(ctx, "a2", pushauth.StatusApproved, false, time.Now())
		if err == nil && c.Status == pushauth.StatusApproved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("approval after the replica came back: %+v, %v", c, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("approved after the replica came back at %s", time.Since(start))
}

// TestOverridingAnApprovalWaitingForReplicas: while an approval waits for
// its replicas, the challenge is still pending: a cancel (the client left,
// it timed out) wins, and the approval then reports a conflict, not
// success.
func TestOverridingAnApprovalWaitingForReplicas(t *testing.T) {
	addr := redistest.Start(t)
	s := openAcked(t, addr, uniquePrefix(), 1)
	ctx := ctxT(t)
	now := time.Now()
	c := &pushauth.Challenge{ID: "o1", UserKey: "u", Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if _, err := s.CreateChallenge(ctx, c, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	keys := []string{s.challengeKey("u", "o1"), s.userPendingKey("u")}
	res, err := resolveScript.Run(ctx, s.client, keys, "o1", "approved", "0", "2025-01-01T00:00:00Z", s.channel, "op-approve", maxPublishedRecord, "1").Slice()
	if err != nil || res[0] != "ok" {
		t.Fatalf("first step of the approval: %v %v", res, err)
	}
	if got, err := s.GetChallenge(ctx, "o1"); err != nil || got.Status != pushauth.StatusPending {
		t.Fatalf("a challenge whose approval waits for replicas reads as %+v, %v; want pending", got, err)
	}
	if got, err := s.Resolve(ctx, "o1", pushauth.StatusCancelled, false, time.Now()); err != nil || got.Status != pushauth.StatusCancelled {
		t.Fatalf("cancel while the approval waits: %+v, %v", got, err)
	}
	if got, err := s.finishAck(ctx, keys, "o1", "op-approve", true); !errors.Is(err, pushauth.ErrConflict) || got.Status != pushauth.StatusCancelled {
		t.Fatalf("committing the overridden approval: %+v, %v; want a conflict, cancelled", got, err)
	}
	if got, err := s.GetChallenge(ctx, "o1"); err != nil || got.Status != pushauth.StatusCancelled {
		t.Fatalf("finally %+v, %v; want cancelled", got, err)
	}
}
