package pushauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth/internal/actcode"
)

// ActivationCodes keeps each user's one outstanding activation code, the
// out-of-band proof that lets a phone replace another (or bind a first one,
// when the policy asks for it). Only a salted, slow hash of a code is ever
// stored.
type ActivationCodes interface {
	// PutActivationCode makes c the user's outstanding code until
	// c.ExpiresAt, replacing any other.
	PutActivationCode(ctx context.Context, c *ActivationCode) error
	// GetActivationCode returns the user's outstanding code; ErrNotFound
	// when there is none or it expired.
	GetActivationCode(ctx context.Context, userKey string) (*ActivationCode, error)
	// CountActivationFailure adds a failed attempt to the user's code id
	// and returns how many it has now, counted atomically across
	// instances; ErrNotFound when id is no longer the outstanding code.
	CountActivationFailure(ctx context.Context, userKey, id string) (int, error)
	// TakeActivationCode removes the user's code id if it is still
	// outstanding: true for exactly one caller across all instances, which
	// is what makes a code single use.
	TakeActivationCode(ctx context.Context, userKey, id string) (bool, error)
}

// ActivationCode is the stored form of an issued code.
type ActivationCode struct {
	// ID names this issue of a code (in the audit trail); it is not the code.
	ID   string `json:"id"`
	User string `json:"user"`
	// Kind is ActivationBinding or ActivationRecovery.
	Kind string `json:"kind"`
	// Salt and Hash: Argon2id of the code, never the code.
	Salt      []byte    `json:"salt"`
	Hash      []byte    `json:"hash"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// IssuedBy is the operator who asked for it.
	IssuedBy string `json:"issued_by,omitempty"`
	// Failures counts wrong codes typed against it.
	Failures int `json:"failures,omitempty"`
}

// The kinds of activation code.
const (
	// ActivationBinding is handed over in a session the bank runs (branch,
	// call centre): valid minutes (enrolment.binding_code_validity).
	ActivationBinding = "binding"
	// ActivationRecovery is sent by post to the address of record, an
	// account-recovery code: valid days (enrolment.recovery_code_validity).
	ActivationRecovery = "recovery"
)

func (c *ActivationCode) Clone() *ActivationCode {
	cp := *c
	cp.Salt, cp.Hash = bytes.Clone(c.Salt), bytes.Clone(c.Hash)
	return &cp
}

// maxActivationFailures voids a code after this many wrong tries (each
// also counts toward the user's lock).
const maxActivationFailures = 5

// IssueActivationCode creates the user's activation code of kind
// (ActivationBinding or ActivationRecovery), valid for the longest
// validity of that kind the loaded policies allow (see AddPolicy; each
// site still refuses it past its own), replacing any code the user had. The code is
// returned once, for the bank to hand over; the store keeps its hash.
func (e *Engine) IssueActivationCode(ctx context.Context, userKey, kind, actor string) (string, *ActivationCode, error) {
	if userKey == "" {
		return "", nil, fmt.Errorf("%w: empty user key", ErrUnknownUser)
	}
	switch kind {
	case ActivationBinding, ActivationRecovery:
	default:
		return "", nil, fmt.Errorf("%w: activation code kind %q: must be %s or %s", ErrBadInput, kind, ActivationBinding, ActivationRecovery)
	}
	valid := e.activationValidity(kind)
	u, err := e.store.GetUser(ctx, userKey)
	switch {
	case err == nil && u.State == UserLocked:
		return "", nil, fmt.Errorf("%w: user %q is locked; unlock first", ErrUserState, userKey)
	case err != nil && !errors.Is(err, ErrNotFound):
		e.StoreFailed("get_user", err)
		return "", nil, err
	}
	code, err := actcode.New()
	if err != nil {
		return "", nil, err
	}
	id, err := RandomID()
	if err != nil {
		return "", nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", nil, err
	}
	now := e.now()
	c := &ActivationCode{ID: id, User: userKey, Kind: kind, Salt: salt,
		Hash: actcode.Hash(userKey, actcode.Normal(code), salt), IssuedAt: now, ExpiresAt: now.Add(valid), IssuedBy: actor}
	if err := e.store.PutActivationCode(ctx, c); err != nil {
		e.StoreFailed("put_activation_code", err)
		return "", nil, err
	}
	e.Record(ctx, AuditEvent{Type: AuditAdmin, User: userKey, Outcome: "activation_code", Actor: actor,
		Detail: fmt.Sprintf("%s code %s issued, valid until %s", kind, id, c.ExpiresAt.UTC().Format(time.RFC3339))})
	return code, c, nil
}

// checkActivationCode compares a typed code with the user's outstanding
// one and takes it when it matches and is within the validity en (the
// site's policy) gives its kind; a wrong one counts against the code and
// voids it at maxActivationFailures.
func (e *Engine) checkActivationCode(ctx context.Context, userKey, typed string, en policy.Enrolment) (*ActivationCode, error) {
	c, err := e.store.GetActivationCode(ctx, userKey)
	if errors.Is(err, ErrNotFound) {
		// As slow as a wrong code: the answer's time does not tell whether
		// the user has a code.
		actcode.Hash(userKey, actcode.Normal(typed), make([]byte, 16))
		return nil, ErrBadActivationCode
	}
	if err != nil {
		e.StoreFailed("get_activation_code", err)
		return nil, err
	}
	norm := actcode.Normal(typed)
	if norm == "" || subtle.ConstantTimeCompare(actcode.Hash(userKey, norm, c.Salt), c.Hash) != 1 {
		n, err := e.store.CountActivationFailure(ctx, userKey, c.ID)
		if err == nil && n >= maxActivationFailures {
			_, _ = e.store.TakeActivationCode(ctx, userKey, c.ID)
			e.log.Warn("activation code voided after repeated wrong tries", "user", userKey, "code_id", c.ID)
		}
		return nil, ErrBadActivationCode
	}
	if !e.now().Before(c.IssuedAt.Add(codeValidity(en, c.Kind))) {
		// Issued for a site whose policy allows longer: expired here.
		return nil, ErrBadActivationCode
	}
	ok, err := e.store.TakeActivationCode(ctx, userKey, c.ID)
	if err != nil {
		e.StoreFailed("take_activation_code", err)
		return nil, err
	}
	if !ok {
		return nil, ErrBadActivationCode // used by a request that won the race
	}
	return c, nil
}
