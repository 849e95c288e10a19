package pushauth

import (
	"context"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// failoverSource is implemented by a store that can lose writes it has
// acknowledged when a replica takes over from its primary (Redis with
// Sentinel): after such a failover, a decision, a replay or a code used
// before it may look unused. The store itself refuses to act on the
// challenges created before a failover, and reads them as cancelled; the
// engine closes the ones it holds at once (so their browsers get a page
// now) and refuses the security codes that could have been used before
// it.
type failoverSource interface {
	// WatchFailover calls fn, from a goroutine of the store, each time the
	// store sees its primary change, until stop is called.
	WatchFailover(fn func()) (stop func())
	// LastFailover is when a failover was first seen (by any instance
	// sharing the store, where the store can tell); zero if never.
	LastFailover() time.Time
}

// codeQuarantine is how long after a failover the security codes that
// were valid at it are refused: a code is accepted within ±1 step of 30 s
// and remembered as used for 2 minutes.
const codeQuarantine = 2 * time.Minute

// usableAfterFailover reports whether code can be accepted given the last
// failover of the store: a code that was valid when the primary changed
// may have been used before, on a write the new primary never got. The
// user waits for the next code (at most about a minute) or approves on
// the phone.
func (e *Engine) usableAfterFailover(cred *Credential, code string, now time.Time) bool {
	fs, ok := e.store.(failoverSource)
	if !ok {
		return true
	}
	at := fs.LastFailover()
	if at.IsZero() || now.Sub(at) >= codeQuarantine {
		return true
	}
	validThen, err := totp.ValidateCustom(code, cred.OTPSecret, at, totp.ValidateOpts{
		Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	return err == nil && !validThen
}

// failedOver closes, as cancelled, the challenges this engine is waiting
// on that were created before the store's primary changed (the store reads
// them as cancelled; a decision on one may have been lost), so their
// browsers get their page now and can start again. A challenge created
// since (the one whose creation revealed the failover, say) is left alone.
func (e *Engine) failedOver() {
	ids := e.waiters.ids()
	e.log.Warn("the store's primary changed: challenges created before it are cancelled, security codes valid at it are refused for 2 minutes",
		"waited_on_here", len(ids))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, id := range ids {
			c, err := e.store.GetChallenge(ctx, id)
			if err != nil || c.Status != StatusCancelled {
				continue // created since, or unreadable: its waiter's own re-read decides
			}
			if _, err := e.Finish(ctx, id, StatusCancelled); err != nil {
				// The backstop re-read answers the request, and the store
				// refuses the challenge whatever it says.
				e.log.Warn("cancelling a challenge after a failover", "challenge", id, "error", err)
			}
		}
	}()
}
