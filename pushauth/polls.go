package pushauth

import (
	"errors"

	"github.com/onepush/onepush/pushauth/internal/limit"
)

// The waiting page of an interstitial challenge long-polls its status
// (Engine.Await). A poll holds a connection and a goroutine like a held
// request, so polls are bounded too, but apart from held requests: polls
// on one challenge or from one address must not take the slots that other
// customers' logins are held in.
const (
	// defaultMaxPolls bounds the polls waiting at once in one engine.
	defaultMaxPolls = 10000
	// defaultMaxPollsPerIP bounds the polls waiting at once from one
	// client IP (a bank's customers behind one NAT each have one).
	defaultMaxPollsPerIP = 256
	// maxPollsPerChallenge bounds the polls waiting at once on one
	// challenge: its page polls once at a time; two allow a reload.
	maxPollsPerChallenge = 2
)

// ErrTooManyPolls refuses a poll over one of the bounds; the gate answers
// 429 and the page polls again a little later.
var ErrTooManyPolls = errors.New("too many status requests are waiting")

func newPollLimits(perIP int) *limit.Counter {
	return limit.NewCounter(maxPollsPerChallenge, perIP, "challenge", ErrTooManyPolls, ErrTooManyPolls)
}
