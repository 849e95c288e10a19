package pushauth

import (
	"sync"
	"time"

	"github.com/onepush/onepush/policy"
)

// policySet holds the policies loaded now: one engine serves every site
// of a Caddy, each with its own policy, and a reload replaces a site's.
type policySet struct {
	mu   sync.Mutex
	next int
	m    map[int]*policy.Policy
}

// AddPolicy records the policy of a site's gate being loaded; the returned
// func forgets it when the gate goes (a reload, the site's removal). Each
// gate decides with its own policy; the engine only derives what serves
// no single site: how long an activation code the admin API issues stays
// valid (the longest validity of its kind any loaded policy allows, since
// the bank's operator issues a code for a user, not for a site; a site
// whose policy allows less refuses it once it is older than that there,
// see package enrol), and the grace of users whose phone the device
// API uninstalls (see DeregistrationGrace).
func (e *Engine) AddPolicy(p *policy.Policy) (remove func()) {
	s := &e.policies
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[int]*policy.Policy{}
	}
	id := s.next
	s.next++
	s.m[id] = p
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.m, id)
	}
}

// DeregistrationGrace is the grace period the loaded policies ask for
// (deregistration_grace), the shortest when sites disagree — a grace is
// password-only access, so the strictest policy wins whoever posts — and
// fallback when none sets one.
func (e *Engine) DeregistrationGrace(fallback time.Duration) time.Duration {
	s := &e.policies
	s.mu.Lock()
	defer s.mu.Unlock()
	var d time.Duration
	for _, p := range s.m {
		if g := p.DeregistrationGrace; g > 0 && (d == 0 || g < d) {
			d = g
		}
	}
	if d > 0 {
		return d
	}
	return fallback
}

// Enrolments are the enrolment sections of the loaded policies (none when
// no gate is loaded).
func (e *Engine) Enrolments() []policy.Enrolment {
	s := &e.policies
	s.mu.Lock()
	defer s.mu.Unlock()
	loaded := make([]policy.Enrolment, 0, len(s.m))
	for _, p := range s.m {
		loaded = append(loaded, p.Enrolment)
	}
	return loaded
}
