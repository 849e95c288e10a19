package pushauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"time"
)

// Store keeps everything the engine must share between instances. Every
// method must be safe for concurrent use; the atomic ones (CreateChallenge,
// Resolve, UseJTI, AddFailure) must stay atomic across instances sharing
// the store. A store that keeps records outside the process seals their
// secrets (ChallengeSecrets, Credential.OTPSecret and OCRAKey); only
// GetChallenge must return a challenge's secrets, the records of Resolve,
// PendingForCredential and Watch may go without them.
type Store interface {
	PutCredential(ctx context.Context, c *Credential) error
	// GetCredential returns ErrNotFound when id is unknown.
	GetCredential(ctx context.Context, id string) (*Credential, error)
	DeleteCredential(ctx context.Context, id string) error

	PutUser(ctx context.Context, u *User) error
	// GetUser returns ErrNotFound when key is unknown.
	GetUser(ctx context.Context, key string) (*User, error)
	// UsersOfCredential lists the keys of users bound to a credential.
	UsersOfCredential(ctx context.Context, credentialID string) ([]string, error)

	// CompareAndPutUser stores u only if the user's record still has the
	// content of old (nil: there is no record), else it answers an error
	// wrapping ErrUserChanged: a change decided on a record read before a
	// failure was counted or a lock taken (AddFailure, another instance)
	// must not overwrite them. The engine re-reads and decides again.
	// Compare with SameUser. A store that waits for replicas does so as
	// for PutUser.
	CompareAndPutUser(ctx context.Context, old, u *User) error

	// CreateChallenge stores c as pending and applies PendingRule to the
	// user's other pending challenges in the same atomic step: those it
	// names become superseded (their IDs are returned, none when nil), or
	// c is refused with ErrTooManyPending and nothing changes. The record
	// lives until retainUntil.
	CreateChallenge(ctx context.Context, c *Challenge, retainUntil time.Time) (superseded []string, err error)
	// GetChallenge returns ErrNotFound when id is unknown or has aged out.
	GetChallenge(ctx context.Context, id string) (*Challenge, error)
	// Resolve moves a pending challenge to the final status to, exactly
	// once across all instances, and notifies every watcher. When the
	// challenge is not pending any more it returns the current record and
	// ErrConflict.
	Resolve(ctx context.Context, id string, to Status, fraud bool, at time.Time) (*Challenge, error)
	// PendingForCredential lists pending challenges addressed to a credential.
	PendingForCredential(ctx context.Context, credentialID string) ([]*Challenge, error)
	// SetPushResult records the outcome of the push for a challenge.
	SetPushResult(ctx context.Context, id, result string) error

	// UseJTI records a token ID as used until the given time; false means it
	// was used before.
	UseJTI(ctx context.Context, jti string, until time.Time) (bool, error)

	PutSession(ctx context.Context, hash, userKey string, ttl time.Duration) error
	// GetSession returns ErrNotFound for an unknown or expired session.
	GetSession(ctx context.Context, hash string) (string, error)
	DeleteSession(ctx context.Context, hash string) error

	// Watch calls fn with the ID of every challenge resolved anywhere
	// (this instance or another sharing the store) until stop is called,
	// and with its final record when the store has it at hand (nil
	// otherwise: the receiver re-reads), so a held request is released
	// without another round trip. Delivery may be lost; waiters re-read as
	// a backstop.
	Watch(fn func(challengeID string, final *Challenge)) (stop func(), err error)

	Close() error

	// Binding announcements and their proofs (outbox.go, activation.go).
	Outbox
	ActivationCodes
	// Failure counting and locking, atomic across instances (failures.go).
	FailureCounter
	// The push streak since the last approval (pushcap.go).
	PushCounter
	// Users' passkeys (passkeys.go).
	PasskeyStore
	// Admin changes waiting for a second operator (dualcontrol.go).
	AdminRequests
}

// Snapshotter is a Store that can copy itself consistently while it serves
// (the embedded store: its file is locked by the running gateway, so a
// backup must come from the gateway).
type Snapshotter interface {
	// Snapshot returns a file holding a consistent copy of the store,
	// positioned at its start and already unlinked (closing it frees it),
	// and a short description for the audit trail.
	Snapshot(ctx context.Context) (f *os.File, description string, err error)
}

// SessionHash is how a bank session cookie is stored: never the value.
func SessionHash(value string) string {
	h := sha256.Sum256([]byte("onepush-session\x00" + value))
	return hex.EncodeToString(h[:])
}

// ErrUserChanged is CompareAndPutUser's answer when the user's record is
// no longer the one the change was decided on.
var ErrUserChanged = errors.New("the user's record changed since it was read")

// SameUser reports whether two user records have the same content (nil
// for no record), as CompareAndPutUser compares them: by their JSON form,
// so a record written by a store's script and one written by Go compare
// equal when their fields do.
func SameUser(a, b *User) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
