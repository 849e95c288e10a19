package pushauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/onepush/onepush/pushauth/internal/limit"
)

// Defaults of the per-user push streak (SP 800-63B rev 4 §3.1.3.2: limit
// out-of-band attempts since the last successful authentication).
const (
	DefaultPushBackoffAfter = 5                // pushes since the last approval before the backoff starts
	DefaultPushDailyCap     = 20               // pushes since the last approval in 24 h
	DefaultPushBackoff      = 30 * time.Second // first wait; doubles with each further push
	MaxPushBackoff          = 30 * time.Minute // the backoff stops doubling here
	PushCapWindow           = 24 * time.Hour   // the cap's window, from the streak's first push
)

// PushStreakLimits bounds the pushes one user gets since her last
// approval, across every address and instance: Free pushes at once, then
// each further push only Backoff·2^k after the previous one, and at most
// Cap within 24 hours of the first. An approval ends the streak.
type PushStreakLimits struct {
	Free    int
	Cap     int
	Backoff time.Duration
}

func (l PushStreakLimits) withDefaults() PushStreakLimits {
	if l.Free <= 0 {
		l.Free = DefaultPushBackoffAfter
	}
	if l.Cap <= 0 {
		l.Cap = DefaultPushDailyCap
	}
	if l.Backoff <= 0 {
		l.Backoff = DefaultPushBackoff
	}
	return l
}

// Take counts one push asked from addr (limit.AddressKey) on u's streak
// at now — none from the address of her last approval — or returns how long to wait
// when the streak allows none. Stores call it inside their atomic update
// of the user's record (PushCounter); the Redis store's script does the
// same arithmetic. Times are whole seconds (Unix).
func (l PushStreakLimits) Take(u *User, addr string, now time.Time) (retryAfter time.Duration) {
	if u.PushHome != "" && u.PushHome == addr {
		return 0
	}
	t := now.Unix()
	window := int64(PushCapWindow / time.Second)
	if u.PushCount > 0 && t-u.PushSince >= window {
		u.PushCount, u.PushSince, u.PushLast = 0, 0, 0
	}
	if u.PushCount >= l.Cap {
		return time.Duration(u.PushSince+window-t) * time.Second
	}
	if u.PushCount >= l.Free {
		wait := l.backoff(u.PushCount)
		if next := u.PushLast + int64(wait/time.Second); t < next {
			return time.Duration(next-t) * time.Second
		}
	}
	if u.PushCount == 0 {
		u.PushSince = t
	}
	u.PushCount++
	u.PushLast = t
	return 0
}

// backoff is the wait before push number n+1 (n ≥ Free).
func (l PushStreakLimits) backoff(n int) time.Duration {
	w := l.Backoff
	for i := l.Free; i < n && w < MaxPushBackoff; i++ {
		w *= 2
	}
	return min(w, MaxPushBackoff)
}

// PushCounter keeps the push streak on the user's record, one atomic step
// per push across instances.
type PushCounter interface {
	// TakePush counts one push for the user asked from addr
	// (limit.AddressKey) when l allows it at at (l.Take), and otherwise
	// returns how long until one is allowed (> 0). An unknown user is
	// ErrNotFound.
	TakePush(ctx context.Context, key, addr string, l PushStreakLimits, at time.Time) (retryAfter time.Duration, err error)
	// EndPushStreak clears the user's streak after an approval asked from
	// home and makes home her PushHome; it writes nothing when there is
	// nothing to change. An unknown user is left as it is.
	EndPushStreak(ctx context.Context, key, home string, at time.Time) error
}

// EndStreak clears u's streak and sets its home; it reports whether
// anything changed.
func EndStreak(u *User, home string) bool {
	if u.PushCount == 0 && u.PushSince == 0 && u.PushLast == 0 && u.PushHome == home {
		return false
	}
	u.PushCount, u.PushSince, u.PushLast, u.PushHome = 0, 0, 0, home
	return true
}

// PushStreakError refuses a push beyond the user's streak since her last
// approval. It is an ErrPushRateLimited.
type PushStreakError struct{ RetryAfter time.Duration }

func (e *PushStreakError) Error() string {
	return fmt.Sprintf("too many approval requests for this user since the last approval; try again in %s", e.RetryAfter)
}

func (e *PushStreakError) Is(target error) bool { return target == ErrPushRateLimited }

// RetryAfterSeconds is the Retry-After of a refused push: the streak's
// wait, or 60 for the per-minute budget.
func RetryAfterSeconds(err error) int {
	var se *PushStreakError
	if errors.As(err, &se) {
		return max(1, int((se.RetryAfter+time.Second-1)/time.Second))
	}
	return 60
}

// allowStreak takes one push of the user's streak since her last approval;
// a store error refuses the push (the caller answers 503).
func (e *Engine) allowStreak(ctx context.Context, userKey, clientIP, rule string) error {
	l := *e.pushStreak.Load()
	wait, err := e.store.TakePush(ctx, userKey, limit.AddressKey(clientIP), l, e.now())
	if err != nil {
		e.StoreFailed("take_push", err)
		return fmt.Errorf("pushauth: push streak: %w", err)
	}
	if wait <= 0 {
		return nil
	}
	e.log.Warn("push streak limit reached", "user", userKey, "client_ip", clientIP, "retry_after", wait)
	e.cfg.Metrics.ChallengeOutcome(rule, "push_streak")
	e.RecordAggregated(ctx, AuditEvent{Type: AuditRefused, User: userKey, Rule: rule, ClientIP: clientIP,
		Outcome: "push_backoff", Detail: fmt.Sprintf("pushes since the last approval limited; retry after %s", wait)},
		"push_backoff/user/"+userKey, "push_backoff/ip/"+clientIP)
	return &PushStreakError{RetryAfter: wait}
}
