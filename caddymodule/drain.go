package caddymodule

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Draining when Caddy stops. On SIGTERM or `caddy stop`, Caddy marks
// itself exiting and stops its apps in no set order: the HTTP app may
// stop first, serving on through its shutdown_delay and then waiting
// (grace_period) for the requests it has. watchExit notices the exit at
// once, whichever app stops first, and drains the engine: no new
// challenge (the gate answers 503 with Retry-After, /health 503), the
// held requests may be approved until drain_timeout, then the rest are
// answered with a page saying nothing was sent. A reload that removes the
// onepush app drains the same way before the engine closes (Destruct).

// defaultDrainTimeout is drain_timeout's default.
const defaultDrainTimeout = 30 * time.Second

func (a *App) drainTimeout() time.Duration {
	if a.DrainTimeout > 0 {
		return time.Duration(a.DrainTimeout)
	}
	return defaultDrainTimeout
}

// exitPoll is how often watchExit looks: an atomic load.
const exitPoll = 20 * time.Millisecond

// watchExit drains the engine as soon as Caddy is exiting, until stop.
func (a *App) watchExit(stop <-chan struct{}) {
	t := time.NewTicker(exitPoll)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if caddy.Exiting() {
				a.engine.Drain(a.drainTimeout())
				return
			}
		}
	}
}

// drainHeld lets the requests still held when the engine is released
// finish within the drain timeout (reload-away; on exit the HTTP servers
// waited for them already).
func (p pooledEngine) drainHeld() {
	if p.Engine.HeldCount() == 0 {
		return
	}
	d := time.Duration(p.drain.Load())
	p.Engine.Drain(d)
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Second)
	defer cancel()
	p.Engine.WaitHeld(ctx)
}
