package pushauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
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

// MethodPasskey is Challenge.Method of a challenge only a passkey
// assertion approves.
const MethodPasskey = "passkey"

// KindPasskeyAdd is the kind of the challenge the phone approves, with
// the code the registering browser shows, before that browser may
// register a passkey: never an earlier approved login, never the
// password alone (a real-time phishing site relays a login the victim
// approves; it must not add its own passkey with that session).
const KindPasskeyAdd = "passkey.add"

// What the customer is told through the outbox, and the audit event.
const (
	// EventPasskeyAdded: a passkey was registered for the user.
	EventPasskeyAdded = "passkey.added"
	// EventPasskeyRemoved: the bank removed one of her passkeys.
	EventPasskeyRemoved = "passkey.removed"
	// EventPasskeyCloned: an assertion's signature counter did not grow
	// (a cloned authenticator): the user is locked.
	EventPasskeyCloned = "passkey.clone_suspected"

	AuditPasskey = "passkey"
)

// Errors of the passkey paths.
var (
	ErrNotPasskeyAdd    = errors.New("no approved passkey.add challenge of this user")
	ErrTooManyPasskeys  = errors.New("the user has as many passkeys as allowed")
	ErrUnknownPasskey   = errors.New("not a passkey of this user")
	ErrPasskeyRequired  = errors.New("the rule asks for a passkey and the user has none")
	ErrNotPasskeyMethod = errors.New("not a passkey challenge")
)

// PasskeyMetrics is what a Metrics may also count: passkey ceremonies
// by ceremony (login, transaction, registration) and result (approved,
// rejected, clone, added). A Metrics without it counts none.
type PasskeyMetrics interface {
	PasskeyResult(ceremony, result string)
}

func (e *Engine) passkeyMetric(c *Challenge, result string) {
	m, ok := e.cfg.Metrics.(PasskeyMetrics)
	if !ok {
		return
	}
	ceremony := "login"
	switch {
	case c.Kind == KindPasskeyAdd:
		ceremony = "registration"
	case c.Transaction != nil || c.Kind == "transaction":
		ceremony = "transaction"
	}
	m.PasskeyResult(ceremony, result)
}

// passkeyChallenge makes c a passkey challenge with a fresh nonce.
func passkeyChallenge(c *Challenge) error {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("pushauth: reading randomness: %w", err)
	}
	c.Method, c.PasskeyNonce = MethodPasskey, nonce
	return nil
}

// method is the Method of the challenge spec asks for.
func (spec ChallengeSpec) method() string {
	if spec.Passkey {
		return MethodPasskey
	}
	return ""
}

// allowPushFor applies the per-minute challenge rate to every challenge,
// and the push streak only to those that ring the phone.
func (e *Engine) allowPushFor(ctx context.Context, userKey string, spec ChallengeSpec) error {
	if err := e.allowPush(ctx, userKey, spec.ClientIP); err != nil {
		return err
	}
	if spec.Passkey {
		return nil
	}
	return e.allowStreak(ctx, userKey, spec.ClientIP, spec.Rule)
}

// Passkeys lists the user's passkeys.
func (e *Engine) Passkeys(ctx context.Context, userKey string) ([]*Passkey, error) {
	list, err := e.store.Passkeys(ctx, userKey)
	if err != nil {
		e.StoreFailed("passkeys", err)
	}
	return list, err
}

// AddPasskey registers p for the user of c, an approved passkey.add
// challenge that has not registered one yet (each approval adds one
// passkey), and announces it through the outbox: a passkey that cannot be
// announced is not kept.
func (e *Engine) AddPasskey(ctx context.Context, c *Challenge, p *Passkey) error {
	if c == nil || c.Kind != KindPasskeyAdd || c.Status != StatusApproved || c.UserKey != p.UserKey || c.Void(e.now()) {
		return ErrNotPasskeyAdd
	}
	have, err := e.Passkeys(ctx, p.UserKey)
	if err != nil {
		return err
	}
	if len(have) >= MaxPasskeysPerUser {
		return ErrTooManyPasskeys
	}
	fresh, err := e.store.UseJTI(ctx, "passkey-add/"+c.ID, c.ExpiresAt.Add(e.cfg.Retain))
	if err != nil {
		e.StoreFailed("use_jti", err)
		return err
	}
	if !fresh {
		return fmt.Errorf("%w: challenge %s already registered one", ErrNotPasskeyAdd, c.ID)
	}
	p.Challenge, p.CreatedAt = c.ID, e.now()
	if err := e.store.AddPasskey(ctx, p); err != nil {
		e.StoreFailed("add_passkey", err)
		return err
	}
	detail := fmt.Sprintf("passkey %s registered from %s", shortID(p.ID), p.Browser)
	if err := e.Announce(ctx, Announcement{Type: EventPasskeyAdded, User: p.UserKey, Credential: c.CredentialID,
		Via: KindPasskeyAdd, ClientIP: p.ClientIP, Actor: "browser", Detail: detail}); err != nil {
		_ = e.store.DeletePasskey(context.WithoutCancel(ctx), p.UserKey, p.ID)
		return err
	}
	e.Record(ctx, AuditEvent{Type: AuditPasskey, User: p.UserKey, Credential: c.CredentialID, Challenge: c.ID,
		ClientIP: p.ClientIP, Outcome: "added", Actor: "browser", Detail: detail, Service: c.Service, Host: c.Host})
	e.log.Info("passkey registered", "user", p.UserKey, "passkey", shortID(p.ID), "challenge", c.ID)
	e.passkeyMetric(c, "added")
	return nil
}

// RemovePasskey deletes one of the user's passkeys (an operator, through
// the admin API) and announces it.
func (e *Engine) RemovePasskey(ctx context.Context, userKey string, id []byte, actor string) error {
	if err := e.store.DeletePasskey(ctx, userKey, id); err != nil {
		return err
	}
	detail := "passkey " + shortID(id) + " removed"
	e.Record(ctx, AuditEvent{Type: AuditPasskey, User: userKey, Outcome: "removed", Actor: actor, Detail: detail})
	_ = e.Announce(ctx, Announcement{Type: EventPasskeyRemoved, User: userKey, Actor: actor, Detail: detail})
	return nil
}

// ApproveWithPasskey approves passkey challenge c after the gate verified
// an assertion of the user's passkey id carrying counter count over its
// context. A counter that did not grow is a cloned authenticator: the
// challenge is denied, the user locked at once and told
// (ErrSignCount). A locked user's challenge is denied (ErrLocked). The
// approval goes the way of every other (Resolve,
// audit, the failure count cleared), and the waiting page releases the
// request as for a push.
func (e *Engine) ApproveWithPasskey(ctx context.Context, c *Challenge, id []byte, count uint32) (*Challenge, error) {
	if c.Method != MethodPasskey {
		return nil, ErrNotPasskeyMethod
	}
	if _, err := e.store.UsePasskey(ctx, c.UserKey, id, count, e.now()); err != nil {
		switch {
		case errors.Is(err, ErrSignCount):
			e.passkeyMetric(c, "clone")
			e.passkeyCloned(ctx, c, id, err)
			return nil, err
		case errors.Is(err, ErrNotFound):
			return nil, ErrUnknownPasskey
		}
		e.StoreFailed("use_passkey", err)
		return nil, err
	}
	// A lock stops the user's pending challenges too: the lock a clone
	// takes (a counter that did not grow) must not leave the clone's holder
	// the logins they started before it, approved with the clone.
	u, err := e.store.GetUser(ctx, c.UserKey)
	if err != nil {
		e.StoreFailed("get_user", err)
		return nil, err
	}
	if u.State == UserLocked {
		e.Record(ctx, AuditEvent{Type: AuditSuspicious, User: c.UserKey, Credential: c.CredentialID, Challenge: c.ID, Rule: c.Rule,
			ClientIP: c.ClientIP, Outcome: "passkey_locked", Actor: "gateway", Detail: "passkey " + shortID(id) + " asserted for a locked user", Service: c.Service, Host: c.Host})
		_, _ = e.Finish(context.WithoutCancel(ctx), c.ID, StatusDenied)
		return nil, ErrLocked
	}
	res, err := e.store.Resolve(ctx, c.ID, StatusApproved, false, e.now())
	if err != nil {
		return res, err
	}
	e.log.Info("challenge decided", "challenge", c.ID, "user", c.UserKey, "rule", c.Rule, "outcome", string(StatusApproved), "via", MethodPasskey, "passkey", shortID(id))
	e.passkeyMetric(c, "approved")
	e.afterDecision(ctx, res, "browser (passkey)", "")
	return res, nil
}

// PasskeyFailed counts an assertion that did not verify toward the lock
// (as a wrong code) and reports whether the user is now locked; the
// challenge is then closed.
func (e *Engine) PasskeyFailed(ctx context.Context, c *Challenge, why string) bool {
	e.Record(ctx, AuditEvent{Type: AuditPasskey, User: c.UserKey, Credential: c.CredentialID, Challenge: c.ID, Rule: c.Rule,
		ClientIP: c.ClientIP, Outcome: "rejected", Actor: "browser", Detail: why, Service: c.Service, Host: c.Host})
	e.passkeyMetric(c, "rejected")
	locked := e.recordFailure(ctx, c.UserKey, "passkey assertion rejected", c)
	if locked {
		_, _ = e.Finish(context.WithoutCancel(ctx), c.ID, StatusDenied)
	}
	return locked
}

// passkeyCloned denies c, locks its user at once and tells her.
func (e *Engine) passkeyCloned(ctx context.Context, c *Challenge, id []byte, why error) {
	ctx = context.WithoutCancel(ctx)
	detail := fmt.Sprintf("passkey %s: %v", shortID(id), why)
	e.log.Warn("passkey signature counter did not grow: cloned authenticator suspected", "user", c.UserKey, "challenge", c.ID, "passkey", shortID(id))
	e.Record(ctx, AuditEvent{Type: AuditSuspicious, User: c.UserKey, Credential: c.CredentialID, Challenge: c.ID, Rule: c.Rule,
		ClientIP: c.ClientIP, Outcome: "passkey_clone", Actor: "gateway", Detail: detail, Service: c.Service, Host: c.Host})
	_, _ = e.Finish(ctx, c.ID, StatusDenied)
	u, lockedNow, err := e.store.AddFailure(ctx, c.UserKey, int(e.maxFailures.Load()), true, e.now())
	if err != nil {
		e.StoreFailed("add_failure", err)
	} else if lockedNow {
		e.announceLock(ctx, u, "cloned passkey suspected", c)
	}
	_ = e.Announce(ctx, Announcement{Type: EventPasskeyCloned, User: c.UserKey, Credential: c.CredentialID,
		ClientIP: c.ClientIP, Actor: "gateway", Detail: detail})
}

// shortID names a passkey in logs and messages: the first 8 bytes of its
// ID, base64url.
func shortID(id []byte) string {
	if len(id) > 8 {
		id = id[:8]
	}
	return base64.RawURLEncoding.EncodeToString(id)
}
