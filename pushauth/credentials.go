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

// Uninstall invalidates a credential: it is deleted and every user bound
// to it becomes deregistered, with grace until graceUntil.
func (e *Engine) Uninstall(ctx context.Context, cred *Credential, graceUntil time.Time) error {
	users, err := e.store.UsersOfCredential(ctx, cred.ID)
	if err != nil {
		return err
	}
	for _, key := range users {
		u, err := e.store.GetUser(ctx, key)
		if err != nil {
			continue
		}
		u.CredentialID, u.State, u.Until, u.UpdatedAt = "", UserDeregistered, graceUntil, e.now()
		if err := e.store.PutUser(ctx, u); err != nil {
			return err
		}
	}
	e.log.Info("credential uninstalled", "credential", cred.ID, "users", len(users))
	return e.store.DeleteCredential(ctx, cred.ID)
}

// Enroll binds credID to userKey after checking the credential's current
// security code (RFC 6238, ±1 step, each code accepted once). A user keeps
// one credential; a credential may serve several users.
func (e *Engine) Enroll(ctx context.Context, userKey, credID, code string) error {
	credID = strings.ToUpper(strings.TrimSpace(credID))
	cred, err := e.store.GetCredential(ctx, credID)
	if errors.Is(err, ErrNotFound) {
		return ErrUnknownCredential
	}
	if err != nil {
		return err
	}
	u, err := e.store.GetUser(ctx, userKey)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if u != nil && u.CredentialID != "" && u.State != UserDeregistered {
		return ErrAlreadyBound
	}
	if !e.CheckCode(ctx, cred, code) {
		return ErrBadCode
	}
	if u == nil {
		u = &User{Key: userKey}
	}
	u.CredentialID, u.State, u.Failures, u.Until, u.UpdatedAt = cred.ID, UserActive, 0, time.Time{}, e.now()
	if err := e.store.PutUser(ctx, u); err != nil {
		return err
	}
	e.log.Info("user enrolled", "user", userKey, "credential", cred.ID)
	return nil
}

// CheckCode validates a 6-digit security code of cred and uses it up.
func (e *Engine) CheckCode(ctx context.Context, cred *Credential, code string) bool {
	code = strings.TrimSpace(code)
	now := e.now()
	ok, err := totp.ValidateCustom(code, cred.OTPSecret, now, totp.ValidateOpts{
		Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil || !ok {
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
