package pushauth

import (
	"errors"
	"fmt"
	"sync"
)

// Defaults for the per-user and per-client-IP bounds on held requests.
const (
	DefaultMaxHeldPerUser = 4
	DefaultMaxHeldPerIP   = 256
)

// Errors returned by Engine.Hold; the gate answers both with 429. The engine-wide bound
// (Config.MaxHeld) is ErrTooManyHeld, answered with 503.
var (
	ErrTooManyHeldForUser = errors.New("too many requests of this user are waiting for approval")
	ErrTooManyHeldFromIP  = errors.New("too many requests from this address are waiting for approval")
)

// heldLimits counts the requests being held per user and per client IP, so that neither
// one user's password nor one address can occupy the engine's MaxHeld slots. Its maps
// only hold keys with a non-zero count, so they are bounded by the number of held
// requests.
type heldLimits struct {
	mu      sync.Mutex
	perUser int
	perIP   int
	users   map[string]int
	ips     map[string]int
}

func newHeldLimits(perUser, perIP int) *heldLimits {
	return &heldLimits{perUser: perUser, perIP: perIP, users: map[string]int{}, ips: map[string]int{}}
}

func (l *heldLimits) acquire(user, ip string) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users[user] >= l.perUser {
		return nil, fmt.Errorf("%w (user %q, limit %d)", ErrTooManyHeldForUser, user, l.perUser)
	}
	if ip != "" && l.ips[ip] >= l.perIP {
		return nil, fmt.Errorf("%w (%s, limit %d)", ErrTooManyHeldFromIP, ip, l.perIP)
	}
	l.users[user]++
	if ip != "" {
		l.ips[ip]++
	}
	var once sync.Once
	return func() { once.Do(func() { l.release(user, ip) }) }, nil
}

func (l *heldLimits) release(user, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users[user]--; l.users[user] <= 0 {
		delete(l.users, user)
	}
	if ip != "" {
		if l.ips[ip]--; l.ips[ip] <= 0 {
			delete(l.ips, ip)
		}
	}
}
