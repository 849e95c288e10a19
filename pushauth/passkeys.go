package pushauth

import (
	"context"
	"errors"
	"time"
)

// Passkey is one WebAuthn credential a user registered through the
// gateway (pushauth/passkey verifies its assertions). Nothing in it is a
// secret: the private key never leaves the authenticator.
type Passkey struct {
	// ID is the credential ID the authenticator chose (raw bytes).
	ID      []byte `json:"id"`
	UserKey string `json:"user"`
	// PublicKey is the credential public key, COSE-encoded as the
	// authenticator returned it.
	PublicKey []byte `json:"public_key"`
	// SignCount is the authenticator's signature counter at its last use
	// (0 for authenticators that keep none). A counter that does not grow
	// means a cloned authenticator: the user is locked and told.
	SignCount uint32 `json:"sign_count"`
	// AAGUID names the authenticator model (16 bytes, zeros when unknown).
	AAGUID []byte `json:"aaguid,omitempty"`
	// Payment: registered with the payment extension, so Secure Payment
	// Confirmation may use it for transactions.
	Payment bool `json:"payment,omitempty"`
	// Browser and ClientIP are the browser (user agent, escaped) and the
	// address that registered it; Challenge the passkey.add challenge the
	// phone approved for it.
	Browser   string    `json:"browser,omitempty"`
	ClientIP  string    `json:"client_ip,omitempty"`
	Challenge string    `json:"challenge,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// MaxPasskeysPerUser bounds the passkeys one user may register.
const MaxPasskeysPerUser = 10

// ErrSignCount is UsePasskey's answer when an assertion's signature
// counter is not above the stored one: a cloned authenticator (or a
// replayed assertion).
var ErrSignCount = errors.New("passkey signature counter did not increase")

// PasskeyStore keeps users' passkeys. Every method is safe for concurrent
// use and UsePasskey is atomic across instances sharing the store, so two
// assertions carrying the same counter cannot both be accepted.
type PasskeyStore interface {
	// AddPasskey stores p under p.UserKey; ErrExists when the user has a
	// passkey with that ID already.
	AddPasskey(ctx context.Context, p *Passkey) error
	// Passkeys lists the user's passkeys, oldest first (none: empty).
	Passkeys(ctx context.Context, userKey string) ([]*Passkey, error)
	// UsePasskey records a use at with the assertion's counter: the
	// counter must be above the stored one unless both are 0 (else
	// ErrSignCount, and nothing changes). ErrNotFound for an unknown
	// passkey. It returns the record as stored.
	UsePasskey(ctx context.Context, userKey string, id []byte, count uint32, at time.Time) (*Passkey, error)
	// DeletePasskey removes one; ErrNotFound when the user has none with
	// that ID.
	DeletePasskey(ctx context.Context, userKey string, id []byte) error
}

// CounterAdvances reports whether an assertion's counter next may follow
// stored (WebAuthn §6.1.1): it must grow, unless the authenticator keeps
// no counter (both 0). Stores apply it inside their atomic update.
func CounterAdvances(stored, next uint32) bool {
	return (stored == 0 && next == 0) || next > stored
}
