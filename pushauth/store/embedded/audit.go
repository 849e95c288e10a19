package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
)

// AuditLog is the audit trail kept in the store's file, in order of
// appending, bounded by Options.AuditRetention and AuditMaxEvents.
type AuditLog struct{ s *Store }

// AuditLog returns the store's audit trail.
func (s *Store) AuditLog() *AuditLog { return s.audit }

// Append adds ev to the trail.
func (l *AuditLog) Append(ctx context.Context, ev pushauth.AuditEvent) error {
	st, err := l.s.state()
	if err != nil {
		return err
	}
	max := l.s.opts.AuditMaxEvents
	// Encoded by the writer, off the path of the request.
	apply := func(tx *bolt.Tx) error { return appendEvent(tx, ev, max) }
	if ev.OnRequestPath() { // committed with the next transaction, within Linger

		return st.w.later(apply)
	}
	return st.w.do(ctx, apply)
}

// appendEvent chains ev to the newest record (pushauth.ChainAudit) and
// keeps it, dropping the oldest beyond max: the chain is anchored at the
// oldest kept event.
func appendEvent(tx *bolt.Tx, ev pushauth.AuditEvent, max int) error {
	b := tx.Bucket(bucketAudit)
	_, last := b.Cursor().Last()
	_, rec, err := pushauth.ChainAudit(ev, last)
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), rec); err != nil {
		return err
	}
	// Sequences are contiguous and only the oldest are deleted, so the
	// first key tells how many are kept.
	c := b.Cursor()
	for k, _ := c.First(); k != nil && seq-binary.BigEndian.Uint64(k)+1 > uint64(max); k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Query returns the matching events, oldest first, after committing every
// event appended before it.
func (l *AuditLog) Query(ctx context.Context, q pushauth.AuditQuery) ([]pushauth.AuditEvent, error) {
	st, err := l.s.state()
	if err != nil {
		return nil, err
	}
	if err := st.w.flush(ctx); err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit <= 0 || limit > pushauth.MaxAuditQuery {
		limit = pushauth.MaxAuditQuery
	}
	// An event's JSON holds "user":<key> exactly when it is that user's,
	// so most events are skipped without decoding.
	var userField, typeField []byte
	if q.User != "" {
		userField = fieldBytes("user", q.User)
	}
	if q.Type != "" {
		typeField = fieldBytes("type", q.Type)
	}
	var out []pushauth.AuditEvent
	err = st.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			if (userField != nil && !bytes.Contains(v, userField)) || (typeField != nil && !bytes.Contains(v, typeField)) {
				continue
			}
			var ev pushauth.AuditEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				l.s.log.Warn("embedded store: skipping an unreadable audit event", "seq", binary.BigEndian.Uint64(k), "error", err)
				continue
			}
			if (q.User != "" && ev.User != q.User) || (q.Type != "" && ev.Type != q.Type) ||
				(!q.Since.IsZero() && ev.Time.Before(q.Since)) || (!q.Until.IsZero() && ev.Time.After(q.Until)) {
				continue
			}
			out = append(out, ev)
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// WalkAudit calls fn with each kept record as stored, oldest first, after
// committing every event appended before it.
func (l *AuditLog) WalkAudit(ctx context.Context, fn func([]byte) error) error {
	st, err := l.s.state()
	if err != nil {
		return err
	}
	if err := st.w.flush(ctx); err != nil {
		return err
	}
	return st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error { return fn(v) })
	})
}

func fieldBytes(name, value string) []byte {
	v, _ := json.Marshal(value)
	return append([]byte(`"`+name+`":`), v...)
}

var _ pushauth.AuditLog = (*AuditLog)(nil)
