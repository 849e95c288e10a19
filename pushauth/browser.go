package pushauth

import (
	"context"
	"errors"
	"fmt"
)

// Resend pushes a pending challenge again (the waiting page's button),
// within the user's push budget.
func (e *Engine) Resend(ctx context.Context, c *Challenge) error {
	if c.Status != StatusPending || !e.now().Before(c.ExpiresAt) {
		return fmt.Errorf("%w: it is %s", ErrConflict, c.Status)
	}
	if c.Method == MethodPasskey {
		return fmt.Errorf("%w: a passkey challenge is not pushed", ErrConflict)
	}
	if err := e.allowPush(ctx, c.UserKey, c.ClientIP); err != nil {
		return err
	}
	if err := e.allowStreak(ctx, c.UserKey, c.ClientIP, c.Rule); err != nil {
		return err
	}
	cred, err := e.store.GetCredential(ctx, c.CredentialID)
	if err != nil {
		return err
	}
	return e.dispatch.enqueue(cred, c)
}

// CancelFromBrowser closes a pending challenge the user cancelled on the
// waiting page, audited and counted like every other outcome. A decision
// that won the race is returned as it stands.
func (e *Engine) CancelFromBrowser(ctx context.Context, id string) (*Challenge, error) {
	cur, err := e.store.Resolve(ctx, id, StatusCancelled, false, e.now())
	if errors.Is(err, ErrConflict) {
		return cur, nil
	}
	if err != nil {
		e.StoreFailed("resolve", err)
		return nil, err
	}
	e.log.Info("challenge cancelled from the waiting page", "challenge", id, "user", cur.UserKey)
	e.challengeClosed(ctx, cur, "browser")
	return cur, nil
}

// ApproveWithCode approves a pending challenge after its user typed a
// valid security code (the caller checked it).
func (e *Engine) ApproveWithCode(ctx context.Context, id string) (*Challenge, error) {
	c, err := e.store.Resolve(ctx, id, StatusApproved, false, e.now())
	if err != nil {
		return c, err
	}
	e.log.Info("challenge decided", "challenge", id, "user", c.UserKey, "rule", c.Rule, "outcome", string(StatusApproved), "via", "otp")
	e.afterDecision(ctx, c, "browser (security code)", "")
	return c, nil
}
