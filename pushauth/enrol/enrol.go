// Package enrol binds a phone to a user: the enrolment form's proofs (the
// phone's code, the bank's login, activation codes) and support staff's binding.
package enrol

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/internal/limit"
)

// Enrolment refusals; the enrolment page answers each with its own page.
var (
	ErrActivationRequired = errors.New("binding a phone to this user needs an activation code from the bank")
	ErrBadActivationCode  = errors.New("activation code is wrong, expired or was already used")
	ErrSupportOnly        = errors.New("only the bank's staff can bind a phone to this user")
	ErrLoginNotConfirmed  = errors.New("the bank's answer to the login did not confirm the password")
	ErrEnrolRateLimited   = errors.New("too many enrolment attempts; try again later")
	// ErrBadInput is a malformed admin request (400).
	ErrBadInput = errors.New("bad input")
)

// Enrolment attempts allowed per user (across instances) in each window,
// and per client address (IPv6 by /64) on each instance: as many as
// registrations, since every honest attempt follows one; and on each
// instance in all.
const (
	enrolPerUser       = 10
	enrolUserWindow    = 15 * time.Minute
	enrolPerIPBurst    = 20
	enrolPerIPInterval = 6 * time.Second
	enrolPerSecond     = 500
	// notifyRefusedEvery bounds binding.refused messages per user.
	notifyRefusedEvery = time.Hour
)

// Binder binds phones to the users of one engine. Every site of the
// engine shares it: its limits count across them.
type Binder struct {
	e     *pushauth.Engine
	store pushauth.Store
	limit *limit.Rate               // enrolment attempts per client address
	audit *pushauth.AuditAggregator // refused attempts
}

// New starts binding phones to e's users (and registers itself for e's
// admin changes); closing e writes what its audit
// aggregation still counts.
func New(e *pushauth.Engine) *Binder {
	b := &Binder{e: e, store: e.Store(),
		limit: limit.NewRate(10000, enrolPerIPInterval, enrolPerIPBurst, enrolPerSecond),
		audit: pushauth.NewAuditAggregator(e)}
	e.UsePhoneBinder(b)
	return b
}

// codeValidity is how long p lets an activation code of kind be used.
func codeValidity(p policy.Enrolment, kind string) time.Duration {
	if kind == pushauth.ActivationRecovery {
		return p.RecoveryCodeValidity
	}
	return p.BindingCodeValidity
}

// ProofFor is what binding a phone to u takes besides the phone's code,
// under the enrolment section p of the policy of the site it is bound on.
func ProofFor(u *pushauth.User, p policy.Enrolment) policy.Proof {
	if u.HadPhone() {
		return p.Replace
	}
	return p.First
}

// Attempt is one post of the enrolment form.
type Attempt struct {
	// User is the user of the learned session or enrolment ticket the
	// form was posted with.
	User string
	// CredentialID and Code are what the new phone's app shows.
	CredentialID string
	Code         string
	// ActivationCode is the code the bank issued, as typed ("" if none).
	ActivationCode string
	// PasswordProven says the bank accepted the user's password, by the
	// login rule's success condition, in the login that led here.
	PasswordProven bool
	// ClientIP is the client address as Caddy's trusted proxies see it.
	ClientIP string
	// Enrolment is the enrolment section of the policy of the site the
	// form was posted on: what binding takes there. Zero fields take
	// policy.DefaultEnrolment's.
	Enrolment policy.Enrolment
}

// Enroll binds the phone of a.CredentialID to a.User after checking its
// current security code (RFC 6238, ±1 step, each code accepted once) and
// the proof the policy asks for: a login the bank accepted, for a user who
// never had a phone when enrolment.first is password; an activation code
// otherwise. A phone already bound is replaced only on an activation code.
// Every binding is announced (notify); every refusal except a rate limit
// or a lock counts toward the user's lock, is audited (aggregated) and,
// for a user who has or had a phone, announced at most once an hour.
func (b *Binder) Enroll(ctx context.Context, a Attempt) (*pushauth.Credential, error) {
	credID := normalCredID(a.CredentialID)
	if !plausibleCredID(credID) {
		// Typed by anyone: nothing else reaches the audit trail or the
		// customer's notification.
		credID = "(malformed)"
	}
	u := &pushauth.User{Key: a.User, State: pushauth.UserActive}
	refuse := func(err error, outcome string, counts bool) (*pushauth.Credential, error) {
		b.refused(ctx, a, u, credID, outcome, counts)
		return nil, err
	}
	// The address's budget first: a flood costs no store round trip.
	if !b.limit.Allow(a.ClientIP) {
		return refuse(ErrEnrolRateLimited, "rate_limited_address", false)
	}
	stored, err := b.store.GetUser(ctx, a.User)
	switch {
	case err == nil:
		u = stored
	case !errors.Is(err, pushauth.ErrNotFound):
		b.e.StoreFailed("get_user", err)
		return nil, err
	}
	if ok, err := b.useSlot(ctx, "enrol/"+a.User, enrolPerUser, enrolUserWindow); err != nil {
		return nil, err
	} else if !ok {
		return refuse(ErrEnrolRateLimited, "rate_limited_user", false)
	}
	if u.State == pushauth.UserLocked {
		return refuse(pushauth.ErrLocked, "locked", false)
	}
	cred, err := b.store.GetCredential(ctx, credID)
	if errors.Is(err, pushauth.ErrNotFound) {
		return refuse(pushauth.ErrUnknownCredential, "unknown_credential", true)
	}
	if err != nil {
		b.e.StoreFailed("get_credential", err)
		return nil, err
	}
	en := a.Enrolment
	def := policy.DefaultEnrolment()
	if en.First == "" {
		en.First = def.First
	}
	if en.Replace == "" {
		en.Replace = def.Replace
	}
	if en.BindingCodeValidity == 0 {
		en.BindingCodeValidity = def.BindingCodeValidity
	}
	if en.RecoveryCodeValidity == 0 {
		en.RecoveryCodeValidity = def.RecoveryCodeValidity
	}
	proof := ProofFor(u, en)
	bound := u.CredentialID != "" && u.State != pushauth.UserDeregistered
	switch {
	case proof == policy.ProofSupport:
		return refuse(ErrSupportOnly, "support_only", true)
	case a.ActivationCode != "":
	case bound:
		return refuse(pushauth.ErrAlreadyBound, "already_bound", true)
	case proof == policy.ProofActivationCode:
		return refuse(ErrActivationRequired, "activation_code_required", true)
	case !a.PasswordProven:
		return refuse(ErrLoginNotConfirmed, "login_not_confirmed", true)
	}
	switch ok, err := b.e.CheckCode(ctx, cred, a.Code); {
	case errors.Is(err, pushauth.ErrCodeUsed):
		return refuse(pushauth.ErrBadCode, "code_used", false) // no guess: not counted
	case err != nil:
		return nil, err // a store error is not a wrong code: nothing counted or announced
	case !ok:
		return refuse(pushauth.ErrBadCode, "bad_code", true)
	}
	via := "password"
	if a.ActivationCode != "" {
		code, err := b.checkActivationCode(ctx, u.Key, a.ActivationCode, en)
		if errors.Is(err, ErrBadActivationCode) {
			return refuse(err, "bad_activation_code", true)
		}
		if err != nil {
			return nil, err
		}
		via = code.Kind + "_code"
	}
	// The user's record may change between the read above and the binding
	// (another phone bound, the phone deregistered): what binding takes is
	// decided again under the user's lock, on the record being changed.
	allowed := func(cur *pushauth.User) error {
		switch p := ProofFor(cur, en); {
		case p == policy.ProofSupport:
			return ErrSupportOnly
		case a.ActivationCode != "":
			return nil
		case p == policy.ProofActivationCode:
			return ErrActivationRequired
		}
		return nil
	}
	bc, err := b.bind(ctx, u.Key, cred, a.ActivationCode != "", via, a.ClientIP, "browser", allowed)
	switch {
	case errors.Is(err, ErrSupportOnly):
		return refuse(err, "support_only", true)
	case errors.Is(err, ErrActivationRequired):
		return refuse(err, "activation_code_required", true)
	case err == nil:
		// Binding was a successful authentication from this address: it
		// starts her push streak afresh, with this address as her own.
		if err := b.store.EndPushStreak(ctx, u.Key, limit.AddressKey(a.ClientIP), b.e.Now()); err != nil {
			b.e.StoreFailed("end_push_streak", err)
			b.e.Logger().Warn("ending the push streak", "user", u.Key, "error", err)
		}
	}
	return bc, err
}

// bind binds cred to key, replacing a current phone only when replace
// says the proof allows it and allowed (when not nil) accepts the user's
// record as it is under the user's lock, announces it (the announcement is
// queued first: a binding the customer is not told about must not happen)
// and tells the phone it replaces.
func (b *Binder) bind(ctx context.Context, key string, cred *pushauth.Credential, replace bool, via, clientIP, actor string, allowed func(*pushauth.User) error) (*pushauth.Credential, error) {
	cur, err := b.store.GetUser(ctx, key)
	if err != nil && !errors.Is(err, pushauth.ErrNotFound) {
		b.e.StoreFailed("get_user", err)
		return nil, err
	}
	ev := pushauth.Announcement{Type: pushauth.EventPhoneBound, User: key, Credential: cred.ID, Via: via, ClientIP: clientIP, Actor: actor}
	prev := ""
	if cur.HadPhone() {
		ev.Type = pushauth.EventPhoneReplaced
		prev = cur.PreviousCredentialID
		if cur.CredentialID != "" {
			prev = cur.CredentialID
		}
		if prev != cred.ID {
			ev.PreviousCredential = prev
		}
	}
	if err := b.e.Announce(ctx, ev); err != nil {
		return nil, err
	}
	if !cred.ExpiresAt.IsZero() {
		// Bound now: the credential no longer expires.
		cred.ExpiresAt = time.Time{}
		if err := b.store.PutCredential(ctx, cred); err != nil {
			b.e.StoreFailed("put_credential", err)
			return nil, err
		}
	}
	_, err = b.e.UpdateUser(ctx, key, func(u *pushauth.User, _ bool) error {
		if allowed != nil {
			if err := allowed(u); err != nil {
				return err
			}
		}
		if err := bindable(u); err != nil && !(replace && errors.Is(err, pushauth.ErrAlreadyBound)) {
			return err // re-checked under the user's lock
		}
		if u.CredentialID != "" && u.CredentialID != cred.ID {
			u.PreviousCredentialID = u.CredentialID
		}
		u.CredentialID, u.State, u.Failures, u.Until = cred.ID, pushauth.UserActive, 0, time.Time{}
		return nil
	})
	if err != nil {
		if errors.Is(err, pushauth.ErrLocked) || errors.Is(err, pushauth.ErrAlreadyBound) {
			b.e.Record(ctx, pushauth.AuditEvent{Type: pushauth.AuditEnrolment, User: key, Credential: cred.ID, ClientIP: clientIP, Outcome: "already_bound", Actor: actor})
		}
		return nil, err
	}
	b.e.Logger().Info("user enrolled", "user", key, "credential", cred.ID, "via", via)
	b.e.Record(ctx, pushauth.AuditEvent{Type: pushauth.AuditEnrolment, User: key, Credential: cred.ID, ClientIP: clientIP, Outcome: "bound", Actor: actor,
		Detail: "via " + via + map[bool]string{true: ", replacing " + ev.PreviousCredential, false: ""}[ev.PreviousCredential != ""]})
	if ev.PreviousCredential != "" {
		if old, err := b.store.GetCredential(ctx, ev.PreviousCredential); err == nil {
			b.e.SendNotice(ctx, old, key, pushauth.ReplacedPushKind, "the phone was replaced by "+cred.ID)
		}
	}
	return cred, nil
}

// refused records a refused enrolment attempt.
func (b *Binder) refused(ctx context.Context, a Attempt, u *pushauth.User, credID, outcome string, counts bool) {
	b.e.Logger().Info("enrolment refused", "user", u.Key, "outcome", outcome, "client_ip", a.ClientIP)
	b.audit.Add(ctx, "enrol\x00"+u.Key, pushauth.AuditEvent{Type: pushauth.AuditEnrolment, User: u.Key, Credential: credID,
		ClientIP: a.ClientIP, Outcome: outcome, Actor: "browser", Time: b.e.Now()})
	if counts {
		b.e.CountFailure(ctx, u.Key, "refused enrolment ("+outcome+")")
	}
	if !u.HadPhone() || outcome == "locked" || outcome == "rate_limited_address" || outcome == "rate_limited_user" {
		return
	}
	// Somebody with this user's password tried to bind a phone: tell the
	// customer, once an hour however often it is tried.
	window := b.e.Now().Truncate(notifyRefusedEvery)
	fresh, err := b.store.UseJTI(ctx, "notify-refused/"+u.Key+"/"+strconv.FormatInt(window.Unix(), 10), window.Add(notifyRefusedEvery+time.Minute))
	if err != nil || !fresh {
		return
	}
	_ = b.e.Announce(ctx, pushauth.Announcement{Type: pushauth.EventBindingRefused, User: u.Key, Credential: credID, ClientIP: a.ClientIP,
		Actor: "browser", Detail: "a phone was not bound: " + outcome})
}

// useSlot takes one of n single-use slots of key in the current window,
// through the store, so the budget holds across instances.
func (b *Binder) useSlot(ctx context.Context, key string, n int, window time.Duration) (bool, error) {
	start := b.e.Now().Truncate(window)
	prefix := key + "/" + strconv.FormatInt(start.Unix(), 10) + "/"
	for i := range n {
		fresh, err := b.store.UseJTI(ctx, prefix+strconv.Itoa(i), start.Add(window+time.Minute))
		if err != nil {
			b.e.StoreFailed("use_jti", err)
			return false, fmt.Errorf("pushauth: rate limit %s: %w", key, err)
		}
		if fresh {
			return true, nil
		}
	}
	return false, nil
}

// normalCredID is how a typed credential ID is looked up.
func normalCredID(id string) string { return strings.ToUpper(strings.TrimSpace(id)) }

// plausibleCredID reports whether id could be a credential ID: "OP" and
// base32, within 64 characters.
func plausibleCredID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
