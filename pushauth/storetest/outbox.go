package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// Option adds to what Run checks.
type Option func(*options)

type options struct {
	reopen func(t *testing.T, closed pushauth.Store) pushauth.Store
}

// Durable declares the store keeps its data across a restart of the
// process: reopen gets a store the suite has closed and returns a new one
// on the same data, as a restarted Caddy would open it. The suite then
// checks that nothing in the outbox is lost across the restart.
func Durable(reopen func(t *testing.T, closed pushauth.Store) pushauth.Store) Option {
	return func(o *options) { o.reopen = reopen }
}

// notification builds a message whose body has bytes an encoding round
// trip could alter.
func notification(at time.Time) *pushauth.Notification {
	id := fmt.Sprintf("%013d-%s", at.UnixMilli(), uid("evt"))
	return &pushauth.Notification{
		ID:   id,
		Type: pushauth.EventPhoneReplaced,
		User: "1001/älice <&>",
		Time: at,
		Body: []byte(`{"id":"` + id + `","note":"\u2028 \\ \"quoted\" ü 💸","nested":{"a":[1,{}]}}` + "\n\x00\xff"),
	}
}

func mustEnqueue(t *testing.T, s pushauth.Store, n *pushauth.Notification) {
	t.Helper()
	if err := s.EnqueueNotification(ctxT(t), n); err != nil {
		t.Fatalf("EnqueueNotification(%s): %v", n.ID, err)
	}
}

func claim(t *testing.T, s pushauth.Store, now time.Time, max int, lease time.Duration) []*pushauth.Notification {
	t.Helper()
	got, err := s.ClaimNotifications(ctxT(t), now, max, lease)
	if err != nil {
		t.Fatalf("ClaimNotifications: %v", err)
	}
	return got
}

func ids(ns []*pushauth.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

func backlog(t *testing.T, s pushauth.Store) int {
	t.Helper()
	n, err := s.NotificationBacklog(ctxT(t))
	if err != nil {
		t.Fatalf("NotificationBacklog: %v", err)
	}
	return n
}

// testOutboxDelivery: a message is claimed once per lease with its exact
// bytes, and leaves the outbox only when acknowledged.
func testOutboxDelivery(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	now := time.Now()
	n := notification(now)
	want := *n
	want.Body = bytes.Clone(n.Body)
	mustEnqueue(t, s, n)
	n.Body[0] = 'X' // the store must have copied
	if err := s.EnqueueNotification(ctx, notification(now)); err != nil {
		t.Fatalf("EnqueueNotification(second): %v", err)
	}
	dup := *n
	dup.Body = []byte("other")
	if err := s.EnqueueNotification(ctx, &dup); !errors.Is(err, pushauth.ErrExists) {
		t.Fatalf("EnqueueNotification(same id) = %v, want ErrExists", err)
	}
	if got := backlog(t, s); got != 2 {
		t.Fatalf("backlog = %d, want 2", got)
	}

	got := claim(t, s, now, 1, time.Minute)
	if len(got) != 1 || got[0].ID != want.ID {
		t.Fatalf("claim(1) = %v, want [%s]", ids(got), want.ID)
	}
	c := got[0]
	if !bytes.Equal(c.Body, want.Body) || c.Type != want.Type || c.User != want.User || !c.Time.Equal(want.Time) {
		t.Fatalf("claimed message differs:\n got %+v\nwant %+v", *c, want)
	}
	if c.Attempts != 1 || c.Lease == "" {
		t.Fatalf("claimed message: attempts %d, lease %q; want 1 and a token", c.Attempts, c.Lease)
	}
	// Leased: the next claim gets only the other message, then nothing.
	if got := claim(t, s, now, 10, time.Minute); len(got) != 1 || got[0].ID == want.ID {
		t.Fatalf("claim while the first is leased = %v, want only the second", ids(got))
	}
	if got := claim(t, s, now.Add(30*time.Second), 10, time.Minute); len(got) != 0 {
		t.Fatalf("claim within the leases = %v, want none", ids(got))
	}
	if err := s.AckNotification(ctx, want.ID); err != nil {
		t.Fatalf("AckNotification: %v", err)
	}
	if err := s.AckNotification(ctx, want.ID); err != nil {
		t.Fatalf("AckNotification(again) = %v, want nil", err)
	}
	if got := backlog(t, s); got != 1 {
		t.Fatalf("backlog after one ack = %d, want 1", got)
	}
	// The unacknowledged one comes back once its lease is over, the
	// acknowledged one never.
	got = claim(t, s, now.Add(61*time.Second), 10, time.Minute)
	if len(got) != 1 || got[0].ID == want.ID || got[0].Attempts != 2 {
		t.Fatalf("claim after the leases = %+v, want the second message, attempt 2", got)
	}
	if err := s.AckNotification(ctx, got[0].ID); err != nil {
		t.Fatalf("AckNotification: %v", err)
	}
	if n := backlog(t, s); n != 0 {
		t.Fatalf("backlog after both acks = %d", n)
	}
}

// testOutboxOrder: due messages come oldest first, then by ID; messages
// not due yet stay.
func testOutboxOrder(t *testing.T, s pushauth.Store) {
	base := time.Now().Truncate(time.Millisecond)
	var msgs []*pushauth.Notification
	for i := range 6 {
		msgs = append(msgs, notification(base.Add(time.Duration(i)*time.Second)))
	}
	// Two with the same time: ID decides.
	tie := notification(base.Add(2 * time.Second))
	tie.ID = msgs[2].ID + "-b"
	future := notification(base.Add(time.Hour))
	for _, i := range []int{4, 0, 5, 2, 1, 3} {
		mustEnqueue(t, s, msgs[i])
	}
	mustEnqueue(t, s, tie)
	mustEnqueue(t, s, future)

	first := claim(t, s, base.Add(10*time.Second), 3, time.Minute)
	rest := claim(t, s, base.Add(10*time.Second), 100, time.Minute)
	want := []string{msgs[0].ID, msgs[1].ID, msgs[2].ID, tie.ID, msgs[3].ID, msgs[4].ID, msgs[5].ID}
	if got := append(ids(first), ids(rest)...); !slices.Equal(got, want) {
		t.Fatalf("claim order:\n got %v\nwant %v", got, want)
	}
	for _, id := range want {
		if err := s.AckNotification(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
	}
	if got := claim(t, s, base.Add(59*time.Minute), 100, time.Minute); len(got) != 0 {
		t.Fatalf("claim before the future message is due = %v", ids(got))
	}
	if got := claim(t, s, base.Add(time.Hour), 100, time.Minute); len(got) != 1 || got[0].ID != future.ID {
		t.Fatalf("claim when the future message is due = %v", ids(got))
	}
}

// testOutboxRetry: a failed delivery is due again at its retry time, and
// only the claim that holds a message can reschedule it.
func testOutboxRetry(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	now := time.Now()
	n := notification(now)
	mustEnqueue(t, s, n)
	c := claim(t, s, now, 1, 10*time.Second)[0]
	if err := s.RetryNotification(ctx, c.ID, c.Lease, now.Add(5*time.Second), "status 503"); err != nil {
		t.Fatalf("RetryNotification: %v", err)
	}
	if got := claim(t, s, now.Add(4*time.Second), 10, 10*time.Second); len(got) != 0 {
		t.Fatalf("claim before the retry time = %v", ids(got))
	}
	again := claim(t, s, now.Add(5*time.Second), 10, 10*time.Second)
	if len(again) != 1 || again[0].Attempts != 2 || again[0].LastError != "status 503" || again[0].Lease == c.Lease {
		t.Fatalf("claim at the retry time = %+v, want attempt 2 with the last error and a new lease", again)
	}
	// The first claim's lease is stale now.
	if err := s.RetryNotification(ctx, c.ID, c.Lease, now, "late"); !errors.Is(err, pushauth.ErrConflict) {
		t.Fatalf("RetryNotification with a stale lease = %v, want ErrConflict", err)
	}
	// The lease runs out without a word (the instance died): a third claim
	// takes it, and the second claim's retry is refused.
	third := claim(t, s, now.Add(16*time.Second), 10, 10*time.Second)
	if len(third) != 1 || third[0].Attempts != 3 {
		t.Fatalf("claim after the second lease ran out = %+v", third)
	}
	if err := s.RetryNotification(ctx, c.ID, again[0].Lease, now, "late"); !errors.Is(err, pushauth.ErrConflict) {
		t.Fatalf("RetryNotification with the second, stale lease = %v, want ErrConflict", err)
	}
	if err := s.RetryNotification(ctx, uid("evt"), third[0].Lease, now, "x"); !errors.Is(err, pushauth.ErrConflict) {
		t.Fatalf("RetryNotification(unknown id) = %v, want ErrConflict", err)
	}
	if err := s.AckNotification(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryNotification(ctx, c.ID, third[0].Lease, now, "x"); !errors.Is(err, pushauth.ErrConflict) {
		t.Fatalf("RetryNotification after ack = %v, want ErrConflict", err)
	}
}

// testOutboxClaimRace: instances claiming at once never get the same
// message within a lease.
func testOutboxClaimRace(t *testing.T, s pushauth.Store) {
	now := time.Now()
	const msgs, claimers = 60, 8
	for i := range msgs {
		mustEnqueue(t, s, notification(now.Add(time.Duration(i)*time.Millisecond)))
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for range claimers {
		wg.Go(func() {
			for range msgs {
				got, err := s.ClaimNotifications(ctxT(t), now.Add(time.Second), 3, time.Minute)
				if err != nil {
					t.Errorf("ClaimNotifications: %v", err)
					return
				}
				mu.Lock()
				for _, n := range got {
					seen[n.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != msgs {
		t.Fatalf("%d distinct messages claimed, want %d", len(seen), msgs)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("message %s claimed %d times within one lease", id, n)
		}
	}
}

// testOutboxRestart: what was enqueued is there after the process
// restarts, claimed-but-unacknowledged messages included.
func testOutboxRestart(t *testing.T, s pushauth.Store, reopen func(*testing.T, pushauth.Store) pushauth.Store) {
	now := time.Now()
	var want []string
	for i := range 3 {
		n := notification(now.Add(time.Duration(i) * time.Millisecond))
		mustEnqueue(t, s, n)
		want = append(want, n.ID)
	}
	if got := claim(t, s, now, 1, 30*time.Second); len(got) != 1 {
		t.Fatalf("claim before the restart = %v", ids(got))
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2 := reopen(t, s)
	t.Cleanup(func() { _ = s2.Close() })
	if got := backlog(t, s2); got != 3 {
		t.Fatalf("backlog after the restart = %d, want 3", got)
	}
	got := claim(t, s2, now.Add(time.Second), 10, 30*time.Second)
	if !slices.Equal(ids(got), want[1:]) {
		t.Fatalf("claim right after the restart = %v, want the two unclaimed %v", ids(got), want[1:])
	}
	got = claim(t, s2, now.Add(30*time.Second+500*time.Millisecond), 10, 30*time.Second)
	if len(got) != 1 || got[0].ID != want[0] || got[0].Attempts != 2 {
		t.Fatalf("claim after the lease from before the restart = %+v, want %s at attempt 2", got, want[0])
	}
}
