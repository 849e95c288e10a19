package embedded

import (
	"bytes"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
)

// Unbound credentials (registered, never bound) live until their
// ExpiresAt: GetCredential stops returning one then, and the sweep deletes
// it from the file. The credential_expiry bucket indexes them by expiry |
// id, so the sweep reads a prefix instead of opening every credential.
//
// Storing a credential again (at binding, with no expiry) does not remove
// its old index entry: the sweep opens the record an entry names and
// deletes it only when the record itself says it expired, so an entry
// left behind by a binding, a new expiry or a delete only goes away.

func indexCredentialExpiry(tx *bolt.Tx, id string, expires time.Time) error {
	if expires.IsZero() {
		return nil
	}
	return tx.Bucket(bucketCredExpiry).Put(timedKey(expires, id), nil)
}

func credentialExpired(c *pushauth.Credential, now time.Time) bool {
	return !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt)
}

// sweepCredentials deletes the unbound credentials that expired by now
// and the index entries up to now; it returns the ids it deleted.
func sweepCredentials(tx *bolt.Tx, sealer *seal.Sealer, now time.Time) ([]string, error) {
	idx, creds := tx.Bucket(bucketCredExpiry), tx.Bucket(bucketCredentials)
	limit := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	var due [][]byte
	c := idx.Cursor()
	for k, _ := c.First(); k != nil && len(k) >= 8 && bytes.Compare(k[:8], limit) <= 0; k, _ = c.Next() {
		due = append(due, clone(k))
	}
	var deleted []string
	for _, k := range due {
		if err := idx.Delete(k); err != nil {
			return nil, err
		}
		_, id, _ := splitTimedKey(k)
		v := creds.Get([]byte(id))
		if v == nil {
			continue
		}
		cred, err := openCredential(sealer, id, v)
		if err != nil || !credentialExpired(cred, now) {
			continue // bound since, or unreadable: never deleted on a guess
		}
		if err := creds.Delete([]byte(id)); err != nil {
			return nil, err
		}
		deleted = append(deleted, id)
	}
	return deleted, nil
}
