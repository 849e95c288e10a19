package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
)

// Passkeys (pushauth.PasskeyStore), in the passkeys bucket as
//
//	user key \x00 credential id -> passkey JSON
//
// Public keys and counters, no secret, so not sealed. Every change is one
// transaction on disk before it returns: a counter accepted before a
// crash is not accepted again after it.

func passkeyKey(user string, id []byte) []byte {
	return append([]byte(user+"\x00"), id...)
}

func (s *Store) AddPasskey(ctx context.Context, p *pushauth.Passkey) error {
	st, rec, err := s.stateAndJSON(p)
	if err != nil {
		return err
	}
	k := passkeyKey(p.UserKey, p.ID)
	user := p.UserKey
	return st.w.do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPasskeys)
		if b.Get(k) != nil {
			return fmt.Errorf("embedded store: passkey of %q: %w", user, pushauth.ErrExists)
		}
		return b.Put(k, rec)
	})
}

func (s *Store) Passkeys(_ context.Context, userKey string) ([]*pushauth.Passkey, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	out := []*pushauth.Passkey{}
	prefix := []byte(userKey + "\x00")
	err = st.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPasskeys).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var p pushauth.Passkey
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("embedded store: passkey of %q: %w", userKey, err)
			}
			out = append(out, &p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortPasskeys(out)
	return out, nil
}

func (s *Store) UsePasskey(ctx context.Context, userKey string, id []byte, count uint32, at time.Time) (*pushauth.Passkey, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	var out *pushauth.Passkey
	k := passkeyKey(userKey, id)
	err = st.w.do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPasskeys)
		v := b.Get(k)
		if v == nil {
			return pushauth.ErrNotFound
		}
		var p pushauth.Passkey
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("embedded store: passkey of %q: %w", userKey, err)
		}
		if !pushauth.CounterAdvances(p.SignCount, count) {
			return fmt.Errorf("embedded store: passkey of %q: stored %d, asserted %d: %w", userKey, p.SignCount, count, pushauth.ErrSignCount)
		}
		p.SignCount, p.LastUsed = count, at
		rec, err := json.Marshal(&p)
		if err != nil {
			return err
		}
		out = &p
		return b.Put(k, rec)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) DeletePasskey(ctx context.Context, userKey string, id []byte) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	k := passkeyKey(userKey, id)
	return st.w.do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPasskeys)
		if b.Get(k) == nil {
			return pushauth.ErrNotFound
		}
		return b.Delete(k)
	})
}

// sortPasskeys orders by creation, oldest first.
func sortPasskeys(ps []*pushauth.Passkey) {
	slices.SortStableFunc(ps, func(a, b *pushauth.Passkey) int { return a.CreatedAt.Compare(b.CreatedAt) })
}
