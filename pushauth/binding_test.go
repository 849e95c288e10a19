package pushauth

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNotificationIDsSortByTime(t *testing.T) {
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	a, _ := notificationID(t0)
	b, _ := notificationID(t0.Add(time.Millisecond))
	c, _ := notificationID(t0.Add(time.Hour))
	if !(a < b && b < c) || !strings.HasPrefix(a, "evt_") || len(a) != 4+12+16 {
		t.Fatalf("ids %q %q %q: want evt_, time-ordered", a, b, c)
	}
}

// TestAuditAggregatorKeepsTheTrail: the first event of a key goes in at
// once, the rest of its window becomes one summary; keys beyond the bound
// share one entry; closing writes what is pending.
func TestAuditAggregatorKeepsTheTrail(t *testing.T) {
	log := &trail{}
	e := &Engine{now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: Config{Audit: log, Metrics: NopMetrics{}}}
	a := newAuditAggregator(e, 200*time.Millisecond, 3)
	ctx := context.Background()
	ev := func(user, outcome, ip string) AuditEvent {
		return AuditEvent{Type: AuditEnrolment, User: user, Outcome: outcome, ClientIP: ip, Actor: "browser", Time: time.Now()}
	}
	a.Add(ctx, "alice", ev("alice", "unknown_credential", "198.51.100.1"))
	for i := range 50 {
		a.Add(ctx, "alice", ev("alice", map[bool]string{true: "bad_code", false: "unknown_credential"}[i%2 == 0], "198.51.100.2"))
	}
	if n := kept(log); n != 1 {
		t.Fatalf("%d events after 51 of one key within a window, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for kept(log) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no summary after the window")
		}
		time.Sleep(10 * time.Millisecond)
	}
	evs, _ := log.Query(ctx, AuditQuery{User: "alice"})
	if len(evs) != 2 || evs[1].Outcome != "repeated" || !strings.Contains(evs[1].Detail, "50 more") ||
		!strings.Contains(evs[1].Detail, "bad_code 25, unknown_credential 25") || !strings.Contains(evs[1].Detail, "from 1 address") {
		t.Fatalf("summary: %+v", evs)
	}
	// A new window lets the next event in at once.
	a.Add(ctx, "alice", ev("alice", "locked", ""))
	if n := kept(log); n != 3 {
		t.Fatalf("%d events, want the first of the new window written", n)
	}
	// Three keys at most: a fourth and fifth share the overflow entry.
	for _, k := range []string{"bob", "carol", "dave", "erin", "frank"} {
		a.Add(ctx, k, ev(k, "bad_code", ""))
		a.Add(ctx, k, ev(k, "bad_code", ""))
	}
	a.close()
	evs, _ = log.Query(ctx, AuditQuery{Type: AuditEnrolment})
	var overflow *AuditEvent
	for i := range evs {
		if evs[i].Outcome == "repeated" && evs[i].User == "" {
			overflow = &evs[i]
		}
	}
	if overflow == nil || !strings.Contains(overflow.Detail, "bad_code") {
		t.Fatalf("no overflow summary in %+v", evs)
	}
	if len(evs) > 3+2+1+2+2 {
		t.Fatalf("%d events: the bound on keys did not hold", len(evs))
	}
}

// TestAuditSummaryNamesTheFirstEventsTime: an event handed over without a
// time (a forged enrolment post) is stamped when it comes, so the summary
// of its window says when the flood began, not year 1.
func TestAuditSummaryNamesTheFirstEventsTime(t *testing.T) {
	log := &trail{}
	e := &Engine{now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: Config{Audit: log, Metrics: NopMetrics{}}}
	a := newAuditAggregator(e, time.Hour, 10)
	ctx := context.Background()
	before := time.Now().UTC().Truncate(time.Second)
	for range 3 {
		a.Add(ctx, "enrol-forged\x00alice", AuditEvent{Type: AuditEnrolment, User: "alice", Outcome: "forged", Actor: "browser"})
	}
	a.close()
	evs, _ := log.Query(ctx, AuditQuery{User: "alice"})
	if len(evs) != 2 || evs[1].Outcome != "repeated" {
		t.Fatalf("events = %+v, want the first and a summary", evs)
	}
	if first := evs[0].Time; first.Before(before) {
		t.Fatalf("the first event's time = %s", first)
	}
	if !strings.Contains(evs[1].Detail, "forged at "+evs[0].Time.UTC().Format(time.RFC3339)) {
		t.Fatalf("summary %q does not name the first event's time %s", evs[1].Detail, evs[0].Time)
	}
}

// trail is an audit log that keeps every event (the memory store's,
// which bounds them, imports this package).
type trail struct {
	mu     sync.Mutex
	events []AuditEvent
}

func (l *trail) Append(_ context.Context, ev AuditEvent) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
	return nil
}

// Query filters by user and type, oldest first, as the stores do.
func (l *trail) Query(_ context.Context, q AuditQuery) ([]AuditEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []AuditEvent
	for _, ev := range l.events {
		if (q.User == "" || ev.User == q.User) && (q.Type == "" || ev.Type == q.Type) {
			out = append(out, ev)
		}
	}
	return out, nil
}

// kept is how many events l keeps now.
func kept(l AuditLog) int {
	evs, _ := l.Query(context.Background(), AuditQuery{})
	return len(evs)
}
