// Package limit holds the engine's bounds on what one client or user may
// have at once (Counter) or do per unit of time (Rate).
package limit

import (
	"container/list"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Counter counts requests being waited on per key and per client IP: held requests
// per user (so that neither one user's password nor one address can occupy the engine's
// MaxHeld slots), and, as a second instance, the waiting page's long polls per challenge.
// Its maps only hold keys with a non-zero count, so they are bounded by the number of
// requests counted.
type Counter struct {
	mu      sync.Mutex
	perKey  int
	perIP   int
	keys    map[string]int
	ips     map[string]int
	keyName string // what the key is, for errors
	errKey  error  // what acquire returns over perKey
	errIP   error  // and over perIP
}

// NewCounter allows perKey at once per key (named keyName in errors) and
// perIP per client address; over them Acquire returns errKey or errIP.
func NewCounter(perKey, perIP int, keyName string, errKey, errIP error) *Counter {
	return &Counter{perKey: perKey, perIP: perIP, keys: map[string]int{}, ips: map[string]int{},
		keyName: keyName, errKey: errKey, errIP: errIP}
}

// SetBounds changes the bounds; what is counted over a lowered bound stays
// until released.
func (l *Counter) SetBounds(perKey, perIP int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.perKey, l.perIP = perKey, perIP
}

// Acquire counts one more for key and ip, or refuses; release undoes it
// (once, however often it is called).
func (l *Counter) Acquire(key, ip string) (func(), error) {
	if ip != "" {
		// One IPv6 host is given a whole /64 and may use a new address
		// for every request: count it once, as the registration limits do.
		ip = AddressKey(ip)
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

func (l *Counter) release(key, ip string) {
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

// Rate bounds what one client may do (credential registrations,
// enrolment attempts) per instance, and everything together:
//
//   - each address — an IPv4 address, or the /64 of an IPv6 one (one host
//     is given a whole /64) — burst at once and one more every `every`;
//   - each IPv6 site, whose /64s share one allowance: its /56 (what a
//     household is given) twice that, its /48 (an office, a tunnel
//     broker's customer) three times that, refilled as much faster;
//   - all clients together perSecond, burst twice that, which is more than
//     the largest site's share: one site cannot spend it for everyone.
//
// A request is allowed only when every bucket it counts against has a
// token, and then takes one from each. At most max buckets are kept; the
// least recently used goes first, so a flood of new addresses evicts idle
// ones, never the buckets of the addresses and sites it comes from (a
// reset of all of them would undo the limit).
type Rate struct {
	mu     sync.Mutex
	max    int
	every  time.Duration
	burst  int
	m      map[string]*list.Element // of *limiterEntry
	lru    *list.List               // most recently used first
	global *rate.Limiter
}

type limiterEntry struct {
	key string
	lim *rate.Limiter
}

// NewRate allows each address burst at once and one more every
// every, an IPv6 site proportionally more (see Rate), and all clients
// together perSecond (burst twice that).
func NewRate(max int, every time.Duration, burst int, perSecond rate.Limit) *Rate {
	return &Rate{max: max, every: every, burst: burst, m: make(map[string]*list.Element), lru: list.New(),
		global: rate.NewLimiter(perSecond, 2*int(perSecond))}
}

// Allow takes a token for clientIP (as Caddy's trusted proxies see it)
// from each of its buckets and the global one, or from none.
func (l *Rate) Allow(clientIP string) bool {
	keys := limiterKeys(clientIP)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var lims [3]*rate.Limiter
	for i, k := range keys {
		lims[i] = l.bucket(k, i+1)
	}
	if l.global.TokensAt(now) < 1 {
		return false
	}
	for _, lim := range lims[:len(keys)] {
		if lim.TokensAt(now) < 1 {
			return false
		}
	}
	for _, lim := range lims[:len(keys)] {
		lim.AllowN(now, 1)
	}
	return l.global.AllowN(now, 1)
}

// bucket returns key's limiter, made for tier n (1 an address, 2 a /56,
// 3 a /48) when new, and marks it used.
func (l *Rate) bucket(key string, n int) *rate.Limiter {
	if el, ok := l.m[key]; ok {
		l.lru.MoveToFront(el)
		return el.Value.(*limiterEntry).lim
	}
	lim := rate.NewLimiter(rate.Every(l.every/time.Duration(n)), l.burst*n)
	l.m[key] = l.lru.PushFront(&limiterEntry{key: key, lim: lim})
	for l.lru.Len() > l.max {
		old := l.lru.Back()
		l.lru.Remove(old)
		delete(l.m, old.Value.(*limiterEntry).key)
	}
	return lim
}

// limiterKeys are the buckets clientIP counts against: its address key
// (see AddressKey) and, for IPv6, its /56 and /48.
func limiterKeys(ip string) []string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Unmap().Is4() {
		return []string{AddressKey(ip)}
	}
	a = a.WithZone("")
	keys := make([]string, 0, 3)
	for _, bits := range []int{64, 56, 48} {
		p, err := a.Prefix(bits)
		if err != nil {
			return []string{AddressKey(ip)}
		}
		keys = append(keys, p.String())
	}
	return keys
}

// AddressKey is what rate limits count a client address as: an IPv4
// address, or the /64 of an IPv6 one (one host is given a whole /64).
func AddressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}
