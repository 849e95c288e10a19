package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// The FailureCounter contract: counting, locking at the limit or at once,
// resetting only an unlocked count, and every failure counted exactly once
// when many arrive together (which is what keeps parallel guesses through
// several instances from earning an attacker extra tries).

func testFailureCounting(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	at := time.Now().Truncate(time.Millisecond).UTC()
	type step struct {
		op         string // "fail", "fraud" or "reset"
		wantCount  int
		wantState  pushauth.UserState
		wantLocked bool // AddFailure's lockedNow
	}
	bound := &pushauth.User{CredentialID: uid("cred"), State: pushauth.UserActive,
		Until: at.Add(time.Hour), UpdatedAt: at.Add(-time.Hour)}
	for _, tc := range []struct {
		name  string
		start *pushauth.User // nil: no record
		steps []step
	}{
		{"unknown user gets a record", nil, []step{
			{"fail", 1, pushauth.UserActive, false},
			{"fail", 2, pushauth.UserActive, false},
		}},
		{"locks at the limit, once", bound, []step{
			{"fail", 1, pushauth.UserActive, false},
			{"fail", 2, pushauth.UserActive, false},
			{"fail", 3, pushauth.UserLocked, true},
			{"fail", 4, pushauth.UserLocked, false},
		}},
		{"a fraud report locks at once", bound, []step{
			{"fraud", 1, pushauth.UserLocked, true},
			{"fraud", 2, pushauth.UserLocked, false},
		}},
		{"an approval resets an unlocked count", bound, []step{
			{"fail", 1, pushauth.UserActive, false},
			{"fail", 2, pushauth.UserActive, false},
			{"reset", 0, pushauth.UserActive, false},
			{"fail", 1, pushauth.UserActive, false},
		}},
		{"a reset does not unlock", bound, []step{
			{"fraud", 1, pushauth.UserLocked, true},
			{"reset", 1, pushauth.UserLocked, false},
			{"fail", 2, pushauth.UserLocked, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := uid("fail-user")
			if tc.start != nil {
				u := *tc.start
				u.Key = key
				if err := s.PutUser(ctx, &u); err != nil {
					t.Fatalf("PutUser: %v", err)
				}
			}
			for i, st := range tc.steps {
				var lockedNow bool
				switch st.op {
				case "reset":
					if err := s.ResetFailures(ctx, key, at); err != nil {
						t.Fatalf("step %d: ResetFailures: %v", i, err)
					}
				default:
					var err error
					var u *pushauth.User
					u, lockedNow, err = s.AddFailure(ctx, key, 3, st.op == "fraud", at)
					if err != nil {
						t.Fatalf("step %d: AddFailure: %v", i, err)
					}
					if u.Key != key || u.Failures != st.wantCount || u.State != st.wantState {
						t.Fatalf("step %d (%s): AddFailure returned %+v, want %d failures, %s", i, st.op, u, st.wantCount, st.wantState)
					}
				}
				if lockedNow != st.wantLocked {
					t.Fatalf("step %d (%s): lockedNow = %v, want %v", i, st.op, lockedNow, st.wantLocked)
				}
				got, err := s.GetUser(ctx, key)
				if err != nil {
					t.Fatalf("step %d: GetUser: %v", i, err)
				}
				if got.Failures != st.wantCount || got.State != st.wantState {
					t.Fatalf("step %d (%s): stored %d failures, %s; want %d, %s", i, st.op, got.Failures, got.State, st.wantCount, st.wantState)
				}
				if tc.start != nil && (got.CredentialID != tc.start.CredentialID || !got.Until.Equal(tc.start.Until)) {
					t.Fatalf("step %d: counting changed the binding: %+v, started as %+v", i, got, tc.start)
				}
				if st.op != "reset" && !got.UpdatedAt.Equal(at) {
					t.Fatalf("step %d: updated_at %s, want %s", i, got.UpdatedAt, at)
				}
			}
		})
	}
	t.Run("reset of an unknown user creates nothing", func(t *testing.T) {
		key := uid("nobody")
		if err := s.ResetFailures(ctx, key, at); err != nil {
			t.Fatalf("ResetFailures: %v", err)
		}
		if _, err := s.GetUser(ctx, key); !errors.Is(err, pushauth.ErrNotFound) {
			t.Fatalf("GetUser after resetting an unknown user: %v, want ErrNotFound", err)
		}
	})
}

func testFailureCountingIsAtomic(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	key := uid("guessed")
	if err := s.PutUser(ctx, &pushauth.User{Key: key, CredentialID: uid("cred"), State: pushauth.UserActive}); err != nil {
		t.Fatalf("PutUser: %v", err)
	}
	const parallel, limit = 40, 25
	locks := 0
	for _, lockedNow := range atOnce(t, parallel, "AddFailure", func() (bool, error) {
		_, lockedNow, err := s.AddFailure(ctx, key, limit, false, time.Now())
		return lockedNow, err
	}) {
		if lockedNow {
			locks++
		}
	}
	u, err := s.GetUser(ctx, key)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if u.Failures != parallel || u.State != pushauth.UserLocked || locks != 1 {
		t.Fatalf("after %d parallel failures (limit %d): %d counted, state %s, lock taken %d times; want %d, locked, once",
			parallel, limit, u.Failures, u.State, locks, parallel)
	}
}

// testCompareAndPutUser: a change decided on a record read before a
// failure was counted (or a lock taken) is refused, not written over it;
// one decided on the record as it is (also one a script wrote) is
// written, with the credential index following it.
func testCompareAndPutUser(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	key, credA, credB := uid("cas-user"), uid("cred"), uid("cred")
	first := &pushauth.User{Key: key, CredentialID: credA, State: pushauth.UserActive}
	if err := s.CompareAndPutUser(ctx, nil, first); err != nil {
		t.Fatalf("CompareAndPutUser of a new user: %v", err)
	}
	if err := s.CompareAndPutUser(ctx, nil, first); !errors.Is(err, pushauth.ErrUserChanged) {
		t.Fatalf("CompareAndPutUser expecting no record over an existing one: %v, want ErrUserChanged", err)
	}
	read, err := s.GetUser(ctx, key)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	for range 3 {
		if _, _, err := s.AddFailure(ctx, key, 3, false, time.Now()); err != nil {
			t.Fatalf("AddFailure: %v", err)
		}
	}
	suspended := *read
	suspended.State, suspended.Until = pushauth.UserSuspended, time.Now().Add(time.Hour)
	if err := s.CompareAndPutUser(ctx, read, &suspended); !errors.Is(err, pushauth.ErrUserChanged) {
		t.Fatalf("a change read before the lock: %v, want ErrUserChanged", err)
	}
	locked, err := s.GetUser(ctx, key)
	if err != nil || locked.State != pushauth.UserLocked || locked.Failures != 3 {
		t.Fatalf("after the refused change: %+v, %v; want locked with 3 failures", locked, err)
	}
	rebound := *locked
	rebound.CredentialID, rebound.State, rebound.Failures = credB, pushauth.UserActive, 0
	if err := s.CompareAndPutUser(ctx, locked, &rebound); err != nil {
		t.Fatalf("a change decided on the record as it is: %v", err)
	}
	if got, err := s.GetUser(ctx, key); err != nil || got.CredentialID != credB || got.State != pushauth.UserActive {
		t.Fatalf("after the change: %+v, %v", got, err)
	}
	if keys, err := s.UsersOfCredential(ctx, credB); err != nil || len(keys) != 1 || keys[0] != key {
		t.Fatalf("UsersOfCredential(new) = %v, %v; want [%s]", keys, err, key)
	}
	if keys, err := s.UsersOfCredential(ctx, credA); err != nil || len(keys) != 0 {
		t.Fatalf("UsersOfCredential(old) = %v, %v; want none", keys, err)
	}
}
