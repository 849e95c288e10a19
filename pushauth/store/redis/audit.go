package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

// maxAppendTries bounds the optimistic retries of one append when other
// instances append at the same moment.
const maxAppendTries = 64

// Append chains ev to the newest entry (pushauth.ChainAudit) and adds it,
// trimming what has aged out, in one optimistic transaction: WATCH the
// stream, read its newest entry, MULTI XADD XTRIM EXEC. An instance that
// appended in between makes EXEC fail and this one read again, so
// instances sharing the stream never fork the chain: each entry's prev is
// the entry before it in the stream.
func (l *AuditLog) Append(ctx context.Context, ev pushauth.AuditEvent) error {
	minID := strconv.FormatInt(l.now().Add(-l.maxAge).UnixMilli(), 10)
	try := func(tx *goredis.Tx) error {
		last, err := tx.XRevRangeN(ctx, l.key, "+", "-", 1).Result()
		if err != nil {
			return err
		}
		var prev []byte
		if len(last) > 0 {
			raw, _ := last[0].Values["e"].(string)
			prev = []byte(raw)
		}
		_, rec, err := pushauth.ChainAudit(ev, prev)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
			pipe.XAdd(ctx, &goredis.XAddArgs{Stream: l.key, MaxLen: l.max, Approx: true, Values: []any{"e", rec}})
			pipe.XTrimMinIDApprox(ctx, l.key, minID, 0)
			return nil
		})
		return err
	}
	for range maxAppendTries {
		err := l.client.Watch(ctx, try, l.key)
		if errors.Is(err, goredis.TxFailedErr) {
			continue
		}
		if err != nil {
			return fmt.Errorf("redis: appending to %s: %w", l.key, err)
		}
		return nil
	}
	return fmt.Errorf("redis: appending to %s: %d tries lost to concurrent appends", l.key, maxAppendTries)
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
