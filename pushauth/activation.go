package pushauth

import (
	"bytes"
	"context"
	"time"
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
