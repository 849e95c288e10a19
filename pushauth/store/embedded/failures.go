package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
)

// Failure counting (pushauth.FailureCounter): each change reads the
// user's record and writes it back inside one writer transaction, so
// failures arriving at once are all counted and the lock is taken exactly
// once, and it is on disk before the call returns: a lock survives a
// crash.
//
// An approval resets the count only when there is one to reset: on the
// release path of a held request, a user without failures costs no
// write.

func (s *Store) AddFailure(ctx context.Context, key string, limit int, lockNow bool, at time.Time) (*pushauth.User, bool, error) {
	st, err := s.state()
	if err != nil {
		return nil, false, err
	}
	var lockedNow bool
	u, err := writeComputed(ctx, st, s.users, key, func(tx *bolt.Tx) (*pushauth.User, error) {
		u, err := userIn(tx, key)
		if err != nil {
			return nil, err
		}
		if u == nil {
			u = &pushauth.User{Key: key, State: pushauth.UserActive}
		}
		u.Failures++
		lockedNow = u.State != pushauth.UserLocked && (u.Failures >= limit || lockNow)
		if lockedNow {
			u.State = pushauth.UserLocked
		}
		u.UpdatedAt = at
		rec, err := json.Marshal(u)
		if err != nil {
			return nil, err
		}
		return u, putUser(tx, key, u.CredentialID, rec)
	})
	if err != nil {
		return nil, false, err
	}
	cp := *u
	return &cp, lockedNow, nil
}

func (s *Store) ResetFailures(ctx context.Context, key string, at time.Time) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	u, err := s.GetUser(ctx, key)
	switch {
	case errors.Is(err, pushauth.ErrNotFound):
		return nil
	case err != nil:
		return err
	case u.Failures == 0 || u.State == pushauth.UserLocked:
		return nil // nothing to reset: no write
	}
	_, err = writeComputed(ctx, st, s.users, key, func(tx *bolt.Tx) (*pushauth.User, error) {
		u, err := userIn(tx, key)
		if err != nil || u == nil || u.Failures == 0 || u.State == pushauth.UserLocked {
			return u, err
		}
		u.Failures, u.UpdatedAt = 0, at
		rec, err := json.Marshal(u)
		if err != nil {
			return nil, err
		}
		return u, putUser(tx, key, u.CredentialID, rec)
	})
	return err
}

// TakePush counts one push on the user's streak inside one writer
// transaction, on disk before it returns (pushauth.PushCounter). A push
// refused or not counted writes nothing.
func (s *Store) TakePush(ctx context.Context, key, addr string, l pushauth.PushStreakLimits, at time.Time) (time.Duration, error) {
	u, err := s.GetUser(ctx, key)
	if err != nil {
		return 0, err
	}
	if u.PushHome != "" && u.PushHome == addr {
		return 0, nil // her own address: not counted, no write
	}
	st, err := s.state()
	if err != nil {
		return 0, err
	}
	var wait time.Duration
	_, err = writeComputed(ctx, st, s.users, key, func(tx *bolt.Tx) (*pushauth.User, error) {
		u, err := userIn(tx, key)
		if err != nil || u == nil {
			return u, err
		}
		if wait = l.Take(u, addr, at); wait > 0 {
			return u, nil
		}
		rec, err := json.Marshal(u)
		if err != nil {
			return nil, err
		}
		return u, putUser(tx, key, u.CredentialID, rec)
	})
	return wait, err
}

// EndPushStreak clears the streak after an approval in one writer
// transaction, and writes nothing when there is nothing to change.
func (s *Store) EndPushStreak(ctx context.Context, key, home string, at time.Time) error {
	u, err := s.GetUser(ctx, key)
	switch {
	case errors.Is(err, pushauth.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	if cp := *u; !pushauth.EndStreak(&cp, home) {
		return nil // nothing to change: no write
	}
	st, err := s.state()
	if err != nil {
		return err
	}
	_, err = writeComputed(ctx, st, s.users, key, func(tx *bolt.Tx) (*pushauth.User, error) {
		u, err := userIn(tx, key)
		if err != nil || u == nil || !pushauth.EndStreak(u, home) {
			return u, err
		}
		u.UpdatedAt = at
		rec, err := json.Marshal(u)
		if err != nil {
			return nil, err
		}
		return u, putUser(tx, key, u.CredentialID, rec)
	})
	return err
}
