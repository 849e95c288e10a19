package enrol

import (
	"context"
	"errors"
	"fmt"

	"github.com/onepush/onepush/pushauth"
)

// Bind binds a registered credential to a user without a security code
// (support staff, after identifying the user another way; the only way
// under enrolment.replace: support). One phone per user, none while
// locked; the binding is announced like any other.
func (b *Binder) Bind(ctx context.Context, key, credID, actor string) (*pushauth.User, error) {
	if key == "" {
		return nil, fmt.Errorf("%w: empty user key", pushauth.ErrUnknownUser)
	}
	cred, err := b.store.GetCredential(ctx, normalCredID(credID))
	if errors.Is(err, pushauth.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", pushauth.ErrUnknownCredential, credID)
	}
	if err != nil {
		b.e.StoreFailed("get_credential", err)
		return nil, err
	}
	cur, err := b.store.GetUser(ctx, key)
	switch {
	case err == nil:
		if err := bindable(cur); err != nil {
			return nil, err
		}
	case !errors.Is(err, pushauth.ErrNotFound):
		b.e.StoreFailed("get_user", err)
		return nil, err
	}
	if _, err := b.bind(ctx, key, cred, false, "support", "", actor, nil); err != nil {
		return nil, err
	}
	b.e.Record(ctx, pushauth.AuditEvent{Type: pushauth.AuditAdmin, User: key, Credential: cred.ID, Outcome: "bind", Actor: actor})
	b.TestPush(ctx, cred, key)
	return b.store.GetUser(ctx, key)
}

// bindable refuses a new binding for a locked or already bound user.
func bindable(u *pushauth.User) error {
	switch {
	case u.State == pushauth.UserLocked:
		return pushauth.ErrLocked
	case u.CredentialID != "" && u.State != pushauth.UserDeregistered:
		return pushauth.ErrAlreadyBound
	}
	return nil
}

// TestPush sends the post-binding test push (pushauth.TestPushKind) and
// returns its result: sent, poll (the app has no push channel), dead_token
// or failed.
func (b *Binder) TestPush(ctx context.Context, cred *pushauth.Credential, userKey string) string {
	return b.e.SendNotice(ctx, cred, userKey, pushauth.TestPushKind, "test push after binding")
}
