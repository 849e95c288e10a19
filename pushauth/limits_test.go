package pushauth

import (
	"errors"
	"testing"
)

func TestHeldLimitsPerUserAndPerIP(t *testing.T) {
	l := newHeldLimits(2, 3)
	r1, err := l.acquire("alice", "198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.acquire("alice", "198.51.100.2"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.acquire("alice", "198.51.100.3"); !errors.Is(err, ErrTooManyHeldForUser) {
		t.Fatalf("third held request of one user: %v, want ErrTooManyHeldForUser", err)
	}
	if _, err := l.acquire("bob", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.acquire("carol", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.acquire("dave", "198.51.100.1"); !errors.Is(err, ErrTooManyHeldFromIP) {
		t.Fatalf("fourth held request from one address: %v, want ErrTooManyHeldFromIP", err)
	}
	r1()
	r1() // releasing twice frees one slot only
	if _, err := l.acquire("alice", "198.51.100.9"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := l.acquire("alice", "198.51.100.9"); !errors.Is(err, ErrTooManyHeldForUser) {
		t.Fatalf("double release freed two slots: %v", err)
	}
	if _, err := l.acquire("erin", "198.51.100.1"); err != nil {
		t.Fatalf("address slot not freed by the release: %v", err)
	}
}

func TestHeldLimitsForgetIdleKeys(t *testing.T) {
	l := newHeldLimits(1, 1)
	for i := range 1000 {
		rel, err := l.acquire(string(rune('a'+i%26))+string(rune(i)), "203.0.113."+string(rune('0'+i%10)))
		if err != nil {
			t.Fatal(err)
		}
		rel()
	}
	if len(l.keys) != 0 || len(l.ips) != 0 {
		t.Fatalf("maps keep %d users and %d addresses after every release", len(l.keys), len(l.ips))
	}
}
