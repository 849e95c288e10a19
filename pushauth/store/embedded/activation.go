package embedded

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
)

// Activation codes (pushauth.ActivationCodes): one per user, in the
// activation_codes bucket as
//
//	user key -> expiry (8 bytes, Unix nanoseconds) | sealed code record
//
// The record holds a salted Argon2id hash of the code, never the code; it
// is sealed all the same, with the user's key as associated data, so a
// copy of the file or of a backup gives nobody a hash to search offline
// for the days a recovery code is valid. The expiry stays outside the
// seal for the sweep.
//
// Every change — issue, a wrong try counted, the take that uses the code
// — is one transaction, committed before the call returns: a code used
// before a crash is gone after it, and its failures are not forgotten.
// None of them is on the path of a held request.

func activationAD(user string) []byte { return []byte("activation/" + user) }

func sealActivation(sealer *seal.Sealer, c *pushauth.ActivationCode) ([]byte, error) {
	plain, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	sealed, err := sealer.Seal(plain, activationAD(c.User))
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(sealed)), unixNano(c.ExpiresAt)), sealed...), nil
}

// openActivation decodes a stored code; expired reports whether it is
// past its expiry at now (nothing is decoded then).
func openActivation(sealer *seal.Sealer, user string, v []byte, now time.Time) (c *pushauth.ActivationCode, expired bool, err error) {
	if len(v) < 8 {
		return nil, false, fmt.Errorf("embedded store: activation code of %q: truncated record", user)
	}
	if unixNano(now) >= binary.BigEndian.Uint64(v[:8]) {
		return nil, true, nil
	}
	plain, err := sealer.Open(v[8:], activationAD(user))
	if err != nil {
		return nil, false, fmt.Errorf("embedded store: activation code of %q: %w", user, err)
	}
	c = new(pushauth.ActivationCode)
	if err := json.Unmarshal(plain, c); err != nil {
		return nil, false, fmt.Errorf("embedded store: activation code of %q: %w", user, err)
	}
	return c, !now.Before(c.ExpiresAt), nil
}

// unixNano is t in Unix nanoseconds, times before 1970 (and the zero time)
// as 0, so they sort first.
func unixNano(t time.Time) uint64 {
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}

func (s *Store) PutActivationCode(ctx context.Context, c *pushauth.ActivationCode) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	if c.User == "" {
		return fmt.Errorf("embedded store: activation code without a user")
	}
	rec, err := sealActivation(st.sealer, c)
	if err != nil {
		return err
	}
	user := c.User
	return st.w.do(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketActivation).Put([]byte(user), rec)
	})
}

func (s *Store) GetActivationCode(_ context.Context, user string) (*pushauth.ActivationCode, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	v, err := st.read(bucketActivation, user)
	if err != nil {
		return nil, err
	}
	c, expired, err := openActivation(st.sealer, user, v, s.now())
	switch {
	case err != nil:
		return nil, err
	case expired:
		return nil, pushauth.ErrNotFound
	}
	return c, nil
}

// changeActivation runs change on the user's outstanding code id in one
// transaction, committed before it returns; stale when id is not (or no
// longer) the outstanding code, and nothing changed.
func (s *Store) changeActivation(ctx context.Context, user, id string, change func(b *bolt.Bucket, sealer *seal.Sealer, c *pushauth.ActivationCode) error) (stale bool, err error) {
	st, err := s.state()
	if err != nil {
		return false, err
	}
	now := s.now()
	err = st.w.do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketActivation)
		stale = true
		v := b.Get([]byte(user))
		if v == nil {
			return nil
		}
		c, expired, err := openActivation(st.sealer, user, v, now)
		if err != nil || expired || c.ID != id {
			return err
		}
		stale = false
		return change(b, st.sealer, c)
	})
	return stale, err
}

func (s *Store) CountActivationFailure(ctx context.Context, user, id string) (int, error) {
	var n int
	stale, err := s.changeActivation(ctx, user, id, func(b *bolt.Bucket, sealer *seal.Sealer, c *pushauth.ActivationCode) error {
		c.Failures++
		n = c.Failures
		rec, err := sealActivation(sealer, c)
		if err != nil {
			return err
		}
		return b.Put([]byte(user), rec)
	})
	switch {
	case err != nil:
		return 0, err
	case stale:
		return 0, pushauth.ErrNotFound
	}
	return n, nil
}

func (s *Store) TakeActivationCode(ctx context.Context, user, id string) (bool, error) {
	stale, err := s.changeActivation(ctx, user, id, func(b *bolt.Bucket, _ *seal.Sealer, _ *pushauth.ActivationCode) error {
		return b.Delete([]byte(user))
	})
	return err == nil && !stale, err
}

// sweepActivationCodes deletes the codes that expired by now.
func sweepActivationCodes(tx *bolt.Tx, now time.Time) error {
	b := tx.Bucket(bucketActivation)
	var gone [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		if len(v) < 8 || unixNano(now) >= binary.BigEndian.Uint64(v[:8]) {
			gone = append(gone, clone(k))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range gone {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
