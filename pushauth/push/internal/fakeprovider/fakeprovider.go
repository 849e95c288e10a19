// Package fakeprovider is what the APNs and FCM test fakes share: answers
// scripted per device token, the requests seen, a delay, and the largest
// number of requests in flight at once.
package fakeprovider

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Recorder keeps a fake provider's script and log. Req is the fake's
// record of one request, Rep its scripted answer. Safe for concurrent use.
type Recorder[Req, Rep any] struct {
	ok      Rep
	tokenOf func(Req) string

	mu       sync.Mutex
	scripts  map[string][]Rep
	sticky   map[string]Rep
	requests []Req
	delay    time.Duration

	inFlight    atomic.Int64
	maxInFlight atomic.Int64
}

// New returns a recorder whose unscripted answer is ok; tokenOf names the
// device token of a recorded request.
func New[Req, Rep any](ok Rep, delay time.Duration, tokenOf func(Req) string) *Recorder[Req, Rep] {
	return &Recorder[Req, Rep]{ok: ok, tokenOf: tokenOf, delay: delay, scripts: map[string][]Rep{}, sticky: map[string]Rep{}}
}

// ScriptReplies queues answers for token: each request to it takes the
// next one; once they are used up the token gets its sticky answer or ok.
func (r *Recorder[Req, Rep]) ScriptReplies(token string, replies ...Rep) {
	r.mu.Lock()
	r.scripts[token] = append(r.scripts[token], replies...)
	r.mu.Unlock()
}

// Stick makes rep the answer to every later request to token once its
// script is used up.
func (r *Recorder[Req, Rep]) Stick(token string, rep Rep) {
	r.mu.Lock()
	r.sticky[token] = rep
	r.mu.Unlock()
}

// SetDelay changes how long each later request is held.
func (r *Recorder[Req, Rep]) SetDelay(d time.Duration) {
	r.mu.Lock()
	r.delay = d
	r.mu.Unlock()
}

// Requests returns a copy of every request received so far, in order of
// arrival.
func (r *Recorder[Req, Rep]) Requests() []Req {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Req(nil), r.requests...)
}

// RequestsFor returns the requests addressed to token.
func (r *Recorder[Req, Rep]) RequestsFor(token string) []Req {
	var out []Req
	for _, q := range r.Requests() {
		if r.tokenOf(q) == token {
			out = append(out, q)
		}
	}
	return out
}

// Count is the number of requests received so far.
func (r *Recorder[Req, Rep]) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// MaxInFlight is the largest number of requests handled at the same moment.
func (r *Recorder[Req, Rep]) MaxInFlight() int { return int(r.maxInFlight.Load()) }

// Reset forgets recorded requests, scripts and the in-flight maximum.
func (r *Recorder[Req, Rep]) Reset() {
	r.mu.Lock()
	r.requests = nil
	r.scripts = map[string][]Rep{}
	r.sticky = map[string]Rep{}
	r.mu.Unlock()
	r.maxInFlight.Store(r.inFlight.Load())
}

// Enter counts a request in flight; call the returned func when it is
// answered.
func (r *Recorder[Req, Rep]) Enter() (leave func()) {
	n := r.inFlight.Add(1)
	for {
		m := r.maxInFlight.Load()
		if n <= m || r.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { r.inFlight.Add(-1) }
}

// Next pops token's script, or its sticky answer, or ok.
func (r *Recorder[Req, Rep]) Next(token string) Rep {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q := r.scripts[token]; len(q) > 0 {
		r.scripts[token] = q[1:]
		return q[0]
	}
	if rep, ok := r.sticky[token]; ok {
		return rep
	}
	return r.ok
}

// Record logs req and then holds for the configured delay; false means the
// client went away meanwhile and nothing should be written.
func (r *Recorder[Req, Rep]) Record(ctx context.Context, req Req) bool {
	r.mu.Lock()
	r.requests = append(r.requests, req)
	delay := r.delay
	r.mu.Unlock()
	if delay <= 0 {
		return true
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
