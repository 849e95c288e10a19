package pushauth

import "context"

func (s *MemoryStore) PutActivationCode(_ context.Context, c *ActivationCode) error {
	cp := c.clone()
	s.mu.Lock()
	s.activation[c.User] = cp
	s.mu.Unlock()
	return nil
}

func (s *MemoryStore) GetActivationCode(_ context.Context, userKey string) (*ActivationCode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.activation[userKey]
	if !ok || !s.now().Before(c.ExpiresAt) {
		return nil, ErrNotFound
	}
	return c.clone(), nil
}

func (s *MemoryStore) CountActivationFailure(_ context.Context, userKey, id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.activation[userKey]
	if !ok || c.ID != id || !s.now().Before(c.ExpiresAt) {
		return 0, ErrNotFound
	}
	c.Failures++
	return c.Failures, nil
}

func (s *MemoryStore) TakeActivationCode(_ context.Context, userKey, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.activation[userKey]
	if !ok || c.ID != id || !s.now().Before(c.ExpiresAt) {
		return false, nil
	}
	delete(s.activation, userKey)
	return true, nil
}
