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

// auditAggregator keeps a flood of similar events from flushing the audit
// trail: the first event of a key in each window is written as it comes,
// the rest of the window are counted and written as one summary when the
// window ends. It holds at most max keys; events for further keys share
// one overflow entry.
type auditAggregator struct {
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
	timer    *time.Timer
}

const (
	auditWindow     = 10 * time.Second
	maxAggregates   = 10000
	maxAggregateIPs = 100
	overflowKey     = "\x00overflow"
)

func newAuditAggregator(e *Engine, window time.Duration, max int) *auditAggregator {
	return &auditAggregator{e: e, window: window, max: max, m: make(map[string]*aggregate)}
}

// add writes ev, or counts it when an event of key was written within the
// window.
func (a *auditAggregator) add(ctx context.Context, key string, ev AuditEvent) {
	if ev.Time.IsZero() {
		ev.Time = a.e.now() // the summary names the first event's time
	}
	a.mu.Lock()
	g, ok := a.m[key]
	if !ok && len(a.m) >= a.max {
		key = overflowKey
		g, ok = a.m[key]
	}
	if !ok || a.closed {
		if !a.closed {
			k := key
			a.m[k] = &aggregate{first: ev, outcomes: map[string]int{}, ips: map[string]bool{},
				timer: time.AfterFunc(a.window, func() { a.flush(k) })}
		}
		a.mu.Unlock()
		a.e.audit(ctx, ev)
		return
	}
	g.more++
	g.outcomes[ev.Outcome]++
	if ev.ClientIP != "" && (len(g.ips) < maxAggregateIPs || g.ips[ev.ClientIP]) {
		g.ips[ev.ClientIP] = true
	}
	a.mu.Unlock()
}

// flush ends key's window and writes its summary, if anything was counted.
func (a *auditAggregator) flush(key string) {
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
	ips := fmt.Sprint(len(g.ips))
	if len(g.ips) >= maxAggregateIPs {
		ips = "at least " + ips
	}
	ev := AuditEvent{Type: g.first.Type, Outcome: "repeated", Actor: g.first.Actor,
		Detail: fmt.Sprintf("%d more within %s of the %s at %s: %s; from %s address(es)",
			g.more, a.window, g.first.Outcome, g.first.Time.UTC().Format(time.RFC3339), strings.Join(parts, ", "), ips)}
	if key != overflowKey {
		ev.User, ev.Credential, ev.Rule = g.first.User, g.first.Credential, g.first.Rule
	}
	a.e.audit(context.Background(), ev)
}

// close writes every pending summary now.
func (a *auditAggregator) close() {
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
