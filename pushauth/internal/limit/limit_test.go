package limit

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

var (
	errUser = errors.New("too many for this user")
	errIP   = errors.New("too many from this address")
)

func TestAddressKeyCountsIPv6By64(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"198.51.100.7", "198.51.100.7"},
		{"::ffff:198.51.100.7", "198.51.100.7"},
		{"2001:db8:5:6::1", "2001:db8:5:6::/64"},
		{"2001:db8:5:6:ffff:ffff:ffff:ffff", "2001:db8:5:6::/64"},
		{"2001:db8:5:7::1", "2001:db8:5:7::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not an address", "not an address"},
	}
	for _, tc := range tests {
		if got := AddressKey(tc.ip); got != tc.want {
			t.Errorf("AddressKey(%q) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

// TestRateLimiterSharesAnIPv6SiteAndEvictsIdleBuckets: an IPv6 site's
// /64s share its /56's and /48's allowance, which is less than the global
// one, so other clients still get theirs; when the buckets are full, the
// least recently used goes, and a client that keeps trying keeps its
// exhausted bucket however many new addresses come meanwhile.
func TestRateLimiterSharesAnIPv6SiteAndEvictsIdleBuckets(t *testing.T) {
	l := NewRate(100, time.Hour, 2, 5)
	allowed := 0
	for p := range 8 {
		for i := range 3 {
			if l.Allow(fmt.Sprintf("2001:db8:77:%x::%x", p, i+1)) {
				allowed++
			}
		}
	}
	if allowed != 4 {
		t.Fatalf("one /56 got %d of 24 from its 8 /64s, want its own burst of 4", allowed)
	}
	for _, ip := range []string{"198.51.100.7", "2001:db8:78::1"} {
		if !l.Allow(ip) {
			t.Fatalf("%s refused after one IPv6 site spent its share", ip)
		}
	}

	l = NewRate(50, time.Hour, 1, 1000)
	if !l.Allow("203.0.113.1") || l.Allow("203.0.113.1") {
		t.Fatal("burst of one")
	}
	for i := range 500 {
		l.Allow(fmt.Sprintf("198.51.%d.%d", i/200, i%200+1))
		if l.Allow("203.0.113.1") {
			t.Fatalf("after %d other addresses the exhausted address was allowed again: its bucket was dropped", i+1)
		}
	}
	l.mu.Lock()
	n := len(l.m)
	l.mu.Unlock()
	if n > 50 {
		t.Fatalf("%d buckets kept, want at most 50", n)
	}
}

func TestHeldLimitsPerUserAndPerIP(t *testing.T) {
	l := NewCounter(2, 3, "user", errUser, errIP)
	r1, err := l.Acquire("alice", "198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("alice", "198.51.100.2"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("alice", "198.51.100.3"); !errors.Is(err, errUser) {
		t.Fatalf("third held request of one user: %v, want ErrTooManyHeldForUser", err)
	}
	if _, err := l.Acquire("bob", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("carol", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("dave", "198.51.100.1"); !errors.Is(err, errIP) {
		t.Fatalf("fourth held request from one address: %v, want ErrTooManyHeldFromIP", err)
	}
	r1()
	r1() // releasing twice frees one slot only
	if _, err := l.Acquire("alice", "198.51.100.9"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := l.Acquire("alice", "198.51.100.9"); !errors.Is(err, errUser) {
		t.Fatalf("double release freed two slots: %v", err)
	}
	if _, err := l.Acquire("erin", "198.51.100.1"); err != nil {
		t.Fatalf("address slot not freed by the release: %v", err)
	}
}

func TestHeldLimitsForgetIdleKeys(t *testing.T) {
	l := NewCounter(1, 1, "user", errUser, errIP)
	for i := range 1000 {
		rel, err := l.Acquire(string(rune('a'+i%26))+string(rune(i)), "203.0.113."+string(rune('0'+i%10)))
		if err != nil {
			t.Fatal(err)
		}
		rel()
	}
	if len(l.keys) != 0 || len(l.ips) != 0 {
		t.Fatalf("maps keep %d users and %d addresses after every release", len(l.keys), len(l.ips))
	}
}
