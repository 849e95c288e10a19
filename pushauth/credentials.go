package pushauth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/onepush/onepush/pushauth/ocra"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Platforms a credential may register with.
var platforms = map[string]bool{"apns": true, "fcm": true, "webhook": true, "none": true}

// RegisterCredential issues a credential ID and TOTP secret for a new app
// instance. The credential is useless until a user binds it, and is
// deleted if nobody does within Config.UnboundCredentialTTL.
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
	ocraKey, err := ocra.NewKey()
	if err != nil {
		return nil, err
	}
	c := &Credential{
		ID:        id,
		PublicKey: publicKeyDER,
		Platform:  platform,
		PushToken: pushToken,
		OTPSecret: base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret[:]),
		OCRAKey:   ocraKey,
		CreatedAt: e.now(),
		ExpiresAt: e.now().Add(time.Duration(e.unboundTTL.Load())),
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
		e.StoreFailed("users_of_credential", err)
		return err
	}
	for _, key := range users {
		u, err := e.UpdateUser(ctx, key, func(u *User, exists bool) error {
			if !exists || u.CredentialID != cred.ID {
				return ErrNotFound
			}
			u.PreviousCredentialID = u.CredentialID
			u.CredentialID, u.State, u.Until, u.Failures = "", UserDeregistered, graceUntil, 0
			return nil
		})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		detail := "app uninstalled; password-only until " + graceUntil.UTC().Format(time.RFC3339)
		e.Record(ctx, AuditEvent{Type: AuditStateChange, User: key, Credential: cred.ID, Outcome: string(u.State), Actor: "phone", Detail: detail})
		_ = e.Announce(ctx, Announcement{Type: EventPhoneDeregistered, User: key, Credential: cred.ID, Actor: "phone", Detail: detail})
	}
	// Nobody can answer this phone's pending challenges any more: close
	// them now rather than keep their requests waiting to their timeout.
	pending, err := e.store.PendingForCredential(ctx, cred.ID)
	if err != nil {
		e.StoreFailed("pending_for_credential", err)
		return err
	}
	for _, c := range pending {
		if _, err := e.Finish(ctx, c.ID, StatusCancelled); err != nil {
			return err
		}
	}
	e.log.Info("credential uninstalled", "credential", cred.ID, "users", len(users), "cancelled", len(pending))
	if err := e.store.DeleteCredential(ctx, cred.ID); err != nil {
		e.StoreFailed("delete_credential", err)
		return err
	}
	return nil
}

// ErrCodeUsed is CheckCode's answer for a right security code that was
// used before. It is refused, but it is no guess: only the customer (a
// retry, also of a code burnt by a call the store failed) or someone who
// saw the code can send it, so it does not count toward the lock.
var ErrCodeUsed = errors.New("security code was already used")

// CheckCode validates a 6-digit security code of cred and uses it up:
// true for a right code used for the first time, false for a wrong one
// (a guess: the caller counts it), ErrCodeUsed for a right one used
// before. Any other error means the store could not record the use
// (down, or replicas not acknowledging): no answer about the code, so
// the caller must not count it either.
func (e *Engine) CheckCode(ctx context.Context, cred *Credential, code string) (bool, error) {
	code = strings.TrimSpace(code)
	now := e.now()
	ok, err := totp.ValidateCustom(code, cred.OTPSecret, now, totp.ValidateOpts{
		Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil || !ok || !e.usableAfterFailover(cred, code, now) {
		return false, nil
	}
	// A code is accepted once: remember it for the whole ±1-step window.
	fresh, err := e.store.UseJTI(ctx, "otp/"+cred.ID+"/"+code, now.Add(2*time.Minute))
	if err != nil {
		e.StoreFailed("use_jti", err)
		return false, fmt.Errorf("pushauth: recording the use of a security code of %s: %w", cred.ID, err)
	}
	if !fresh {
		return false, fmt.Errorf("%w (credential %s)", ErrCodeUsed, cred.ID)
	}
	return true, nil
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
