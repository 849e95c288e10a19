package embedded

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Records with a lifetime (sessions, used-code markers) are stored as
// expiry (8 bytes, Unix nanoseconds, big endian) | payload, and indexed in
// bucketExpiry by expiry | kind | key, so the sweep reads only what has
// expired.

const (
	kindSession = 's'
	kindMarker  = 'm'
)

var kindBucket = map[byte][]byte{kindSession: bucketSessions, kindMarker: bucketMarkers}

func expiryKey(until time.Time, kind byte, key string) []byte {
	b := make([]byte, 9, 9+len(key))
	binary.BigEndian.PutUint64(b, uint64(until.UnixNano()))
	b[8] = kind
	return append(b, key...)
}

// putExpiring stores payload under key until the given time, replacing an
// earlier record and its index entry.
func putExpiring(tx *bolt.Tx, bucket []byte, kind byte, key string, until time.Time, payload []byte) error {
	if err := deleteExpiring(tx, bucket, kind, key); err != nil {
		return err
	}
	v := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint64(v, uint64(until.UnixNano()))
	v = append(v, payload...)
	if err := tx.Bucket(bucket).Put([]byte(key), v); err != nil {
		return err
	}
	return tx.Bucket(bucketExpiry).Put(expiryKey(until, kind, key), nil)
}

// getExpiring returns the record's expiry and payload (valid only within
// the transaction).
func getExpiring(tx *bolt.Tx, bucket []byte, key string) (time.Time, []byte, bool) {
	v := tx.Bucket(bucket).Get([]byte(key))
	if len(v) < 8 {
		return time.Time{}, nil, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), v[8:], true
}

func deleteExpiring(tx *bolt.Tx, bucket []byte, kind byte, key string) error {
	until, _, ok := getExpiring(tx, bucket, key)
	if !ok {
		return nil
	}
	if err := tx.Bucket(bucketExpiry).Delete(expiryKey(until, kind, key)); err != nil {
		return err
	}
	return tx.Bucket(bucket).Delete([]byte(key))
}

// sweep deletes the records that expired by now and audit events older
// than retention.
func sweep(tx *bolt.Tx, now time.Time, retention time.Duration) error {
	idx := tx.Bucket(bucketExpiry)
	limit := make([]byte, 8)
	binary.BigEndian.PutUint64(limit, uint64(now.UnixNano()))
	c := idx.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) <= 0; k, _ = c.First() {
		if b := kindBucket[k[8]]; b != nil {
			if err := tx.Bucket(b).Delete(k[9:]); err != nil {
				return err
			}
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	cutoff := now.Add(-retention)
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
