package pushauth

import (
	"context"
	"time"
)

// FailureCounter keeps a user's count of consecutive failures (denials,
// fraud reports, wrong security codes) and the lock it leads to. Each
// change is one atomic step in the store, so failures sent in parallel
// through several instances are all counted and the lock is taken exactly
// once: an attacker gets no more guesses by spreading them out.
type FailureCounter interface {
	// AddFailure adds one failure to the user's count, creating the user's
	// record (active, no phone) when there is none, and locks the user when
	// the count reaches limit or at once when lockNow is set. It returns the
	// record after the change and whether this call took the lock. A user
	// already locked stays locked and keeps counting.
	AddFailure(ctx context.Context, key string, limit int, lockNow bool, at time.Time) (u *User, lockedNow bool, err error)
	// ResetFailures clears the count of a user who is not locked (an
	// approval); a locked user's count stays for the operator to see. An
	// unknown user or a count of zero is left as it is.
	ResetFailures(ctx context.Context, key string, at time.Time) error
}
