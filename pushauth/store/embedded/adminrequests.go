package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
)

// Requests under dual control (pushauth.AdminRequests), in their own
// bucket; each write is on disk when it returns.

func (s *Store) CreateAdminRequest(ctx context.Context, r *pushauth.AdminRequest) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	rec, err := json.Marshal(r)
	if err != nil {
		return err
	}
	now := s.now()
	return st.w.do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRequests)
		// Drop records past their retention; the rest bound the bucket.
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var old pushauth.AdminRequest
			if json.Unmarshal(v, &old) != nil || now.After(old.ExpiresAt.Add(pushauth.AdminRequestRetention)) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		if b.Stats().KeyN >= pushauth.MaxAdminRequests {
			return pushauth.ErrTooManyAdminRequests
		}
		if b.Get([]byte(r.ID)) != nil {
			return pushauth.ErrConflict
		}
		return b.Put([]byte(r.ID), rec)
	})
}

func (s *Store) GetAdminRequest(_ context.Context, id string) (*pushauth.AdminRequest, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	v, err := st.read(bucketRequests, id)
	if err != nil {
		return nil, err
	}
	var r pushauth.AdminRequest
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("embedded store: admin request %s: %w", id, err)
	}
	return &r, nil
}

func (s *Store) ListAdminRequests(_ context.Context) ([]*pushauth.AdminRequest, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	var out []*pushauth.AdminRequest
	err = st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
			var r pushauth.AdminRequest
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("embedded store: admin request %s: %w", k, err)
			}
			out = append(out, &r)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b *pushauth.AdminRequest) int { return b.RequestedAt.Compare(a.RequestedAt) })
	return out, err
}

func (s *Store) UpdateAdminRequest(ctx context.Context, r *pushauth.AdminRequest, from pushauth.AdminRequestStatus) (*pushauth.AdminRequest, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	rec, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var cur *pushauth.AdminRequest
	err = st.w.do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRequests)
		v := b.Get([]byte(r.ID))
		if v == nil {
			return pushauth.ErrNotFound
		}
		var old pushauth.AdminRequest
		if err := json.Unmarshal(v, &old); err != nil {
			return fmt.Errorf("embedded store: admin request %s: %w", r.ID, err)
		}
		if old.Status != from {
			cur = &old
			return pushauth.ErrConflict
		}
		return b.Put([]byte(r.ID), rec)
	})
	if err != nil {
		return cur, err
	}
	return r, nil
}
