package pushauth

import (
	"errors"
)

// Defaults for the per-user and per-client-IP bounds on held requests.
const (
	defaultMaxHeldPerUser = 4
	defaultMaxHeldPerIP   = 256
)

// Errors returned by Engine.Hold; the gate answers both with 429. The engine-wide bound
// (Config.MaxHeld) is ErrTooManyHeld, answered with 503.
var (
	ErrTooManyHeldForUser = errors.New("too many requests of this user are waiting for approval")
	ErrTooManyHeldFromIP  = errors.New("too many requests from this address are waiting for approval")
)
