package embedded

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
)

// The notification outbox (pushauth.Outbox), in two buckets:
//
//	outbox      message id -> message JSON, with when it is next due
//	outbox_due  due (8 bytes, Unix nanoseconds) | message id -> nil
//
// A message is next due at its creation, at its retry time, or at the end
// of the lease of the claim that holds it, so a message whose delivery a
// crash interrupted is due again by itself when its lease ends. Claims
// walk outbox_due from its start: due messages come oldest first, then by
// id, as the contract asks. The outbox bucket's sequence counts its
// messages (kept in the same transactions), so the backlog is read without
// a walk.
//
// Every change — enqueue, claim, retry, acknowledgement — is one
// transaction, committed before the call returns: a message queued before
// a SIGKILL is delivered after the restart, one acknowledged is not sent
// again, and a lease taken before the crash is honoured after it. Claims
// run inside the writer, after every write queued before them. A claim
// that finds nothing due (the deliverer asks once a second) reads the
// file and writes nothing. None of this is on the path of a held request:
// messages announce bindings and state changes, which wait for the disk
// anyway, and the deliverer runs on its own.
//
// Messages hold nothing secret (the engine puts no code, session or
// password in them), so they are not sealed.

// maxClaim bounds one claim, whatever the caller asks.
const maxClaim = 1000

// maxLastError bounds the reason of a failed delivery kept with a message.
const maxLastError = 1024

// outboxRecord is a message as the file keeps it.
type outboxRecord struct {
	pushauth.Notification
	Due time.Time `json:"due"`
}

func dueKey(due time.Time, id string) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), unixNano(due)), id...)
}

func readOutbox(b *bolt.Bucket, id string) (*outboxRecord, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var r outboxRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("embedded store: outbox message %q: %w", id, err)
	}
	return &r, nil
}

// putOutbox writes r due at r.Due, moving its index entry from oldDue
// (nil: a new message).
func putOutbox(tx *bolt.Tx, r *outboxRecord, oldDue *time.Time) error {
	rec, err := json.Marshal(r)
	if err != nil {
		return err
	}
	idx := tx.Bucket(bucketOutboxDue)
	if oldDue != nil {
		if err := idx.Delete(dueKey(*oldDue, r.ID)); err != nil {
			return err
		}
	}
	if err := idx.Put(dueKey(r.Due, r.ID), nil); err != nil {
		return err
	}
	return tx.Bucket(bucketOutbox).Put([]byte(r.ID), rec)
}

func (s *Store) EnqueueNotification(ctx context.Context, n *pushauth.Notification) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	if n.ID == "" || len(n.ID) > 256 {
		return fmt.Errorf("embedded store: outbox message id %q: must be 1 to 256 bytes", n.ID)
	}
	r := &outboxRecord{Notification: *n, Due: n.Time}
	r.Body = bytes.Clone(n.Body)
	exists := false
	err = st.w.do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if exists = b.Get([]byte(r.ID)) != nil; exists {
			return nil
		}
		if err := putOutbox(tx, r, nil); err != nil {
			return err
		}
		return b.SetSequence(b.Sequence() + 1)
	})
	if err == nil && exists {
		return fmt.Errorf("embedded store: outbox message %s: %w", n.ID, pushauth.ErrExists)
	}
	return err
}

// anythingDue reports whether the file holds a message due at now: a
// claim that would find nothing writes nothing.
func anythingDue(db *bolt.DB, now time.Time) (bool, error) {
	due := false
	err := db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketOutboxDue).Cursor().First()
		due = len(k) >= 8 && binary.BigEndian.Uint64(k[:8]) <= unixNano(now)
		return nil
	})
	return due, err
}

func (s *Store) ClaimNotifications(ctx context.Context, now time.Time, max int, lease time.Duration) ([]*pushauth.Notification, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	max = min(max, maxClaim)
	if due, err := anythingDue(st.db, now); err != nil || !due {
		return nil, err
	}
	var tok [8]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(tok[:])
	limit := unixNano(now)
	var out []*pushauth.Notification
	err = st.w.do(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		var keys [][]byte
		c := tx.Bucket(bucketOutboxDue).Cursor()
		for k, _ := c.First(); k != nil && len(keys) < max; k, _ = c.Next() {
			if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) > limit {
				break
			}
			keys = append(keys, clone(k))
		}
		b := tx.Bucket(bucketOutbox)
		for _, k := range keys {
			id := string(k[8:])
			r, err := readOutbox(b, id)
			if err != nil {
				return err
			}
			if r == nil { // an index entry without its message
				if err := tx.Bucket(bucketOutboxDue).Delete(k); err != nil {
					return err
				}
				continue
			}
			old := r.Due
			r.Attempts++
			r.Lease = token + ":" + id
			r.Due = now.Add(lease)
			if !bytes.Equal(dueKey(old, id), k) {
				// The index entry is not the one the record names: drop
				// it, so the message is indexed once.
				if err := tx.Bucket(bucketOutboxDue).Delete(k); err != nil {
					return err
				}
			}
			if err := putOutbox(tx, r, &old); err != nil {
				return err
			}
			n := r.Notification
			n.Body = bytes.Clone(r.Body)
			out = append(out, &n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) AckNotification(ctx context.Context, id string) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	// Another delivery acknowledged it already: nothing to write.
	known := false
	if err := st.db.View(func(tx *bolt.Tx) error {
		known = tx.Bucket(bucketOutbox).Get([]byte(id)) != nil
		return nil
	}); err != nil || !known {
		return err
	}
	return st.w.do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		r, err := readOutbox(b, id)
		if err != nil || r == nil {
			return err
		}
		if err := tx.Bucket(bucketOutboxDue).Delete(dueKey(r.Due, id)); err != nil {
			return err
		}
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		if n := b.Sequence(); n > 0 {
			return b.SetSequence(n - 1)
		}
		return nil
	})
}

func (s *Store) RetryNotification(ctx context.Context, id, lease string, next time.Time, lastErr string) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	if len(lastErr) > maxLastError {
		lastErr = lastErr[:maxLastError]
	}
	stale := false
	err = st.w.do(ctx, func(tx *bolt.Tx) error {
		r, err := readOutbox(tx.Bucket(bucketOutbox), id)
		if err != nil {
			return err
		}
		if stale = r == nil || lease == "" || r.Lease != lease; stale {
			return nil
		}
		old := r.Due
		r.Lease, r.LastError, r.Due = "", lastErr, next
		return putOutbox(tx, r, &old)
	})
	if err == nil && stale {
		return fmt.Errorf("embedded store: outbox message %s: %w", id, pushauth.ErrConflict)
	}
	return err
}

func (s *Store) NotificationBacklog(context.Context) (int, error) {
	st, err := s.state()
	if err != nil {
		return 0, err
	}
	var n uint64
	err = st.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Sequence()
		return nil
	})
	return int(n), err
}

// countOutbox sets the outbox's count from its content, at Start, should
// anything (a file written by hand, a restore) have left it wrong.
func countOutbox(db *bolt.DB) error {
	var n, have uint64
	_ = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		n, have = uint64(b.Stats().KeyN), b.Sequence()
		return nil
	})
	if n == have {
		return nil
	}
	return db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketOutbox).SetSequence(n); err != nil {
			return err
		}
		return bumpGeneration(tx)
	})
}
