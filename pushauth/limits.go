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

// heldLimits counts requests being waited on per key and per client IP: held requests
// per user (so that neither one user's password nor one address can occupy the engine's
// MaxHeld slots), and, as a second instance, the waiting page's long polls per challenge.
// Its maps only hold keys with a non-zero count, so they are bounded by the number of
// requests counted.
type heldLimits struct {
	mu      sync.Mutex
	perKey  int
	perIP   int
	keys    map[string]int
	ips     map[string]int
	keyName string // what the key is, for errors
	errKey  error  // what acquire returns over perKey
	errIP   error  // and over perIP
}

func newHeldLimits(perUser, perIP int) *heldLimits {
	return &heldLimits{perKey: perUser, perIP: perIP, keys: map[string]int{}, ips: map[string]int{},
		keyName: "user", errKey: ErrTooManyHeldForUser, errIP: ErrTooManyHeldFromIP}
}

func (l *heldLimits) acquire(key, ip string) (func(), error) {
	if ip != "" {
		// One IPv6 host is given a whole /64 and may use a new address
		// for every request: count it once, as the registration limits do.
		ip = addressKey(ip)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys[key] >= l.perKey {
		return nil, fmt.Errorf("%w (%s %q, limit %d)", l.errKey, l.keyName, key, l.perKey)
	}
	if ip != "" && l.ips[ip] >= l.perIP {
		return nil, fmt.Errorf("%w (%s, limit %d)", l.errIP, ip, l.perIP)
	}
	l.keys[key]++
	if ip != "" {
		l.ips[ip]++
	}
	var once sync.Once
	return func() { once.Do(func() { l.release(key, ip) }) }, nil
}

func (l *heldLimits) release(key, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys[key]--; l.keys[key] <= 0 {
		delete(l.keys, key)
	}
	if ip != "" {
		if l.ips[ip]--; l.ips[ip] <= 0 {
			delete(l.ips, ip)
		}
	}
}
