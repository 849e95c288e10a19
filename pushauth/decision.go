package pushauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
)

// Decision outcomes a device may send.
const (
	DecisionApprove = "approve"
	DecisionDeny    = "deny"
	DecisionFraud   = "fraud"
)

// ErrChallengeNotFound is returned for an unknown challenge or one
// addressed to another credential (the device cannot tell them apart).
var ErrChallengeNotFound = errors.New("unknown challenge")

// CtxHash is the ctx claim for a context string: base64url(SHA-256(bytes)).
func CtxHash(context string) string {
	h := sha256.Sum256([]byte(context))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// Decide applies a decision token to challenge id. Errors wrap ErrBadToken
// (401), ErrChallengeNotFound (404) or ErrConflict (409).
func (e *Engine) Decide(ctx context.Context, id, rawToken string) (*Challenge, error) {
	claims, cred, err := e.verifySignedToken(ctx, rawToken)
	if err != nil {
		return nil, err
	}
	// The signature is good: read the challenge while the jti is used up,
	// so a release waits for one store round trip less. Nothing is acted on
	// before both are back.
	type read struct {
		c   *Challenge
		err error
	}
	got := make(chan read, 1)
	go func() {
		c, err := e.store.GetChallenge(ctx, id)
		got <- read{c, err}
	}()
	jtiErr := e.useJTI(ctx, claims, cred)
	r := <-got
	if jtiErr != nil {
		return nil, jtiErr
	}
	if claims.Subject != id {
		return nil, fmt.Errorf("%w: sub %q is not challenge %q", ErrBadToken, claims.Subject, id)
	}
	switch claims.Decision {
	case DecisionApprove, DecisionDeny, DecisionFraud:
	default:
		return nil, fmt.Errorf("%w: decision %q", ErrBadToken, claims.Decision)
	}
	c, err := r.c, r.err
	if errors.Is(err, ErrNotFound) || (err == nil && (c.CredentialID != cred.ID || c.Method == MethodPasskey)) {
		// A passkey challenge is the browser's to approve, never the
		// phone's: to the phone it does not exist.
		return nil, fmt.Errorf("%w: %s for credential %s", ErrChallengeNotFound, id, cred.ID)
	}
	if err != nil {
		return nil, err
	}
	if c.Status.Final() {
		if claims.Decision == DecisionFraud && c.StopReason() != "" {
			// "That other sign-in was not me": see reportStopped.
			if subtle.ConstantTimeCompare([]byte(claims.Ctx), []byte(CtxHash(c.Context))) != 1 {
				return nil, fmt.Errorf("%w: ctx does not match the challenge context", ErrBadToken)
			}
			return e.reportStopped(ctx, c)
		}
		return c, fmt.Errorf("%w: it is %s", ErrConflict, c.Status)
	}
	if !e.now().Before(c.ExpiresAt) {
		cur, _ := e.Finish(ctx, id, StatusExpired)
		if cur != nil && cur.Status != StatusExpired {
			return cur, fmt.Errorf("%w: it is %s", ErrConflict, cur.Status)
		}
		return cur, fmt.Errorf("%w: it expired", ErrConflict)
	}
	if subtle.ConstantTimeCompare([]byte(claims.Ctx), []byte(CtxHash(c.Context))) != 1 {
		return nil, fmt.Errorf("%w: ctx does not match the challenge context", ErrBadToken)
	}
	to, fraud := StatusApproved, false
	switch claims.Decision {
	case DecisionDeny:
		to = StatusDenied
	case DecisionFraud:
		to, fraud = StatusDenied, true
	}
	wrongCode := false
	if to == StatusApproved && c.CodeDigits > 0 && !codeMatches(c, claims.Code) {
		// A wrong or missing code: the person at the phone is not looking
		// at the browser that asked (or guesses). The challenge is closed
		// and the failure counts toward the lock; the next challenge gets
		// a fresh code and the count goes on.
		to, wrongCode = StatusDenied, true
		e.log.Info("wrong code in a decision", "challenge", id, "user", c.UserKey, "credential", cred.ID, "rule", c.Rule)
		// Noted before the challenge closes, so that the waiting page,
		// woken by the resolution, can tell her the code did not match
		// rather than that her phone denied. Presentation only: a lost
		// note makes the page say "not approved", nothing more.
		if err := e.store.SetPushResult(ctx, id, PushWrongCode); err != nil {
			e.log.Warn("noting a wrong code", "challenge", id, "error", err)
		}
	}
	res, err := e.store.Resolve(ctx, id, to, fraud, e.now())
	if err != nil {
		if errors.Is(err, ErrConflict) && res != nil {
			return res, fmt.Errorf("%w: it is %s", ErrConflict, res.Status)
		}
		return nil, err
	}
	e.log.Debug("challenge decided", "challenge", id, "user", res.UserKey, "credential", cred.ID, "rule", res.Rule, "outcome", string(to), "fraud", fraud)
	why := ""
	if wrongCode {
		why = "wrong code from the browser"
	}
	e.afterDecision(ctx, res, "phone", why)
	return res, nil
}

// codeMatches reports, in constant time, whether the code claim is the
// challenge's code. A challenge whose code is missing (it cannot be, but a
// store that lost it must not approve anything) matches nothing.
func codeMatches(c *Challenge, claim *string) bool {
	if claim == nil || len(c.Code) != c.CodeDigits || c.CodeDigits == 0 {
		return false
	}
	return hmac.Equal([]byte(*claim), []byte(c.Code))
}

// afterDecision records a decided challenge (audit, metrics) and keeps the
// user's consecutive-failure count: an approval resets it; a failed
// authentication (failure says why: a wrong code) adds one, and
// MaxFailures in a row lock the user until the bank unlocks; a fraud
// report locks at once and is reported to the bank. A plain denial is not
// a failed authentication: it is the customer refusing a request she did
// not make, and counting it would let whoever rings her phone lock her out
// (push fatigue turned into denial of service).
func (e *Engine) afterDecision(ctx context.Context, c *Challenge, actor, failure string) {
	e.challengeClosed(ctx, c, actor)
	switch {
	case c.Status == StatusApproved:
		e.recordSuccess(ctx, c.UserKey, c.ClientIP)
	case c.Status == StatusDenied && c.Fraud:
		_ = e.Announce(ctx, Announcement{Type: EventFraudReported, User: c.UserKey, Credential: c.CredentialID,
			ClientIP: c.ClientIP, Actor: actor, Detail: "reported as fraud: " + c.Kind + " (" + c.Rule + ")"})
		e.recordFailure(ctx, c.UserKey, "fraud report", c)
	case c.Status == StatusDenied && failure != "":
		e.recordFailure(ctx, c.UserKey, failure, c)
	}
}

// PendingFor lists the pending challenges of a credential (poll mode).
func (e *Engine) PendingFor(ctx context.Context, cred *Credential) ([]*Challenge, error) {
	list, err := e.store.PendingForCredential(ctx, cred.ID)
	return slices.DeleteFunc(list, func(c *Challenge) bool { return c.Method == MethodPasskey }), err
}

// ChallengeFor returns challenge id if it is addressed to cred.
func (e *Engine) ChallengeFor(ctx context.Context, cred *Credential, id string) (*Challenge, error) {
	c, err := e.store.GetChallenge(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && (c.CredentialID != cred.ID || c.Method == MethodPasskey)) {
		return nil, ErrChallengeNotFound
	}
	return c, err
}

// CountFailure adds a failure (why: a wrong security code, a refused
// enrolment) to the user's failures and reports whether the user is now
// locked.
func (e *Engine) CountFailure(ctx context.Context, userKey, why string) bool {
	return e.recordFailure(ctx, userKey, why, nil)
}
