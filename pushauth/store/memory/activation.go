package memory

import (
	"context"

	"github.com/onepush/onepush/pushauth"
)

func (s *Store) PutActivationCode(_ context.Context, c *pushauth.ActivationCode) error {
	cp := c.Clone()
	s.mu.Lock()
	s.activation[c.User] = cp
	s.mu.Unlock()
	return nil
}

func (s *Store) GetActivationCode(_ context.Context, userKey string) (*pushauth.ActivationCode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.activation[userKey]
	if !ok || !s.now().Before(c.ExpiresAt) {
		return nil, pushauth.ErrNotFound
	}
	return c.Clone(), nil
}

func (s *Store) CountActivationFailure(_ context.Context, userKey, id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.activation[userKey]
	if !ok || c.ID != id || !s.now().Before(c.ExpiresAt) {
		return 0, pushauth.ErrNotFound
	}
	c.Failures++
	return c.Failures, nil
}

func (s *Store) TakeActivationCode(_ context.Context, userKey, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.activation[userKey]
	if !ok || c.ID != id || !s.now().Before(c.ExpiresAt) {
		return false, nil
	}
	delete(s.activation, userKey)
	return true, nil
}
