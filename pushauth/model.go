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

// PushWrongCode is the PushResult of a challenge closed because the
// phone's approval carried a code other than the one the waiting page
// showed (code transfer).
const PushWrongCode = "wrong_code"

// WrongCode reports whether c was denied because the phone's approval
// carried the wrong code, not because she denied it.
func (c *Challenge) WrongCode() bool {
	return c.Status == StatusDenied && !c.Fraud && c.PushResult == PushWrongCode
}

// Final reports whether s can no longer change.
func (s Status) Final() bool { return s != StatusPending && s != "" }

// Field is one label/value pair the phone shows (amount, payee, contract).
type Field struct {
	Label string `json:"label"`
	Value string `json:"value"`
	// Labels is the label per language (ja, en) when the policy gives it
	// so; a phone shows its own language's, else Label.
	Labels map[string]string `json:"labels,omitempty"`
}

// Challenge is one step-up request sent to a phone.
type Challenge struct {
	ID           string  `json:"id"`
	UserKey      string  `json:"user"`
	CredentialID string  `json:"credential_id"`
	Rule         string  `json:"rule"`
	Kind         string  `json:"kind"`
	Display      []Field `json:"display,omitempty"`
	ClientIP     string  `json:"client_ip,omitempty"`
	UserAgent    string  `json:"user_agent,omitempty"`
	// OCRAChallenge is the challenge number a transaction's waiting page
	// shows for the offline fallback (pushauth/ocra): the phone answers it
	// over payee and amount without a network. Not a secret.
	OCRAChallenge string `json:"ocra_challenge,omitempty"`
	// CodeDigits is the length of the code the waiting page shows and the
	// user types into the app (code transfer); 0 for approve-only rules.
	// The code itself is a secret (ChallengeSecrets.Code).
	CodeDigits int       `json:"code_digits,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// VoidAt is when the authentication is void (Void): the engine's
	// MaxAuthenticationAge after creation, fixed then.
	VoidAt time.Time `json:"void_at,omitzero"`
	Status Status    `json:"status"`
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
	Via   string `json:"via,omitempty"`
	Fraud bool   `json:"fraud,omitempty"`
	// PushResult is the outcome of the push ("sent", an error), or
	// PushWrongCode once an approval carrying the wrong code closed the
	// challenge (see WrongCode).
	PushResult string `json:"push_result,omitempty"`

	// Service, Host and Transaction are shown on the phone beside Display:
	// the bank service the rule protects, the host the request was sent to,
	// and what a transaction moves, typed and raw.
	Service     string       `json:"service,omitempty"`
	Host        string       `json:"host,omitempty"`
	Transaction *Transaction `json:"transaction,omitempty"`
	// SessionHash is SessionHash of the bank session cookie the request was
	// started in, "" when it carried none. A stored request is released only
	// to a request carrying the same session (never the cookie itself).
	SessionHash string `json:"session_hash,omitempty"`
	// Batch is the count, total and rows digest of a bulk, payroll or
	// approved batch (batch.go); its rows are in ChallengeSecrets.Rows.
	Batch *Batch `json:"batch,omitempty"`

	// Method is "passkey" for a challenge only a passkey assertion can
	// approve (never the phone), "" for a push. PasskeyNonce is the
	// random half of the assertion's challenge (passkeys.go); not a
	// secret: only the user's authenticator can sign it.
	Method       string `json:"method,omitempty"`
	PasskeyNonce []byte `json:"passkey_nonce,omitempty"`
}

// Transaction is what a transaction moves, exactly as the bank reads it.
// Everything that signs, codes or sums reads these raw values (Amount is
// ASCII digits in the currency's unit as the bank's form takes it, e.g.
// yen); formatting such as 1,500,000円 is presentation only.
type Transaction struct {
	Amount    string `json:"amount"`
	Currency  string `json:"currency"`
	Payee     string `json:"payee"`
	PayeeName string `json:"payee_name,omitempty"`
	// AmountShown is the amount as the policy formats it per language
	// (1,500,000円, ¥1,500,000): what pages and phones show. Presentation
	// only: the context carries it beside Amount, and whatever codes
	// (OCRA), checks or sums reads Amount.
	AmountShown map[string]string `json:"amount_shown,omitempty"`
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
	// Code is the random code of a code-transfer challenge (CodeDigits
	// ASCII digits): shown only on the waiting page of the browser that
	// started the challenge, compared with the decision token's code claim
	// in constant time. Never published, logged or shown to the phone.
	Code string `json:"code,omitempty"`
	// Response is the bank's answer to a password-first login
	// (after_success on a waiting page): its session cookie and redirect,
	// handed to the browser once, on approval.
	Response *HeldResponse `json:"response,omitempty"`
	// Rows are every row of the challenge's Batch: customer data, sealed
	// with the stored request, shown only to the phone (ChallengeRows).
	Rows []Row `json:"rows,omitempty"`
}

// HeldResponse is a bank response kept until the phone decides.
type HeldResponse struct {
	Status int         `json:"status"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
}

// MaxAuthentication is how long an authentication may take at most, from
// its challenge's creation to the release of what it approves: SP 800-63B
// rev 4 §3.1.3 voids an out-of-band authentication not completed within
// 10 minutes, whatever a rule's timeout says. It is the default and the
// ceiling of Config.MaxAuthenticationAge.
const MaxAuthentication = 10 * time.Minute

// Void reports whether c's authentication can no longer complete at now:
// at VoidAt, and never later than MaxAuthentication after its creation.
func (c *Challenge) Void(now time.Time) bool {
	end := c.CreatedAt.Add(MaxAuthentication)
	if !c.VoidAt.IsZero() && c.VoidAt.Before(end) {
		end = c.VoidAt
	}
	return !now.Before(end)
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
	// ExpiresAt is when a credential that no user has bound is deleted, so
	// registrations nobody completes do not pile up; zero once bound.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// OCRAKey (hex, pushauth/ocra) answers transaction challenges offline,
	// bound to challenge, payee and amount: a key of its own, so that the
	// plain security code never approves a transfer. Sealed with the
	// record like OTPSecret; "" for credentials registered before it.
	OCRAKey string `json:"ocra_key,omitempty"`
}

// expired reports whether an unbound credential's time is up at now.
func (c *Credential) Expired(now time.Time) bool {
	return !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt)
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
	// PreviousCredentialID is the phone bound before the current one (or
	// before the binding was removed): it is told when another phone
	// replaces it, and it marks a user who had a phone.
	PreviousCredentialID string `json:"previous_credential_id,omitempty"`
	// PushCount pushes were sent since the last approval, the first at
	// PushSince and the latest at PushLast (Unix seconds); see
	// PushStreakLimits. An approval clears them and sets PushHome, the
	// address (limit.AddressKey) it came from: pushes asked from there
	// are not counted, so pushes from elsewhere cannot lock her out.
	PushHome  string `json:"push_home,omitempty"`
	PushCount int    `json:"push_count,omitempty"`
	PushSince int64  `json:"push_since,omitempty"`
	PushLast  int64  `json:"push_last,omitempty"`
}

// Enrolled reports whether u has a usable credential binding.
func (u *User) Enrolled() bool {
	return u != nil && u.CredentialID != "" && u.State == UserActive
}

// HadPhone reports whether a phone was ever bound to u. Binding another one
// then takes more than the password (the policy's enrolment.replace).
func (u *User) HadPhone() bool {
	return u != nil && (u.CredentialID != "" || u.PreviousCredentialID != "" ||
		u.State == UserDeregistered || u.State == UserSuspended)
}

var (
	// ErrNotFound is returned by stores for a missing record.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a challenge is no longer pending.
	ErrConflict = errors.New("challenge is no longer pending")
	// ErrExists is returned when a record that must be new already exists.
	ErrExists = errors.New("already exists")
)
