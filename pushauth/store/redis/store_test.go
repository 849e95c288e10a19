package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
	"github.com/onepush/onepush/pushauth/storetest"
)

var prefixSeq atomic.Int64

func uniquePrefix() string {
	return fmt.Sprintf("t%d-%d:", time.Now().UnixNano()%1e9, prefixSeq.Add(1))
}

// testKey is the encryption key of the stores the tests open.
var testKey = bytes.Repeat([]byte{7}, seal.KeySize)

func testSealer(t testing.TB) *seal.Sealer {
	t.Helper()
	s, err := seal.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func open(t testing.TB, addrs []string, prefix string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := New(ctx, Options{Addrs: addrs, Prefix: prefix, Sealer: testSealer(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestContract(t *testing.T) {
	addr := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) pushauth.Store {
		return open(t, []string{addr}, uniquePrefix())
	}, storetest.Durable(func(t *testing.T, closed pushauth.Store) pushauth.Store {
		// A restarted Caddy: a new client on the same Redis and prefix.
		return open(t, []string{addr}, closed.(*Store).Prefix())
	}))
}

// TestContractCluster runs the suite through the Cluster client against a
// one-node cluster holding every slot: a script touching keys of two slots
// fails there with CROSSSLOT, so this checks the hash tags.
func TestContractCluster(t *testing.T) {
	srv := redistest.StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	ctx := ctxT(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, _ := c.ClusterInfo(ctx).Result()
		if strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not become ok: %s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	storetest.Run(t, func(t *testing.T) pushauth.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := New(ctx, Options{Addrs: []string{srv.Addr()}, Cluster: true, Prefix: uniquePrefix(), Sealer: testSealer(t)})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if _, ok := s.Client().(*goredis.ClusterClient); !ok {
			t.Fatalf("client is %T, want *ClusterClient", s.Client())
		}
		return s
	})

	// Keys one script touches must share a slot, whatever the user key
	// and prefix contain.
	for _, prefix := range []string{"onepush:", "a{b:", "x}y{"} {
		s := &Store{prefix: prefix}
		for _, user := range []string{"alice", "a}b", "{x}", "", "ü:{}"} {
			keys := []string{s.userPendingKey(user), s.challengeKey(user, "id1"), s.challengeKey(user, "other")}
			var slots []int64
			for _, k := range keys {
				slot, err := c.ClusterKeySlot(ctx, k).Result()
				if err != nil {
					t.Fatalf("CLUSTER KEYSLOT %s: %v", k, err)
				}
				slots = append(slots, slot)
			}
			if slots[0] != slots[1] || slots[0] != slots[2] {
				t.Errorf("prefix %q user %q: keys %q in slots %v", prefix, user, keys, slots)
			}
		}
	}
}

// TestTTLs runs a flow and checks every ephemeral key has a TTL and only
// the durable records lack one.
func TestTTLs(t *testing.T) {
	addr := redistest.Start(t)
	prefix := uniquePrefix()
	s := open(t, []string{addr}, prefix)
	ctx := ctxT(t)
	now := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutCredential(ctx, &pushauth.Credential{ID: "cred1", OTPSecret: "S"}))
	must(s.PutUser(ctx, &pushauth.User{Key: "alice", CredentialID: "cred1", State: pushauth.UserActive}))
	must(s.PutUser(ctx, &pushauth.User{Key: "bob", CredentialID: "cred1", State: pushauth.UserActive}))
	mk := func(id, user string) *pushauth.Challenge {
		return &pushauth.Challenge{ID: id, UserKey: user, CredentialID: "cred1", Status: pushauth.StatusPending,
			CreatedAt: now, ExpiresAt: now.Add(2 * time.Minute), Context: "{}"}
	}
	_, err := s.CreateChallenge(ctx, mk("c1", "alice"), now.Add(10*time.Minute))
	must(err)
	_, err = s.CreateChallenge(ctx, mk("c2", "alice"), now.Add(10*time.Minute)) // supersedes c1
	must(err)
	_, err = s.CreateChallenge(ctx, mk("c3", "bob"), now.Add(10*time.Minute))
	must(err)
	_, err = s.Resolve(ctx, "c3", pushauth.StatusApproved, false, now)
	must(err)
	must(s.SetPushResult(ctx, "c2", "sent"))
	_, err = s.PendingForCredential(ctx, "cred1")
	must(err)
	_, err = s.UseJTI(ctx, "jti1", now.Add(time.Minute))
	must(err)
	must(s.PutSession(ctx, "h1", "alice", time.Hour))

	durable := map[string]bool{
		prefix + "cred:cred1":      true,
		prefix + "{c:cred1}:users": true,
		prefix + "{u:alice}:user":  true,
		prefix + "{u:bob}:user":    true,
		prefix + "epoch":           true,
	}
	wantEphemeral := []string{
		prefix + "{c:cred1}:pending",
		prefix + "{u:alice}:pending",
		prefix + "{u:alice}:live",
		prefix + "{u:alice}:ch:c1",
		prefix + "{u:alice}:ch:c2",
		prefix + "{u:bob}:ch:c3",
		prefix + "ch:c1", prefix + "ch:c2", prefix + "ch:c3",
		prefix + "jti:jti1",
		prefix + "sess:h1",
	}
	keys, err := s.client.Keys(ctx, prefix+"*").Result()
	must(err)
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k] = true
		ttl, err := s.client.PTTL(ctx, k).Result()
		must(err)
		if durable[k] {
			if ttl != -1 {
				t.Errorf("%s: TTL %v, want none (durable record)", k, ttl)
			}
			continue
		}
		if ttl <= 0 {
			t.Errorf("%s: no TTL (%v)", k, ttl)
		}
		// Challenge keys live until retainUntil (10 min), the pending index
		// until the latest expiry (2 min), jti until its until (1 min).
		var max time.Duration
		switch {
		case strings.Contains(k, ":ch:") || strings.HasPrefix(k, prefix+"ch:") || (strings.HasSuffix(k, "}:pending") || strings.HasSuffix(k, "}:live")) && strings.Contains(k, "{u:"):
			max = 10 * time.Minute
		case strings.HasSuffix(k, "{c:cred1}:pending"):
			max = 2 * time.Minute
		case strings.HasPrefix(k, prefix+"jti:"):
			max = time.Minute
		case strings.HasPrefix(k, prefix+"sess:"):
			max = time.Hour
		default:
			t.Errorf("unexpected key %s", k)
			continue
		}
		if ttl > max || ttl < max-time.Minute/2 {
			t.Errorf("%s: TTL %v, want about %v", k, ttl, max)
		}
	}
	for k := range durable {
		if !seen[k] {
			t.Errorf("missing key %s", k)
		}
	}
	for _, k := range wantEphemeral {
		if !seen[k] {
			t.Errorf("missing key %s (layout changed? update the doc comment)", k)
		}
	}
	if len(keys) != len(durable)+len(wantEphemeral) {
		t.Errorf("keys %q, want %d", keys, len(durable)+len(wantEphemeral))
	}
}

// TestCrossInstance: a decision taken through one Store wakes a watch on
// another Store sharing the Redis.
func TestCrossInstance(t *testing.T) {
	addr := redistest.Start(t)
	prefix := uniquePrefix()
	a := open(t, []string{addr}, prefix)
	b := open(t, []string{addr}, prefix)
	ctx := ctxT(t)
	got := make(chan string, 10)
	finals := make(chan *pushauth.Challenge, 10)
	stop, err := a.Watch(func(id string, final *pushauth.Challenge) { got <- id; finals <- final })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// woken waits up to 1s for A's watch: the id it heard and the record
	// that came with it.
	woken := func(by string) (string, *pushauth.Challenge) {
		t.Helper()
		select {
		case id := <-got:
			return id, <-finals
		case <-time.After(time.Second):
			t.Fatalf("A's watch was not woken %s", by)
			return "", nil
		}
	}
	// deniedOnB creates c on A and denies it through B.
	deniedOnB := func(c *pushauth.Challenge) {
		t.Helper()
		if _, err := a.CreateChallenge(ctx, c, time.Now().Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Resolve(ctx, c.ID, pushauth.StatusDenied, false, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	c := &pushauth.Challenge{ID: "x1", UserKey: "alice", CredentialID: "cred1", Status: pushauth.StatusPending,
		CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if _, err := a.CreateChallenge(ctx, c, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// B sees A's challenge and decides it.
	pend, err := b.PendingForCredential(ctx, "cred1")
	if err != nil || len(pend) != 1 || pend[0].ID != "x1" {
		t.Fatalf("B PendingForCredential = %v, %v", pend, err)
	}
	start := time.Now()
	if _, err := b.Resolve(ctx, "x1", pushauth.StatusApproved, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	id, f := woken("within 1s by B's Resolve")
	if id != "x1" {
		t.Fatalf("A's watch got %q, want x1", id)
	}
	t.Logf("release latency across instances: %v", time.Since(start))
	if f == nil || f.Status != pushauth.StatusApproved || f.UserKey != "alice" {
		t.Fatalf("A's watch got final record %+v, want alice's challenge approved", f)
	}
	// A deciding too conflicts and sees B's decision.
	cur, err := a.Resolve(ctx, "x1", pushauth.StatusDenied, false, time.Now())
	if !errors.Is(err, pushauth.ErrConflict) || cur == nil || cur.Status != pushauth.StatusApproved {
		t.Fatalf("A Resolve after B = %+v, %v; want approved, ErrConflict", cur, err)
	}
	// A supersede on B wakes A as well.
	c2 := *c
	c2.ID = "x2"
	if _, err := b.CreateChallenge(ctx, &c2, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	c3 := *c
	c3.ID = "x3"
	if sup, err := a.CreateChallenge(ctx, &c3, now.Add(2*time.Minute)); err != nil || len(sup) != 1 || sup[0] != "x2" {
		t.Fatalf("CreateChallenge on A = %q, %v; want x2 superseded", sup, err)
	}
	id, f = woken("by the supersede")
	if id != "x2" {
		t.Fatalf("A's watch got %q, want x2", id)
	}
	if f == nil || f.Status != pushauth.StatusSuperseded {
		t.Fatalf("A's watch got final record %+v for x2, want superseded", f)
	}
	// A stored request is never published, however large: the record goes
	// without it (the replay reads it from Redis).
	c4 := *c
	c4.ID, c4.UserKey = "x4", "bob"
	c4.Held = &pushauth.HeldRequest{Method: "POST", URI: "/upload", Host: "bank", Body: make([]byte, 20<<10)}
	deniedOnB(&c4)
	if id, f := woken("for the stored request"); id != "x4" || f == nil || f.Status != pushauth.StatusDenied || f.Held != nil {
		t.Fatalf("A's watch got %q with record %+v, want x4 denied without its stored request", id, f)
	}
	// A record over the publish limit (display fields of a bulk transfer)
	// goes as its id alone, and the waiter reads it from Redis.
	c5 := *c
	c5.ID, c5.UserKey = "x5", "carol"
	c5.Display = []pushauth.Field{{Label: "Payees", Value: strings.Repeat("payee ", 4<<10)}}
	deniedOnB(&c5)
	if id, f := woken("for the large record"); id != "x5" || f != nil {
		t.Fatalf("A's watch got %q with record %v, want x5 without its record", id, f != nil)
	}
}

// TestOutage: Redis killed and restarted on the same port. Calls fail
// while it is down (fail closed, no hang), then work again without a new
// Store, and a Watch created before the outage hears resolutions after it.
func TestOutage(t *testing.T) {
	srv := redistest.StartServer(t)
	prefix := uniquePrefix()
	s := open(t, []string{srv.Addr()}, prefix)
	var mu sync.Mutex
	var seen []string
	stop, err := s.Watch(func(id string, _ *pushauth.Challenge) {
		mu.Lock()
		seen = append(seen, id)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	w := func() *watch {
		s.mu.Lock()
		defer s.mu.Unlock()
		for w := range s.watches {
			return w
		}
		return nil
	}()
	if n := w.subscriptions.Load(); n != 1 {
		t.Fatalf("subscriptions before the outage = %d, want 1", n)
	}
	now := time.Now()
	mk := func(id string) *pushauth.Challenge {
		return &pushauth.Challenge{ID: id, UserKey: "alice", CredentialID: "cred1", Status: pushauth.StatusPending,
			CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute), Context: "{}"}
	}
	if _, err := s.CreateChallenge(ctxT(t), mk("before"), now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = s.CreateChallenge(ctx, mk("during"), now.Add(2*time.Minute))
	cancel()
	if err == nil {
		t.Fatal("CreateChallenge succeeded with Redis down")
	}
	t.Logf("CreateChallenge with Redis down failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if time.Since(start) > 4*time.Second {
		t.Errorf("failing took %v", time.Since(start))
	}
	if !strings.Contains(err.Error(), "redis: SET NX "+prefix+"ch:during") {
		t.Errorf("error %q does not name the operation and key", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	_, err = s.UseJTI(ctx, "otp/cred1/654321", time.Now().Add(time.Minute))
	if err == nil || strings.Contains(err.Error(), "654321") {
		t.Errorf("UseJTI with Redis down: %v (want an error without the jti)", err)
	}
	err = s.PutSession(ctx, "secret-session-hash", "alice", time.Minute)
	if err == nil || strings.Contains(err.Error(), "secret-session-hash") {
		t.Errorf("PutSession with Redis down: %v (want an error without the hash)", err)
	}
	cancel()
	time.Sleep(300 * time.Millisecond) // let the watch notice

	srv.Restart()
	restarted := time.Now()
	// New challenges work again with the same Store (Redis restarted empty).
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.CreateChallenge(ctx, mk("after"), time.Now().Add(2*time.Minute))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CreateChallenge after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("store usable %v after restart", time.Since(restarted).Round(time.Millisecond))
	// The old watch re-subscribes and hears the decision.
	waitUntil := time.Now().Add(5 * time.Second)
	for w.subscriptions.Load() < 2 && time.Now().Before(waitUntil) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := w.subscriptions.Load(); n < 2 {
		t.Fatalf("watch did not re-subscribe after the restart (subscriptions %d)", n)
	}
	t.Logf("watch re-subscribed %v after restart", time.Since(restarted).Round(time.Millisecond))
	if _, err := s.Resolve(ctxT(t), "after", pushauth.StatusApproved, false, time.Now()); err != nil {
		t.Fatalf("Resolve after restart: %v", err)
	}
	waitUntil = time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		ok := len(seen) > 0 && seen[len(seen)-1] == "after"
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(waitUntil) {
			mu.Lock()
			t.Fatalf("watch created before the outage saw %q, want \"after\"", seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWatchStartsWhileDown: a Watch made while Redis is unreachable
// subscribes once Redis answers.
func TestWatchStartsWhileDown(t *testing.T) {
	srv := redistest.StartServer(t)
	s := open(t, []string{srv.Addr()}, uniquePrefix())
	srv.Kill()
	got := make(chan string, 1)
	start := time.Now()
	stop, err := s.Watch(func(id string, _ *pushauth.Challenge) { got <- id })
	if err != nil {
		t.Fatalf("Watch with Redis down: %v", err)
	}
	defer stop()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Watch took %v with Redis down", d)
	}
	srv.Restart()
	now := time.Now()
	c := &pushauth.Challenge{ID: "w1", UserKey: "u", Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.CreateChallenge(ctxT(t), c, now.Add(time.Minute))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CreateChallenge: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Resolve until the (re)subscribing watch hears one; each try needs a
	// fresh challenge.
	for i := 0; ; i++ {
		id := fmt.Sprintf("w%d", i+2)
		c := &pushauth.Challenge{ID: id, UserKey: "u", Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
		if _, err := s.CreateChallenge(ctxT(t), c, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Resolve(ctxT(t), id, pushauth.StatusApproved, false, time.Now()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("watch made while Redis was down never received a message")
		}
	}
}

// TestResolveRetryIsIdempotent: a Resolve replayed with the same op token
// (what a go-redis retry after a lost reply does) reports success.
func TestResolveRetryIsIdempotent(t *testing.T) {
	addr := redistest.Start(t)
	s := open(t, []string{addr}, uniquePrefix())
	ctx := ctxT(t)
	now := time.Now()
	c := &pushauth.Challenge{ID: "r1", UserKey: "u", Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if _, err := s.CreateChallenge(ctx, c, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	run := func(op, to string) []any {
		res, err := resolveScript.Run(ctx, s.client,
			[]string{s.challengeKey("u", "r1"), s.userPendingKey("u")},
			"r1", to, "0", "2025-01-01T00:00:00Z", s.channel, op, maxPublishedRecord).Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if r := run("op-one", "approved"); r[0] != "ok" {
		t.Fatalf("first run: %v", r)
	}
	if r := run("op-one", "approved"); r[0] != "ok" {
		t.Fatalf("replay of the same op: %v, want ok", r)
	}
	if r := run("op-two", "denied"); r[0] != "conflict" {
		t.Fatalf("other op: %v, want conflict", r)
	}
	got, err := s.GetChallenge(ctx, "r1")
	if err != nil || got.Status != pushauth.StatusApproved {
		t.Fatalf("GetChallenge = %+v, %v", got, err)
	}
}

func TestNewFailsWhenUnreachable(t *testing.T) {
	srv := redistest.StartServer(t)
	addr := srv.Addr()
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := New(ctx, Options{Addrs: []string{addr}, Password: "hunter2-secret", Sealer: testSealer(t)})
	if err == nil {
		t.Fatal("New succeeded with Redis down")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name the address", err)
	}
}

// TestOwnersCacheIsBounded: the id → user cache never grows past its
// bound, and an id it forgot is found again through the index.
func TestOwnersCacheIsBounded(t *testing.T) {
	o := owners{max: 4}
	for i := range 10 {
		o.put(fmt.Sprintf("id%d", i), "u")
		if len(o.m) > o.max {
			t.Fatalf("after %d puts the cache holds %d entries, bound %d", i+1, len(o.m), o.max)
		}
	}
	if _, ok := o.get("id9"); !ok {
		t.Fatal("the latest id is not cached")
	}

	addr := redistest.Start(t)
	a := open(t, []string{addr}, uniquePrefix())
	ctx := ctxT(t)
	now := time.Now()
	c := &pushauth.Challenge{ID: "o1", UserKey: "carol", Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if _, err := a.CreateChallenge(ctx, c, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	a.owners.mu.Lock()
	a.owners.m = nil // forgotten
	a.owners.mu.Unlock()
	got, err := a.GetChallenge(ctx, "o1")
	if err != nil || got.UserKey != "carol" {
		t.Fatalf("GetChallenge after the cache started over = %+v, %v", got, err)
	}
}
