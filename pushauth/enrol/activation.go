package enrol

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/internal/actcode"
)

// maxActivationFailures voids a code after this many wrong tries (each
// also counts toward the user's lock).
const maxActivationFailures = 5

// IssueActivationCode creates the user's activation code of kind
// (pushauth.ActivationBinding or pushauth.ActivationRecovery), valid for
// the longest validity of that kind the loaded policies allow (see
// pushauth.Engine.AddPolicy; each site still refuses it past its own),
// replacing any code the user had. The code is returned once, for the
// bank to hand over; the store keeps its hash.
func (b *Binder) IssueActivationCode(ctx context.Context, userKey, kind, actor string) (string, *pushauth.ActivationCode, error) {
	if userKey == "" {
		return "", nil, fmt.Errorf("%w: empty user key", pushauth.ErrUnknownUser)
	}
	switch kind {
	case pushauth.ActivationBinding, pushauth.ActivationRecovery:
	default:
		return "", nil, fmt.Errorf("%w: activation code kind %q: must be %s or %s", ErrBadInput, kind, pushauth.ActivationBinding, pushauth.ActivationRecovery)
	}
	valid := b.activationValidity(kind)
	u, err := b.store.GetUser(ctx, userKey)
	switch {
	case err == nil && u.State == pushauth.UserLocked:
		return "", nil, fmt.Errorf("%w: user %q is locked; unlock first", pushauth.ErrUserState, userKey)
	case err != nil && !errors.Is(err, pushauth.ErrNotFound):
		b.e.StoreFailed("get_user", err)
		return "", nil, err
	}
	code, err := actcode.New()
	if err != nil {
		return "", nil, err
	}
	id, err := pushauth.RandomID()
	if err != nil {
		return "", nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", nil, err
	}
	now := b.e.Now()
	c := &pushauth.ActivationCode{ID: id, User: userKey, Kind: kind, Salt: salt,
		Hash: actcode.Hash(userKey, actcode.Normal(code), salt), IssuedAt: now, ExpiresAt: now.Add(valid), IssuedBy: actor}
	if err := b.store.PutActivationCode(ctx, c); err != nil {
		b.e.StoreFailed("put_activation_code", err)
		return "", nil, err
	}
	b.e.Record(ctx, pushauth.AuditEvent{Type: pushauth.AuditAdmin, User: userKey, Outcome: "activation_code", Actor: actor,
		Detail: fmt.Sprintf("%s code %s issued, valid until %s", kind, id, c.ExpiresAt.UTC().Format(time.RFC3339))})
	return code, c, nil
}

// checkActivationCode compares a typed code with the user's outstanding
// one and takes it when it matches and is within the validity en (the
// site's policy) gives its kind; a wrong one counts against the code and
// voids it at maxActivationFailures.
func (b *Binder) checkActivationCode(ctx context.Context, userKey, typed string, en policy.Enrolment) (*pushauth.ActivationCode, error) {
	c, err := b.store.GetActivationCode(ctx, userKey)
	if errors.Is(err, pushauth.ErrNotFound) {
		// As slow as a wrong code: the answer's time does not tell whether
		// the user has a code.
		actcode.Hash(userKey, actcode.Normal(typed), make([]byte, 16))
		return nil, ErrBadActivationCode
	}
	if err != nil {
		b.e.StoreFailed("get_activation_code", err)
		return nil, err
	}
	norm := actcode.Normal(typed)
	if norm == "" || subtle.ConstantTimeCompare(actcode.Hash(userKey, norm, c.Salt), c.Hash) != 1 {
		n, err := b.store.CountActivationFailure(ctx, userKey, c.ID)
		if err == nil && n >= maxActivationFailures {
			_, _ = b.store.TakeActivationCode(ctx, userKey, c.ID)
			b.e.Logger().Warn("activation code voided after repeated wrong tries", "user", userKey, "code_id", c.ID)
		}
		return nil, ErrBadActivationCode
	}
	if !b.e.Now().Before(c.IssuedAt.Add(codeValidity(en, c.Kind))) {
		// Issued for a site whose policy allows longer: expired here.
		return nil, ErrBadActivationCode
	}
	ok, err := b.store.TakeActivationCode(ctx, userKey, c.ID)
	if err != nil {
		b.e.StoreFailed("take_activation_code", err)
		return nil, err
	}
	if !ok {
		return nil, ErrBadActivationCode // used by a request that won the race
	}
	return c, nil
}

// activationValidity is how long an activation code of kind issued now is
// valid: the longest any loaded policy allows (the default when none is
// loaded).
func (b *Binder) activationValidity(kind string) time.Duration {
	loaded := b.e.Enrolments()
	if len(loaded) == 0 {
		loaded = []policy.Enrolment{policy.DefaultEnrolment()}
	}
	var d time.Duration
	for _, p := range loaded {
		d = max(d, codeValidity(p, kind))
	}
	return d
}
