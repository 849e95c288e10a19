package pushauth

import (
	"errors"
	"net/http"
	"time"
)

// Status is where a challenge is in its life. Pending is the only state that
// can change; every other state is final.
type Status string

const (
	StatusPending    Status = "pending"
	StatusApproved   Status = "approved"
	StatusDenied     Status = "denied"
	StatusExpired    Status = "expired"
	StatusCancelled  Status = "cancelled"
	StatusSuperseded Status = "superseded"
)

// Final reports whether s can no longer change.
func (s Status) Final() bool { return s != StatusPending && s != "" }

// Field is one label/value pair the phone shows (amount, payee, contract).
type Field struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// Challenge is one step-up request sent to a phone.
type Challenge struct {
	ID           string    `json:"id"`
	UserKey      string    `json:"user"`
	CredentialID string    `json:"credential_id"`
	Rule         string    `json:"rule"`
	Kind         string    `json:"kind"`
	Display      []Field   `json:"display,omitempty"`
	ClientIP     string    `json:"client_ip,omitempty"`
	UserAgent    string    `json:"user_agent,omitempty"`
	NumberMatch  int       `json:"number_match,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	Status       Status    `json:"status"`
	// Context is the exact JSON text the phone is shown and hashes into the
	// decision's ctx claim; it is fixed at creation so the hash is stable.
	Context   string    `json:"context"`
	DecidedAt time.Time `json:"decided_at,omitempty"`
	// ChallengeSecrets (the stored request, later the stored bank
	// response) is kept apart so that a store outside the process seals
	// it as one value.
	ChallengeSecrets
	// BrowserHash binds an interstitial challenge to the browser holding the
	// waiting page's cookie (SHA-256 of its token).
	BrowserHash string `json:"browser_hash,omitempty"`
	// Via is how an approval was given: "push" or "otp".
	Via        string `json:"via,omitempty"`
	Fraud      bool   `json:"fraud,omitempty"`
	PushResult string `json:"push_result,omitempty"`
}

// ChallengeSecrets is the part of a challenge that can carry a password,
// a transaction password, a cookie or a bank response. A store that keeps
// challenges outside the process seals it as one value (pushauth/seal) and
// never publishes it; a field that can hold such a secret belongs here and
// is sealed with it.
type ChallengeSecrets struct {
	// Held is the stored request of an interstitial challenge, replayed to
	// the bank on approval. It is never shown to the phone or logged.
	Held *HeldRequest `json:"held,omitempty"`
}

// HeldRequest is a request kept for replay: exactly the bytes the phone's
// display fields were parsed from.
type HeldRequest struct {
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
}

// Credential is one phone app instance, identified by the ID it was issued.
type Credential struct {
	ID        string    `json:"id"`
	PublicKey []byte    `json:"public_key"` // PKIX DER of a P-256 key
	Platform  string    `json:"platform"`
	PushToken string    `json:"push_token,omitempty"`
	TokenDead bool      `json:"token_dead,omitempty"`
	OTPSecret string    `json:"otp_secret"`
	CreatedAt time.Time `json:"created_at"`
}

// UserState is the bank-side lifecycle state of a user's push enrolment.
type UserState string

const (
	UserActive       UserState = "active"
	UserSuspended    UserState = "suspended"
	UserLocked       UserState = "locked"
	UserDeregistered UserState = "deregistered"
)

// User is the binding of a bank user key to a credential and its state.
type User struct {
	Key          string    `json:"key"`
	CredentialID string    `json:"credential_id,omitempty"`
	State        UserState `json:"state"`
	Failures     int       `json:"failures,omitempty"`
	// Until is the end of a suspension or of a deregistration's grace period.
	Until     time.Time `json:"until,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Enrolled reports whether u has a usable credential binding.
func (u *User) Enrolled() bool {
	return u != nil && u.CredentialID != "" && u.State == UserActive
}

var (
	// ErrNotFound is returned by stores for a missing record.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a challenge is no longer pending.
	ErrConflict = errors.New("challenge is no longer pending")
	// ErrExists is returned when a record that must be new already exists.
	ErrExists = errors.New("already exists")
)
