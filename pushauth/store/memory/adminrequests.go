package memory

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/onepush/onepush/pushauth"
)

// adminRequests keeps the requests under dual control; its zero value is
// empty and ready.
type adminRequests struct {
	mu sync.Mutex
	m  map[string]*pushauth.AdminRequest
}

// CreateAdminRequest stores r, dropping records past their retention.
func (s *Store) CreateAdminRequest(_ context.Context, r *pushauth.AdminRequest) error {
	a := &s.requests
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[string]*pushauth.AdminRequest)
	}
	now := s.now()
	for id, old := range a.m {
		if now.After(old.ExpiresAt.Add(pushauth.AdminRequestRetention)) {
			delete(a.m, id)
		}
	}
	if len(a.m) >= pushauth.MaxAdminRequests {
		return pushauth.ErrTooManyAdminRequests
	}
	if _, ok := a.m[r.ID]; ok {
		return pushauth.ErrConflict
	}
	cp := *r
	a.m[r.ID] = &cp
	return nil
}

func (s *Store) GetAdminRequest(_ context.Context, id string) (*pushauth.AdminRequest, error) {
	a := &s.requests
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.m[id]
	if !ok {
		return nil, pushauth.ErrNotFound
	}
	cp := *r
	return &cp, nil
}

func (s *Store) ListAdminRequests(_ context.Context) ([]*pushauth.AdminRequest, error) {
	a := &s.requests
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*pushauth.AdminRequest, 0, len(a.m))
	for _, r := range a.m {
		cp := *r
		out = append(out, &cp)
	}
	slices.SortFunc(out, newestFirst)
	return out, nil
}

func (s *Store) UpdateAdminRequest(_ context.Context, r *pushauth.AdminRequest, from pushauth.AdminRequestStatus) (*pushauth.AdminRequest, error) {
	a := &s.requests
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, ok := a.m[r.ID]
	if !ok {
		return nil, pushauth.ErrNotFound
	}
	if cur.Status != from {
		cp := *cur
		return &cp, pushauth.ErrConflict
	}
	cp := *r
	a.m[r.ID] = &cp
	return r, nil
}

// newestFirst orders requests by the time they were made, newest first.
func newestFirst(a, b *pushauth.AdminRequest) int {
	if c := b.RequestedAt.Compare(a.RequestedAt); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}
