package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
)

// AuditLog keeps the audit trail in one Redis stream, <prefix>audit,
// shared by every instance. Stream IDs are millisecond timestamps, so a
// time range is an ID range; the stream is trimmed by age and by length on
// every append.
type AuditLog struct {
	client goredis.UniversalClient
	key    string
	maxAge time.Duration
	max    int64
	now    func() time.Time

	mu       sync.Mutex
	queue    []pendingEvent // waiting for the group commit
	flushing bool           // a caller is appending the queue
	// The newest entry as this instance last saw it: what the flushing
	// caller chains to (only it reads or writes them).
	lastID  string
	lastRec []byte
}

// maxAuditScan bounds how many entries one filtered query reads.
const maxAuditScan = 100000

// NewAuditLog keeps at most maxEvents (default 100000) events no older than
// maxAge (default 30 days) in s's Redis.
func NewAuditLog(s *Store, maxAge time.Duration, maxEvents int) *AuditLog {
	if maxAge <= 0 {
		maxAge = 30 * 24 * time.Hour
	}
	if maxEvents <= 0 {
		maxEvents = 100000
	}
	return &AuditLog{client: s.client, key: s.prefix + "audit", maxAge: maxAge, max: int64(maxEvents), now: s.now}
}

// Appending chains each event to the stream's newest entry
// (pushauth.ChainAudit). Redis cannot hash in a script, so the instance
// chains and a script appends only if the stream's newest entry is still
// the one chained to (compare and append); otherwise it answers the
// current newest entry and the instance chains again. Instances sharing
// the stream therefore never fork the chain: each entry's prev is the
// entry before it. Within an instance appends are group-committed: the
// first caller appends, in one script call, what the others queued
// meanwhile, so concurrent events cost one round trip together, not one
// each, and never conflict with each other. (The first caller starts a
// goroutine that appends until the queue is empty.)

// appendScript appends ARGV[4..] if the newest entry's ID is ARGV[1] (""
// for an empty stream), trimming to ARGV[2] (MAXLEN ~) and ARGV[3] (MINID
// ~). Returns {1, last ID} or {0, newest ID, its record} ({0} when empty).
var appendScript = goredis.NewScript(`
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lastid = ''
if #last > 0 then lastid = last[1][1] end
if lastid ~= ARGV[1] then
  if #last == 0 then return {0} end
  local f, rec = last[1][2], ''
  for i = 1, #f, 2 do if f[i] == 'e' then rec = f[i + 1] end end
  return {0, lastid, rec}
end
local id = ''
for i = 4, #ARGV do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[i])
end
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3])
return {1, id}
`)

// Bounds of the group commit.
const (
	maxAppendBatch   = 256   // events in one script call
	maxAppendPending = 10000 // events waiting; more are refused (logged by the engine)
	maxAppendTries   = 64    // conflicts with other instances before an append fails
)

// pendingEvent is an event waiting for the group commit.
type pendingEvent struct {
	ev   pushauth.AuditEvent
	done chan error
}

// Append chains ev and adds it to the stream, trimming what has aged out.
func (l *AuditLog) Append(ctx context.Context, ev pushauth.AuditEvent) error {
	p := pendingEvent{ev: ev, done: make(chan error, 1)}
	l.mu.Lock()
	if len(l.queue) >= maxAppendPending {
		l.mu.Unlock()
		return fmt.Errorf("redis: %s: %d audit events waiting to be appended", l.key, maxAppendPending)
	}
	l.queue = append(l.queue, p)
	lead := !l.flushing
	l.flushing = true
	l.mu.Unlock()
	if lead {
		// One goroutine per log at a time, gone once the queue is empty:
		// no caller waits on anybody else's events.
		go l.flush(context.WithoutCancel(ctx))
	}
	if ev.OnRequestPath() {
		// Like the embedded store's: a held request does not wait for its
		// challenge's events, which two instances appending to one chain
		// would otherwise make it do (compare-and-append conflicts under
		// load; the peak scenario's tail). If the batch then fails (Redis
		// down), these events are lost, as a crash loses the embedded
		// store's last Linger of them.
		return nil
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush appends the queue, batch by batch, until it is empty.
func (l *AuditLog) flush(ctx context.Context) {
	for {
		l.mu.Lock()
		n := min(len(l.queue), maxAppendBatch)
		if n == 0 {
			l.flushing = false
			l.mu.Unlock()
			return
		}
		batch := slices.Clone(l.queue[:n])
		l.queue = slices.Delete(l.queue, 0, n)
		l.mu.Unlock()
		err := l.appendBatch(ctx, batch)
		for _, p := range batch {
			p.done <- err
		}
	}
}

// appendBatch chains batch to the newest entry the instance knows and
// appends it, chaining again when another instance appended meanwhile.
// Only the flushing caller runs it.
func (l *AuditLog) appendBatch(ctx context.Context, batch []pendingEvent) error {
	for range maxAppendTries {
		prev := l.lastRec
		args := []any{l.lastID, l.max, strconv.FormatInt(l.now().Add(-l.maxAge).UnixMilli(), 10)}
		for _, p := range batch {
			_, rec, err := pushauth.ChainAudit(p.ev, prev)
			if err != nil {
				return err
			}
			args, prev = append(args, rec), rec
		}
		res, err := appendScript.Run(ctx, l.client, []string{l.key}, args...).Slice()
		if err != nil {
			return fmt.Errorf("redis: appending to %s: %w", l.key, err)
		}
		ok, _ := res[0].(int64)
		if ok == 1 {
			l.lastID, _ = res[1].(string)
			l.lastRec = prev
			return nil
		}
		l.lastID, l.lastRec = "", nil
		if len(res) == 3 {
			id, _ := res[1].(string)
			rec, _ := res[2].(string)
			l.lastID, l.lastRec = id, []byte(rec)
		}
	}
	return fmt.Errorf("redis: appending to %s: %d tries lost to other instances appending", l.key, maxAppendTries)
}

// WalkAudit calls fn with each entry's record as stored, oldest first.
func (l *AuditLog) WalkAudit(ctx context.Context, fn func([]byte) error) error {
	lo := "-"
	for {
		msgs, err := l.client.XRangeN(ctx, l.key, lo, "+", 1000).Result()
		if err != nil {
			return fmt.Errorf("redis: XRANGE %s: %w", l.key, err)
		}
		for _, m := range msgs {
			raw, _ := m.Values["e"].(string)
			if err := fn([]byte(raw)); err != nil {
				return err
			}
		}
		if len(msgs) < 1000 {
			return nil
		}
		lo = "(" + msgs[len(msgs)-1].ID
	}
}

// Query reads the stream newest first within the time range and returns
// the matching events oldest first.
func (l *AuditLog) Query(ctx context.Context, q pushauth.AuditQuery) ([]pushauth.AuditEvent, error) {
	limit := q.Limit
	if limit <= 0 || limit > pushauth.MaxAuditQuery {
		limit = pushauth.MaxAuditQuery
	}
	floor := l.now().Add(-l.maxAge)
	if q.Since.After(floor) {
		floor = q.Since
	}
	lo := strconv.FormatInt(floor.UnixMilli(), 10)
	hi := "+"
	if !q.Until.IsZero() {
		hi = strconv.FormatInt(q.Until.UnixMilli(), 10)
	}
	var out []pushauth.AuditEvent
	scanned := 0
	for len(out) < limit && scanned < maxAuditScan {
		msgs, err := l.client.XRevRangeN(ctx, l.key, hi, lo, 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("redis: XREVRANGE %s: %w", l.key, err)
		}
		for _, m := range msgs {
			scanned++
			raw, _ := m.Values["e"].(string)
			var ev pushauth.AuditEvent
			if json.Unmarshal([]byte(raw), &ev) != nil {
				continue
			}
			if (q.User != "" && ev.User != q.User) || (q.Type != "" && ev.Type != q.Type) ||
				(!q.Since.IsZero() && ev.Time.Before(q.Since)) || (!q.Until.IsZero() && ev.Time.After(q.Until)) {
				continue
			}
			out = append(out, ev)
			if len(out) == limit {
				break
			}
		}
		if len(msgs) < 1000 {
			break
		}
		hi = "(" + msgs[len(msgs)-1].ID
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

var _ pushauth.AuditLog = (*AuditLog)(nil)
