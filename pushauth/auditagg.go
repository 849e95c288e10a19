package pushauth

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// AuditAggregator keeps a flood of similar events from flushing the audit
// trail: the first event of a key in each window is written as it comes,
// the rest of the window are counted and written as one summary when the
// window ends. It holds at most max keys; events for further keys share
// one overflow entry.
type AuditAggregator struct {
	e      *Engine
	window time.Duration
	max    int

	mu     sync.Mutex
	m      map[string]*aggregate
	closed bool
}

type aggregate struct {
	first    AuditEvent
	more     int
	outcomes map[string]int
	ips      map[string]bool // at most maxAggregateIPs, then only counted
	users    map[string]bool // likewise
	timer    *time.Timer
}

const (
	auditWindow     = 10 * time.Second
	maxAggregates   = 10000
	maxAggregateIPs = 100
	overflowKey     = "\x00overflow"
)

// NewAuditAggregator aggregates in 10 s windows over at most 10000 keys,
// writing to e's audit trail; e.Close writes what it still counts.
func NewAuditAggregator(e *Engine) *AuditAggregator {
	a := newAuditAggregator(e, auditWindow, maxAggregates)
	e.aggregatorsMu.Lock()
	defer e.aggregatorsMu.Unlock()
	e.aggregators = append(e.aggregators, a)
	return a
}

// closeAggregators writes the pending summaries of e's aggregators.
func (e *Engine) closeAggregators() {
	e.aggregatorsMu.Lock()
	defer e.aggregatorsMu.Unlock()
	for _, a := range e.aggregators {
		a.close()
	}
}

func newAuditAggregator(e *Engine, window time.Duration, max int) *AuditAggregator {
	return &AuditAggregator{e: e, window: window, max: max, m: make(map[string]*aggregate)}
}

// Add writes ev, or counts it when an event of key was written within the
// window.
func (a *AuditAggregator) Add(ctx context.Context, key string, ev AuditEvent) {
	a.addAny(ctx, ev, key)
}

// addAny writes ev unless an event of any of keys was written within the
// window, in which case it is counted toward the first such key's summary.
// A flood varies one of its keys and not another (random user names from
// one address, one user's refusals from many addresses): keying it by
// both keeps it to one event and a summary per window.
func (a *AuditAggregator) addAny(ctx context.Context, ev AuditEvent, keys ...string) {
	if ev.Time.IsZero() {
		ev.Time = a.e.now()
	}
	a.mu.Lock()
	var g *aggregate
	for _, k := range keys {
		if g = a.m[k]; g != nil {
			break
		}
	}
	if g == nil && len(a.m)+len(keys) > a.max {
		keys = []string{overflowKey}
		g = a.m[overflowKey]
	}
	if g == nil || a.closed {
		if !a.closed {
			for _, k := range keys {
				a.m[k] = &aggregate{first: ev, outcomes: map[string]int{}, ips: map[string]bool{}, users: map[string]bool{},
					timer: time.AfterFunc(a.window, func() { a.flush(k) })}
			}
		}
		a.mu.Unlock()
		a.e.Record(ctx, ev)
		return
	}
	g.more++
	g.outcomes[ev.Outcome]++
	if ev.ClientIP != "" && (len(g.ips) < maxAggregateIPs || g.ips[ev.ClientIP]) {
		g.ips[ev.ClientIP] = true
	}
	if ev.User != "" && (len(g.users) < maxAggregateIPs || g.users[ev.User]) {
		g.users[ev.User] = true
	}
	a.mu.Unlock()
}

// flush ends key's window and writes its summary, if anything was counted.
func (a *AuditAggregator) flush(key string) {
	a.mu.Lock()
	g, ok := a.m[key]
	delete(a.m, key)
	a.mu.Unlock()
	if !ok || g.more == 0 {
		return
	}
	parts := make([]string, 0, len(g.outcomes))
	for _, o := range slices.Sorted(maps.Keys(g.outcomes)) {
		parts = append(parts, fmt.Sprintf("%s %d", o, g.outcomes[o]))
	}
	count := func(m map[string]bool) string {
		if len(m) >= maxAggregateIPs {
			return fmt.Sprint("at least ", len(m))
		}
		return fmt.Sprint(len(m))
	}
	detail := fmt.Sprintf("%d more within %s of the %s at %s: %s; from %s address(es)",
		g.more, a.window, g.first.Outcome, g.first.Time.UTC().Format(time.RFC3339), strings.Join(parts, ", "), count(g.ips))
	if len(g.users) > 1 || (len(g.users) == 1 && !g.users[g.first.User]) {
		detail += fmt.Sprintf(", for %s user(s)", count(g.users))
	}
	ev := AuditEvent{Type: g.first.Type, Outcome: "repeated", Actor: g.first.Actor, Detail: detail}
	if key != overflowKey {
		ev.User, ev.Credential, ev.Rule = g.first.User, g.first.Credential, g.first.Rule
	}
	a.e.Record(context.Background(), ev)
}

// close writes every pending summary now.
func (a *AuditAggregator) close() {
	a.mu.Lock()
	a.closed = true
	keys := slices.Collect(maps.Keys(a.m))
	for _, g := range a.m {
		g.timer.Stop()
	}
	a.mu.Unlock()
	for _, k := range keys {
		a.flush(k)
	}
}
