package embedded

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth/seal"
)

// Records with a lifetime (learned sessions, used-code markers) are looked
// up in memory and written to the file keyed by expiry | id. Their ids are
// hashes, so a key by id would land each insert on a random page of the
// B+tree and rewrite that page at the next commit; keyed by expiry, inserts
// land at the end, a commit rewrites a page or two, and the sweep deletes a
// prefix. Start reads the unexpired ones back.

// timedKey is expiry (8 bytes, Unix nanoseconds, big endian) | id.
func timedKey(until time.Time, id string) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(until.UnixNano()))
	return append(b, id...)
}

func splitTimedKey(k []byte) (time.Time, string, bool) {
	if len(k) < 8 {
		return time.Time{}, "", false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k))), string(k[8:]), true
}

// timed is one record of a timedSet.
type timed struct {
	until time.Time
	value string
}

// timedSet is the in-memory authority on one kind of record with a
// lifetime. Its mutex also orders the writes of one id: they are queued
// while it is held, so the file sees them in the order the map did.
type timedSet struct {
	mu sync.Mutex
	m  map[string]timed
}

func newTimedSet() *timedSet { return &timedSet{m: make(map[string]timed)} }

func (ts *timedSet) sweep(now time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for id, r := range ts.m {
		if now.After(r.until) {
			delete(ts.m, id)
		}
	}
}

// load reads the unexpired records of bucket; value turns a record's
// stored value into what the set keeps.
func (ts *timedSet) load(db *bolt.DB, bucket []byte, now time.Time, value func(v []byte) string) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Seek(timedKey(now, "")); k != nil; k, v = c.Next() {
			until, id, ok := splitTimedKey(k)
			if !ok {
				continue
			}
			// A later record of the same id wins.
			if prev, dup := ts.m[id]; !dup || until.After(prev.until) {
				ts.m[id] = timed{until: until, value: value(v)}
			}
		}
		return nil
	})
}

// sweepTimed deletes the records of bucket that expired by now.
func sweepTimed(tx *bolt.Tx, bucket []byte, now time.Time) error {
	limit := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	c := tx.Bucket(bucket).Cursor()
	for k, _ := c.First(); k != nil && len(k) >= 8 && bytes.Compare(k[:8], limit) <= 0; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// sweep deletes the sessions, markers, unbound credentials and activation
// codes that expired by now and the audit events older than the
// retention.
func (s *Store) sweep(tx *bolt.Tx, sealer *seal.Sealer, now time.Time) error {
	for _, b := range [][]byte{bucketSessions, bucketMarkers} {
		if err := sweepTimed(tx, b, now); err != nil {
			return err
		}
	}
	gone, err := sweepCredentials(tx, sealer, now)
	if err != nil {
		return err
	}
	for _, id := range gone {
		s.credentials.forget(id)
	}
	if err := sweepActivationCodes(tx, now); err != nil {
		return err
	}
	cutoff := now.Add(-s.opts.AuditRetention)
	audit := tx.Bucket(bucketAudit).Cursor()
	for k, v := audit.First(); k != nil; k, v = audit.First() {
		var ev struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(v, &ev) == nil && !ev.Time.Before(cutoff) {
			break
		}
		if err := audit.Delete(); err != nil {
			return err
		}
	}
	return nil
}
