package pushauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/time/rate"
)

// Platforms a credential may register with.
var platforms = map[string]bool{"apns": true, "fcm": true, "webhook": true, "none": true}

// RegisterCredential issues a credential ID and TOTP secret for a new app
// instance. The credential is useless until a user binds it.
func (e *Engine) RegisterCredential(ctx context.Context, publicKeyDER []byte, platform, pushToken string) (*Credential, error) {
	if _, err := parseP256(publicKeyDER); err != nil {
		return nil, fmt.Errorf("public_key: %w", err)
	}
	if !platforms[platform] {
		return nil, fmt.Errorf("platform %q: must be one of apns, fcm, webhook, none", platform)
	}
	if err := e.checkPushToken(platform, pushToken); err != nil {
		return nil, err
	}
	id, err := newCredentialID()
	if err != nil {
		return nil, err
	}
	var secret [20]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	c := &Credential{
		ID:        id,
		PublicKey: publicKeyDER,
		Platform:  platform,
		PushToken: pushToken,
		OTPSecret: base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret[:]),
		CreatedAt: e.now(),
	}
	if err := e.store.PutCredential(ctx, c); err != nil {
		return nil, fmt.Errorf("storing credential: %w", err)
	}
	e.log.Info("credential registered", "credential", id, "platform", platform)
	return c, nil
}

func (e *Engine) checkPushToken(platform, token string) error {
	if len(token) > 4096 {
		return errors.New("push_token: longer than 4096 bytes")
	}
	if platform == "webhook" {
		wp, ok := e.pusher("webhook").(interface{ Allowed(string) bool })
		if !ok {
			return errors.New("platform webhook: not enabled on this gateway")
		}
		if !wp.Allowed(token) {
			return fmt.Errorf("push_token %q: not under an allowed webhook prefix", token)
		}
	}
	return nil
}

// UpdatePushToken replaces a credential's push token and brings it out of
// poll mode.
func (e *Engine) UpdatePushToken(ctx context.Context, cred *Credential, platform, token string) error {
	if !platforms[platform] {
		return fmt.Errorf("platform %q: must be one of apns, fcm, webhook, none", platform)
	}
	if err := e.checkPushToken(platform, token); err != nil {
		return err
	}
	cred.Platform, cred.PushToken, cred.TokenDead = platform, token, false
	return e.store.PutCredential(ctx, cred)
}

// Uninstall invalidates a credential: it is deleted (its pending
// challenges can no longer be approved and expire), and every user bound
// to it becomes
// deregistered with grace until graceUntil, or for the policy's
// deregistration_grace when one is set (the policy wins).
func (e *Engine) Uninstall(ctx context.Context, cred *Credential, graceUntil time.Time) error {
	if d := e.DeregistrationGrace(0); d > 0 {
		graceUntil = e.now().Add(d)
	}
	users, err := e.store.UsersOfCredential(ctx, cred.ID)
	if err != nil {
		e.storeError("users_of_credential", err)
		return err
	}
	for _, key := range users {
		u, err := e.updateUser(ctx, key, func(u *User, exists bool) error {
			if !exists || u.CredentialID != cred.ID {
				return ErrNotFound
			}
			u.CredentialID, u.State, u.Until, u.Failures = "", UserDeregistered, graceUntil, 0
			return nil
		})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		e.audit(ctx, AuditEvent{Type: AuditStateChange, User: key, Credential: cred.ID, Outcome: string(u.State), Actor: "phone",
			Detail: "app uninstalled; password-only until " + graceUntil.UTC().Format(time.RFC3339)})
	}
	// Nobody can answer this phone's pending challenges any more: close
	// them now rather than keep their requests waiting to their timeout.
	pending, err := e.store.PendingForCredential(ctx, cred.ID)
	if err != nil {
		e.storeError("pending_for_credential", err)
		return err
	}
	for _, c := range pending {
		if _, err := e.finish(ctx, c.ID, StatusCancelled); err != nil {
			return err
		}
	}
	e.log.Info("credential uninstalled", "credential", cred.ID, "users", len(users), "cancelled", len(pending))
	if err := e.store.DeleteCredential(ctx, cred.ID); err != nil {
		e.storeError("delete_credential", err)
		return err
	}
	return nil
}

// Enroll binds credID to userKey after checking the credential's current
// security code (RFC 6238, ±1 step, each code accepted once). A user keeps
// one credential; a credential may serve several users. A locked user
// cannot enrol; a wrong code counts toward the lock. Errors:
// ErrUnknownCredential, ErrLocked, ErrAlreadyBound, ErrBadCode.
func (e *Engine) Enroll(ctx context.Context, userKey, credID, code string) error {
	_, err := e.enroll(ctx, userKey, credID, code)
	return err
}

// enroll is Enroll returning the bound credential.
func (e *Engine) enroll(ctx context.Context, userKey, credID, code string) (*Credential, error) {
	credID = normalCredID(credID)
	fail := func(err error, outcome string) (*Credential, error) {
		e.audit(ctx, AuditEvent{Type: AuditEnrolment, User: userKey, Credential: credID, Outcome: outcome, Actor: "browser"})
		return nil, err
	}
	if credID == "" || len(credID) > 64 {
		return fail(ErrUnknownCredential, "unknown_credential")
	}
	cred, err := e.store.GetCredential(ctx, credID)
	if errors.Is(err, ErrNotFound) {
		return fail(ErrUnknownCredential, "unknown_credential")
	}
	if err != nil {
		e.storeError("get_credential", err)
		return nil, err
	}
	u, err := e.store.GetUser(ctx, userKey)
	if err != nil && !errors.Is(err, ErrNotFound) {
		e.storeError("get_user", err)
		return nil, err
	}
	if u != nil {
		if err := bindable(u); err != nil {
			return fail(err, map[bool]string{true: "locked", false: "already_bound"}[errors.Is(err, ErrLocked)])
		}
	}
	if !e.CheckCode(ctx, cred, code) {
		e.audit(ctx, AuditEvent{Type: AuditEnrolment, User: userKey, Credential: credID, Outcome: "bad_code", Actor: "browser"})
		e.recordFailure(ctx, userKey, "wrong security code at enrolment", nil)
		return nil, ErrBadCode
	}
	_, err = e.updateUser(ctx, userKey, func(u *User, _ bool) error {
		if err := bindable(u); err != nil { // re-checked under the user's lock
			return err
		}
		u.CredentialID, u.State, u.Failures, u.Until = cred.ID, UserActive, 0, time.Time{}
		return nil
	})
	if errors.Is(err, ErrLocked) || errors.Is(err, ErrAlreadyBound) {
		return fail(err, "already_bound")
	}
	if err != nil {
		return nil, err
	}
	e.log.Info("user enrolled", "user", userKey, "credential", cred.ID)
	e.audit(ctx, AuditEvent{Type: AuditEnrolment, User: userKey, Credential: cred.ID, Outcome: "bound", Actor: "browser"})
	return cred, nil
}

// CheckCode validates a 6-digit security code of cred and uses it up.
func (e *Engine) CheckCode(ctx context.Context, cred *Credential, code string) bool {
	code = strings.TrimSpace(code)
	now := e.now()
	ok, err := totp.ValidateCustom(code, cred.OTPSecret, now, totp.ValidateOpts{
		Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil || !ok || !e.usableAfterFailover(cred, code, now) {
		return false
	}
	// A code is accepted once: remember it for the whole ±1-step window.
	fresh, err := e.store.UseJTI(ctx, "otp/"+cred.ID+"/"+code, now.Add(2*time.Minute))
	return err == nil && fresh
}

// newCredentialID returns "OP" and 16 base32 characters (80 random bits):
// short enough to type from the phone into the PC form.
func newCredentialID() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "OP" + base32.StdEncoding.EncodeToString(b[:]), nil
}

// SessionHash is how a bank session cookie is stored: never the value.
func SessionHash(value string) string {
	h := sha256.Sum256([]byte("onepush-session\x00" + value))
	return hex.EncodeToString(h[:])
}

// ipLimiter bounds credential registrations per client IP (and overall,
// through a shared limiter) with a map that is reset when full, so it
// never grows without bound.
type ipLimiter struct {
	mu     sync.Mutex
	max    int
	m      map[string]*rate.Limiter
	global *rate.Limiter
}

func newIPLimiter(max int) *ipLimiter {
	return &ipLimiter{max: max, m: make(map[string]*rate.Limiter), global: rate.NewLimiter(50, 100)}
}

func (l *ipLimiter) allow(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[host]
	if !ok {
		if len(l.m) >= l.max {
			l.m = make(map[string]*rate.Limiter)
		}
		lim = rate.NewLimiter(rate.Every(6*time.Second), 20)
		l.m[host] = lim
	}
	return lim.Allow() && l.global.Allow()
}
