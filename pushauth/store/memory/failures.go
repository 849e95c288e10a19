package memory

import (
	"context"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// AddFailure counts one failure under the store's lock; see FailureCounter.
func (s *Store) AddFailure(_ context.Context, key string, limit int, lockNow bool, at time.Time) (*pushauth.User, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[key]
	if !ok {
		u = &pushauth.User{Key: key, State: pushauth.UserActive}
		s.users[key] = u
	}
	u.Failures++
	lockedNow := u.State != pushauth.UserLocked && (u.Failures >= limit || lockNow)
	if lockedNow {
		u.State = pushauth.UserLocked
	}
	u.UpdatedAt = at
	cp := *u
	return &cp, lockedNow, nil
}

// ResetFailures clears the count of a user who is not locked; see
// FailureCounter.
func (s *Store) ResetFailures(_ context.Context, key string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.users[key]; ok && u.Failures > 0 && u.State != pushauth.UserLocked {
		u.Failures, u.UpdatedAt = 0, at
	}
	return nil
}

// TakePush counts one push on the user's streak under the store's lock;
// see pushauth.PushCounter.
func (s *Store) TakePush(_ context.Context, key, addr string, l pushauth.PushStreakLimits, at time.Time) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[key]
	if !ok {
		return 0, pushauth.ErrNotFound
	}
	return l.Take(u, addr, at), nil
}

// EndPushStreak clears the streak after an approval; see
// pushauth.PushCounter.
func (s *Store) EndPushStreak(_ context.Context, key, home string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.users[key]; ok && pushauth.EndStreak(u, home) {
		u.UpdatedAt = at
	}
	return nil
}
