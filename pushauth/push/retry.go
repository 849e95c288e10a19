// Package push holds what the APNs and FCM senders share: the retry policy
// that keeps every attempt inside a challenge's validity, and collapse IDs.
package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds the retries of one push. Zero fields take the
// defaults: 4 attempts, first backoff 200ms, no backoff longer than 5s.
// Backoff doubles after each attempt and carries up to 50% jitter.
type RetryPolicy struct {
	// Attempts is the total number of attempts, the first included.
	Attempts int `json:"attempts,omitempty"`
	// Base is the backoff before the second attempt.
	Base time.Duration `json:"base,omitempty"`
	// Max caps one backoff.
	Max time.Duration `json:"max,omitempty"`
}

// Defaults of RetryPolicy.
const (
	DefaultAttempts = 4
	DefaultBase     = 200 * time.Millisecond
	DefaultMax      = 5 * time.Second
)

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = DefaultAttempts
	}
	if p.Base <= 0 {
		p.Base = DefaultBase
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	if p.Max < p.Base {
		p.Max = p.Base
	}
	return p
}

// backoff is the wait after attempt n (1-based) failed: Base·2^(n-1),
// capped at Max, of which the upper half is random.
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.Base
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	half := d / 2
	return half + rand.N(half+1)
}

// Do calls f with attempt = 1, 2, … until f succeeds, f reports its error
// as not retryable, the attempts are used up, or ctx ends. A backoff that
// would end at or past ctx's deadline is not waited: Do returns the last
// error at once, so a push never outlives the challenge it announces.
func (p RetryPolicy) Do(ctx context.Context, f func(attempt int) (retryable bool, err error)) error {
	p = p.withDefaults()
	var last error
	dl, hasDeadline := ctx.Deadline()
	for attempt := 1; ; attempt++ {
		err := ctx.Err()
		if err == nil && hasDeadline && !time.Now().Before(dl) {
			// The clock is past the deadline before ctx's own timer fired
			// (a busy scheduler): do not start another attempt.
			err = context.DeadlineExceeded
		}
		if err != nil {
			if last != nil {
				return last
			}
			return err
		}
		retryable, err := f(attempt)
		if err == nil {
			return nil
		}
		last = err
		if !retryable {
			return err
		}
		if attempt >= p.Attempts {
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		wait := p.backoff(attempt)
		if hasDeadline && !time.Now().Add(wait).Before(dl) {
			return fmt.Errorf("%w (no retry: the next attempt would start past the deadline)", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// CollapseID derives the per-user collapse identifier (APNs
// apns-collapse-id, FCM collapse_key) from a user key: 32 hex characters
// of a domain-separated SHA-256, so a newer challenge replaces an older one
// on the phone without the raw user key leaving the gateway.
func CollapseID(userKey string) string {
	sum := sha256.Sum256([]byte("onepush/collapse/v1\x00" + userKey))
	return hex.EncodeToString(sum[:16])
}
