package pushauth

import "time"

// What the external tests (package pushauth_test, which can use the memory
// store: it imports this package) reach inside the engine.

var RecordFailure = (*Engine).recordFailure

const MaxTokenLifetime = maxTokenLifetime

// SetMaxOutbox bounds the outbox at n until the returned func restores it.
func SetMaxOutbox(n int) (restore func()) {
	old := maxOutbox
	maxOutbox = n
	return func() { maxOutbox = old }
}

// TokenLeeway is e's allowed clock skew on device tokens.
func TokenLeeway(e *Engine) time.Duration { return e.cfg.TokenLeeway }

// Waiting counts the held requests and the long polls waiting now.
func Waiting(e *Engine) (held, polls int) {
	e.waiters.mu.Lock()
	defer e.waiters.mu.Unlock()
	return e.waiters.n, e.waiters.polls
}
