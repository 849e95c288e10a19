package pushauth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Draining: an instance going away (stop, reload-away) creates no more
// challenges, lets the requests it holds finish within a deadline, then
// releases the rest unforwarded. On a shared store the phone's approval of
// an interstitial challenge still arrives through the other instances.

// ErrDraining refuses a request on an instance that is going away: it
// created no challenge, or its challenge was cancelled at the drain
// deadline. Nothing was forwarded.
var ErrDraining = errors.New("this instance is shutting down")

// drainState is the engine's drain; its zero value is not draining.
type drainState struct {
	on   atomic.Bool // read on every matched request
	mu   sync.Mutex
	over chan struct{} // closed at the deadline; made on first use
}

func (d *drainState) overCh() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.over == nil {
		d.over = make(chan struct{})
	}
	return d.over
}

// Drain stops the engine creating challenges; the requests it holds may
// finish until timeout from now, then each is cancelled (a decision that
// won the race stands) and answered ErrDraining. Calling it again changes
// nothing.
func (e *Engine) Drain(timeout time.Duration) {
	over := e.drain.overCh()
	if !e.drain.on.CompareAndSwap(false, true) {
		return
	}
	e.log.Warn("draining: no new challenges; held requests may finish", "drain_timeout", timeout.String(), "held", e.HeldCount())
	time.AfterFunc(timeout, func() { close(over) })
}

// Draining reports whether Drain was called.
func (e *Engine) Draining() bool { return e.drain.on.Load() }

// HeldCount is how many requests this engine holds now.
func (e *Engine) HeldCount() int {
	e.waiters.mu.Lock()
	defer e.waiters.mu.Unlock()
	return e.waiters.n
}

// WaitHeld waits until no request is held or ctx ends.
func (e *Engine) WaitHeld(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for e.HeldCount() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drainDeadline ends a held request at the drain deadline: cancelled,
// unless it was approved in the meantime.
func (e *Engine) drainDeadline(ctx context.Context, id string) (*Challenge, error) {
	cur, err := e.Finish(context.WithoutCancel(ctx), id, StatusCancelled)
	if err != nil {
		return nil, err
	}
	if cur.Status == StatusApproved {
		return cur, nil
	}
	return cur, ErrDraining
}

// Health is what the engine tells a load balancer: no secret, no user.
type Health struct {
	Store  string `json:"store"`
	Engine string `json:"engine"`
	Held   int    `json:"held"`
}

// healthTimeout bounds the store's answer to a health check.
const healthTimeout = 2 * time.Second

// Health reads a record that does not exist from the store, within
// healthTimeout; ok when the store answered and the engine is not
// draining.
func (e *Engine) Health(ctx context.Context) (Health, bool) {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	h := Health{Store: "ok", Engine: "ok", Held: e.HeldCount()}
	if _, err := e.store.GetUser(ctx, "\x00onepush-health"); err != nil && !errors.Is(err, ErrNotFound) {
		h.Store = "unavailable"
		e.log.Warn("health: the store did not answer", "error", err)
	}
	if e.Draining() {
		h.Engine = "draining"
	}
	return h, h.Store == "ok" && h.Engine == "ok"
}
