package pushauth

import (
	"context"
	"errors"
	"sync"
	"time"
)

// orphans are challenges whose held request was answered with an error
// (the store failed while it waited) but which the store may still list as
// pending: closing them failed for the same reason. Until they are closed
// the phone shows a prompt for a request that no longer exists; approving
// it would forward nothing, but the user would be told it worked. A single
// goroutine, running only while the set is not empty, retries closing them
// as cancelled once the store answers again. The set holds at most MaxHeld
// entries, and an entry is dropped when its challenge expires.
type orphans struct {
	e       *Engine
	every   time.Duration
	mu      sync.Mutex
	m       map[string]time.Time // challenge ID → expiry
	running bool
	done    chan struct{}
	once    sync.Once
}

func newOrphans(e *Engine, every time.Duration) *orphans {
	return &orphans{e: e, every: every, m: make(map[string]time.Time), done: make(chan struct{})}
}

// add remembers a challenge to close and starts the retry loop if needed.
func (o *orphans) add(c *Challenge) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.m) >= o.e.cfg.MaxHeld {
		o.e.log.Warn("challenge left pending after a store failure: too many to retry", "challenge", c.ID)
		return
	}
	o.m[c.ID] = c.ExpiresAt
	if !o.running {
		o.running = true
		go o.loop()
	}
}

// has reports whether id is an orphan of this instance.
func (o *orphans) has(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.m[id]
	return ok
}

// take forgets id and reports whether it was an orphan: a challenge
// superseded by a newer one needs no closing any more.
func (o *orphans) take(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.m[id]
	delete(o.m, id)
	return ok
}

func (o *orphans) stop() { o.once.Do(func() { close(o.done) }) }

func (o *orphans) loop() {
	t := time.NewTicker(o.every)
	defer t.Stop()
	for {
		select {
		case <-o.done:
			return
		case <-t.C:
		}
		o.sweep()
		o.mu.Lock()
		if len(o.m) == 0 {
			o.running = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
}

// sweep tries to close every orphan, stopping at the first store failure.
func (o *orphans) sweep() {
	now := o.e.now()
	o.mu.Lock()
	ids := make([]string, 0, len(o.m))
	for id, exp := range o.m {
		if !now.Before(exp) {
			delete(o.m, id) // expired: no phone lists it, no decision is accepted
			continue
		}
		ids = append(ids, id)
	}
	o.mu.Unlock()
	ctx := context.Background()
	for _, id := range ids {
		cur, err := o.e.store.Resolve(ctx, id, StatusCancelled, false, now)
		switch {
		case err == nil:
			o.e.log.Info("challenge cancelled after a store failure", "challenge", id, "user", cur.UserKey, "rule", cur.Rule)
			o.e.challengeClosed(ctx, cur, "gateway")
		case errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound):
		default:
			return // the store still fails: keep the rest for the next tick
		}
		o.mu.Lock()
		delete(o.m, id)
		o.mu.Unlock()
	}
}
