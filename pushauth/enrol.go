package pushauth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/onepush/onepush/policy"
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

// defaultUnboundCredentialTTL is how long a registered credential waits
// for a user to bind it.
const defaultUnboundCredentialTTL = 15 * time.Minute

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

// startBinding sets up what binding a phone needs: the policy's defaults,
// the limits and the audit aggregation.
func (e *Engine) startBinding(cfg Config) error {
	e.enrolLimit = limit.NewRate(10000, enrolPerIPInterval, enrolPerIPBurst, enrolPerSecond)
	e.enrolAudit = newAuditAggregator(e, auditWindow, maxAggregates)
	e.refusals = newAuditAggregator(e, auditWindow, maxAggregates)
	e.announced = make(chan struct{}, 1)
	return nil
}

func (e *Engine) stopBinding() {
	if e.enrolAudit != nil {
		e.enrolAudit.close()
	}
	if e.refusals != nil {
		e.refusals.close()
	}
}

// codeValidity is how long p lets an activation code of kind be used.
func codeValidity(p policy.Enrolment, kind string) time.Duration {
	if kind == ActivationRecovery {
		return p.RecoveryCodeValidity
	}
	return p.BindingCodeValidity
}

// ProofFor is what binding a phone to u takes besides the phone's code,
// under the enrolment section p of the policy of the site it is bound on.
func ProofFor(u *User, p policy.Enrolment) policy.Proof {
	if u.HadPhone() {
		return p.Replace
	}
	return p.First
}

// EnrolAttempt is one post of the enrolment form.
type EnrolAttempt struct {
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
func (e *Engine) Enroll(ctx context.Context, a EnrolAttempt) (*Credential, error) {
	credID := normalCredID(a.CredentialID)
	if !plausibleCredID(credID) {
		// Typed by anyone: nothing else reaches the audit trail or the
		// customer's notification.
		credID = "(malformed)"
	}
	u := &User{Key: a.User, State: UserActive}
	refuse := func(err error, outcome string, counts bool) (*Credential, error) {
		e.enrolRefused(ctx, a, u, credID, outcome, counts)
		return nil, err
	}
	// The address's budget first: a flood costs no store round trip.
	if !e.enrolLimit.Allow(a.ClientIP) {
		return refuse(ErrEnrolRateLimited, "rate_limited_address", false)
	}
	stored, err := e.store.GetUser(ctx, a.User)
	switch {
	case err == nil:
		u = stored
	case !errors.Is(err, ErrNotFound):
		e.StoreFailed("get_user", err)
		return nil, err
	}
	if ok, err := e.useSlot(ctx, "enrol/"+a.User, enrolPerUser, enrolUserWindow); err != nil {
		return nil, err
	} else if !ok {
		return refuse(ErrEnrolRateLimited, "rate_limited_user", false)
	}
	if u.State == UserLocked {
		return refuse(ErrLocked, "locked", false)
	}
	cred, err := e.store.GetCredential(ctx, credID)
	if errors.Is(err, ErrNotFound) {
		return refuse(ErrUnknownCredential, "unknown_credential", true)
	}
	if err != nil {
		e.StoreFailed("get_credential", err)
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
	bound := u.CredentialID != "" && u.State != UserDeregistered
	switch {
	case proof == policy.ProofSupport:
		return refuse(ErrSupportOnly, "support_only", true)
	case a.ActivationCode != "":
	case bound:
		return refuse(ErrAlreadyBound, "already_bound", true)
	case proof == policy.ProofActivationCode:
		return refuse(ErrActivationRequired, "activation_code_required", true)
	case !a.PasswordProven:
		return refuse(ErrLoginNotConfirmed, "login_not_confirmed", true)
	}
	switch ok, err := e.CheckCode(ctx, cred, a.Code); {
	case errors.Is(err, ErrCodeUsed):
		return refuse(ErrBadCode, "code_used", false) // no guess: not counted
	case err != nil:
		return nil, err // a store error is not a wrong code: nothing counted or announced
	case !ok:
		return refuse(ErrBadCode, "bad_code", true)
	}
	via := "password"
	if a.ActivationCode != "" {
		code, err := e.checkActivationCode(ctx, u.Key, a.ActivationCode, en)
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
	allowed := func(cur *User) error {
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
	bc, err := e.bind(ctx, u.Key, cred, a.ActivationCode != "", via, a.ClientIP, "browser", allowed)
	switch {
	case errors.Is(err, ErrSupportOnly):
		return refuse(err, "support_only", true)
	case errors.Is(err, ErrActivationRequired):
		return refuse(err, "activation_code_required", true)
	case err == nil:
		// Binding was a successful authentication from this address: it
		// starts her push streak afresh, with this address as her own.
		if err := e.store.EndPushStreak(ctx, u.Key, limit.AddressKey(a.ClientIP), e.now()); err != nil {
			e.StoreFailed("end_push_streak", err)
			e.log.Warn("ending the push streak", "user", u.Key, "error", err)
		}
	}
	return bc, err
}

// bind binds cred to key, replacing a current phone only when replace
// says the proof allows it and allowed (when not nil) accepts the user's
// record as it is under the user's lock, announces it (the announcement is
// queued first: a binding the customer is not told about must not happen)
// and tells the phone it replaces.
func (e *Engine) bind(ctx context.Context, key string, cred *Credential, replace bool, via, clientIP, actor string, allowed func(*User) error) (*Credential, error) {
	cur, err := e.store.GetUser(ctx, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		e.StoreFailed("get_user", err)
		return nil, err
	}
	ev := Announcement{Type: EventPhoneBound, User: key, Credential: cred.ID, Via: via, ClientIP: clientIP, Actor: actor}
	prev := ""
	if cur.HadPhone() {
		ev.Type = EventPhoneReplaced
		prev = cur.PreviousCredentialID
		if cur.CredentialID != "" {
			prev = cur.CredentialID
		}
		if prev != cred.ID {
			ev.PreviousCredential = prev
		}
	}
	if err := e.announce(ctx, ev); err != nil {
		return nil, err
	}
	if !cred.ExpiresAt.IsZero() {
		// Bound now: the credential no longer expires.
		cred.ExpiresAt = time.Time{}
		if err := e.store.PutCredential(ctx, cred); err != nil {
			e.StoreFailed("put_credential", err)
			return nil, err
		}
	}
	_, err = e.updateUser(ctx, key, func(u *User, _ bool) error {
		if allowed != nil {
			if err := allowed(u); err != nil {
				return err
			}
		}
		if err := bindable(u); err != nil && !(replace && errors.Is(err, ErrAlreadyBound)) {
			return err // re-checked under the user's lock
		}
		if u.CredentialID != "" && u.CredentialID != cred.ID {
			u.PreviousCredentialID = u.CredentialID
		}
		u.CredentialID, u.State, u.Failures, u.Until = cred.ID, UserActive, 0, time.Time{}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrLocked) || errors.Is(err, ErrAlreadyBound) {
			e.Record(ctx, AuditEvent{Type: AuditEnrolment, User: key, Credential: cred.ID, ClientIP: clientIP, Outcome: "already_bound", Actor: actor})
		}
		return nil, err
	}
	e.log.Info("user enrolled", "user", key, "credential", cred.ID, "via", via)
	e.Record(ctx, AuditEvent{Type: AuditEnrolment, User: key, Credential: cred.ID, ClientIP: clientIP, Outcome: "bound", Actor: actor,
		Detail: "via " + via + map[bool]string{true: ", replacing " + ev.PreviousCredential, false: ""}[ev.PreviousCredential != ""]})
	if ev.PreviousCredential != "" {
		if old, err := e.store.GetCredential(ctx, ev.PreviousCredential); err == nil {
			e.noticePush(ctx, old, key, ReplacedPushKind, "the phone was replaced by "+cred.ID)
		}
	}
	return cred, nil
}

// ReplacedPushKind is the kind of the push that tells a phone another one
// replaced it for a user (challenge_id "notice-…", naming no challenge).
const ReplacedPushKind = "replaced"

// enrolRefused records a refused enrolment attempt.
func (e *Engine) enrolRefused(ctx context.Context, a EnrolAttempt, u *User, credID, outcome string, counts bool) {
	e.log.Info("enrolment refused", "user", u.Key, "outcome", outcome, "client_ip", a.ClientIP)
	e.enrolAudit.add(ctx, "enrol\x00"+u.Key, AuditEvent{Type: AuditEnrolment, User: u.Key, Credential: credID,
		ClientIP: a.ClientIP, Outcome: outcome, Actor: "browser", Time: e.now()})
	if counts {
		e.recordFailure(ctx, u.Key, "refused enrolment ("+outcome+")", nil)
	}
	if !u.HadPhone() || outcome == "locked" || outcome == "rate_limited_address" || outcome == "rate_limited_user" {
		return
	}
	// Somebody with this user's password tried to bind a phone: tell the
	// customer, once an hour however often it is tried.
	window := e.now().Truncate(notifyRefusedEvery)
	fresh, err := e.store.UseJTI(ctx, "notify-refused/"+u.Key+"/"+strconv.FormatInt(window.Unix(), 10), window.Add(notifyRefusedEvery+time.Minute))
	if err != nil || !fresh {
		return
	}
	_ = e.announce(ctx, Announcement{Type: EventBindingRefused, User: u.Key, Credential: credID, ClientIP: a.ClientIP,
		Actor: "browser", Detail: "a phone was not bound: " + outcome})
}

// useSlot takes one of n single-use slots of key in the current window,
// through the store, so the budget holds across instances.
func (e *Engine) useSlot(ctx context.Context, key string, n int, window time.Duration) (bool, error) {
	start := e.now().Truncate(window)
	prefix := key + "/" + strconv.FormatInt(start.Unix(), 10) + "/"
	for i := range n {
		fresh, err := e.store.UseJTI(ctx, prefix+strconv.Itoa(i), start.Add(window+time.Minute))
		if err != nil {
			e.StoreFailed("use_jti", err)
			return false, fmt.Errorf("pushauth: rate limit %s: %w", key, err)
		}
		if fresh {
			return true, nil
		}
	}
	return false, nil
}
