package memory

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// AuditLog is a bounded in-memory audit log: events older than
// MaxAge or beyond MaxEvents are dropped, oldest first.
type AuditLog struct {
	now    func() time.Time
	maxAge time.Duration
	max    int

	mu     sync.Mutex
	events []pushauth.AuditEvent // oldest first
	last   []byte                // the newest event's record, which the next one chains to
}

// NewAuditLog keeps at most maxEvents (default 100000) events no
// older than maxAge (default 30 days); now may be nil for time.Now.
func NewAuditLog(maxAge time.Duration, maxEvents int, now func() time.Time) *AuditLog {
	if maxAge <= 0 {
		maxAge = 30 * 24 * time.Hour
	}
	if maxEvents <= 0 {
		maxEvents = 100000
	}
	if now == nil {
		now = time.Now
	}
	return &AuditLog{now: now, maxAge: maxAge, max: maxEvents}
}

// Append adds ev, dropping the oldest events beyond the bounds. Dropping
// reslices; append reallocates to the live events only, so memory stays
// within about twice the bound.
func (l *AuditLog) Append(_ context.Context, ev pushauth.AuditEvent) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev, rec, err := pushauth.ChainAudit(ev, l.last)
	if err != nil {
		return err
	}
	l.last = rec
	l.events = append(l.events, ev)
	if over := len(l.events) - l.max; over > 0 {
		clear(l.events[:over])
		l.events = l.events[over:]
	}
	l.expire()
	return nil
}

// expire drops events older than maxAge; l.mu must be held.
func (l *AuditLog) expire() {
	cutoff := l.now().Add(-l.maxAge)
	i := 0
	for i < len(l.events) && l.events[i].Time.Before(cutoff) {
		i++
	}
	if i > 0 {
		clear(l.events[:i])
		l.events = l.events[i:]
	}
}

// Query returns the matching events, oldest first.
func (l *AuditLog) Query(_ context.Context, q pushauth.AuditQuery) ([]pushauth.AuditEvent, error) {
	limit := q.Limit
	if limit <= 0 || limit > pushauth.MaxAuditQuery {
		limit = pushauth.MaxAuditQuery
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	var out []pushauth.AuditEvent
	for i := len(l.events) - 1; i >= 0 && len(out) < limit; i-- {
		ev := &l.events[i]
		if (q.User != "" && ev.User != q.User) || (q.Type != "" && ev.Type != q.Type) ||
			(!q.Since.IsZero() && ev.Time.Before(q.Since)) || (!q.Until.IsZero() && ev.Time.After(q.Until)) {
			continue
		}
		out = append(out, *ev)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// WalkAudit calls fn with each kept event's record, oldest first; the
// records are re-encoded, as encoding/json encodes an event the same way
// each time.
func (l *AuditLog) WalkAudit(_ context.Context, fn func([]byte) error) error {
	l.mu.Lock()
	evs := slices.Clone(l.events)
	l.mu.Unlock()
	for _, ev := range evs {
		rec, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// AuditLog returns an audit log in memory with the default bounds: the
// engine's trail when its config names none.
func (s *Store) AuditLog() pushauth.AuditLog { return NewAuditLog(0, 0, s.now) }

var _ pushauth.AuditLog = (*AuditLog)(nil)
