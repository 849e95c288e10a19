package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// AddPasskey stores a copy of p; see pushauth.PasskeyStore.
func (s *Store) AddPasskey(_ context.Context, p *pushauth.Passkey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.passkeys[p.UserKey] {
		if bytes.Equal(q.ID, p.ID) {
			return fmt.Errorf("memory store: passkey of %q: %w", p.UserKey, pushauth.ErrExists)
		}
	}
	cp := *p
	s.passkeys[p.UserKey] = append(s.passkeys[p.UserKey], &cp)
	return nil
}

// Passkeys lists copies of the user's passkeys.
func (s *Store) Passkeys(_ context.Context, userKey string) ([]*pushauth.Passkey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*pushauth.Passkey, 0, len(s.passkeys[userKey]))
	for _, p := range s.passkeys[userKey] {
		cp := *p
		out = append(out, &cp)
	}
	slices.SortStableFunc(out, func(a, b *pushauth.Passkey) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// UsePasskey checks and moves the counter under the store's lock.
func (s *Store) UsePasskey(_ context.Context, userKey string, id []byte, count uint32, at time.Time) (*pushauth.Passkey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.passkeys[userKey] {
		if !bytes.Equal(p.ID, id) {
			continue
		}
		if !pushauth.CounterAdvances(p.SignCount, count) {
			return nil, fmt.Errorf("memory store: passkey of %q: stored %d, asserted %d: %w", userKey, p.SignCount, count, pushauth.ErrSignCount)
		}
		p.SignCount, p.LastUsed = count, at
		cp := *p
		return &cp, nil
	}
	return nil, pushauth.ErrNotFound
}

// DeletePasskey removes one of the user's passkeys.
func (s *Store) DeletePasskey(_ context.Context, userKey string, id []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.passkeys[userKey]
	i := slices.IndexFunc(list, func(p *pushauth.Passkey) bool { return bytes.Equal(p.ID, id) })
	if i < 0 {
		return pushauth.ErrNotFound
	}
	list = slices.Delete(list, i, i+1)
	if len(list) == 0 {
		delete(s.passkeys, userKey)
	} else {
		s.passkeys[userKey] = list
	}
	return nil
}
