package pushauth

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth/internal/limit"
)

// Lifecycle errors; the admin API answers them with 404 or 409.
var (
	ErrUnknownUser = errors.New("unknown user")
	ErrUserState   = errors.New("not allowed in the user's current state")
	ErrLocked      = errors.New("push authentication of this user is locked")
)

// userStripes serialise read-modify-write of one user's record within this
// process (admin operations and enrolment), so that they rarely conflict.
// Failure counting does not use them: it is one atomic step in the store
// (FailureCounter), across instances too, and UpdateUser's
// compare-and-set sees it.
var userStripes [64]sync.Mutex

func userLock(key string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return &userStripes[h.Sum32()%uint32(len(userStripes))]
}

// userUpdateTries bounds how often UpdateUser decides again on a record
// that changed under it (failures counted by parallel guesses).
const userUpdateTries = 8

// UpdateUser applies fn to the user's record (a fresh one when unknown,
// with exists false) and stores it unless fn returns an error. The write
// is a compare-and-set against the record fn saw: when the record changed
// in between (a failure counted, a lock taken, another instance's
// change), fn decides again on the new one, so a lock is never
// overwritten by a change read before it.
func (e *Engine) UpdateUser(ctx context.Context, key string, fn func(u *User, exists bool) error) (*User, error) {
	mu := userLock(key)
	mu.Lock()
	defer mu.Unlock()
	for try := 1; ; try++ {
		u, err := e.store.GetUser(ctx, key)
		exists := err == nil
		var old *User
		switch {
		case errors.Is(err, ErrNotFound):
			u = &User{Key: key, State: UserActive}
		case err != nil:
			e.StoreFailed("get_user", err)
			return nil, err
		default:
			cp := *u
			old = &cp
		}
		if err := fn(u, exists); err != nil {
			return u, err
		}
		u.UpdatedAt = e.now()
		err = e.store.CompareAndPutUser(ctx, old, u)
		if errors.Is(err, ErrUserChanged) && try < userUpdateTries {
			continue
		}
		if err != nil {
			e.StoreFailed("put_user", err)
			return nil, fmt.Errorf("pushauth: updating user %q: %w", key, err)
		}
		return u, nil
	}
}

// recordFailure counts one failure (a denial, a fraud report, a wrong
// security code) and locks the user at MaxFailures consecutive failures.
// It reports whether the user is locked now.
func (e *Engine) recordFailure(ctx context.Context, key, why string, c *Challenge) bool {
	// A fraud report is the user telling us someone else has the password:
	// lock at once rather than wait for MaxFailures.
	fraud := c != nil && c.Fraud
	at := e.now()
	u, lockedNow, err := e.store.AddFailure(ctx, key, int(e.maxFailures.Load()), fraud, at)
	if err != nil {
		e.StoreFailed("add_failure", err)
		e.log.Warn("counting a failure", "user", key, "error", err)
		// The count may have been taken all the same (a primary whose
		// replicas did not acknowledge keeps it): a lock this call took
		// exists then, and must be audited and announced like any other.
		// The record carries this call's time only if this call wrote it,
		// and the count is at the limit only if the lock is new. The
		// caller is still told "not locked": a failover may lose the lock,
		// and a browser told "locked" must find it so afterwards.
		if u, rerr := e.store.GetUser(ctx, key); rerr == nil && u.State == UserLocked && u.UpdatedAt.Equal(at) &&
			(u.Failures == int(e.maxFailures.Load()) || fraud) {
			e.announceLock(ctx, u, why, c)
		}
		return false
	}
	if lockedNow {
		e.announceLock(ctx, u, why, c)
	}
	return u.State == UserLocked
}

// announceLock audits and announces the lock that u's failures took.
func (e *Engine) announceLock(ctx context.Context, u *User, why string, c *Challenge) {
	ev := AuditEvent{Type: AuditStateChange, User: u.Key, Credential: u.CredentialID, Outcome: string(UserLocked), Actor: "gateway",
		Detail: fmt.Sprintf("%d consecutive failures, last: %s", u.Failures, why)}
	if c != nil {
		ev.Challenge, ev.Rule, ev.ClientIP = c.ID, c.Rule, c.ClientIP
	}
	e.Record(ctx, ev)
	e.log.Warn("user locked", "user", u.Key, "failures", u.Failures, "last", why)
	_ = e.Announce(ctx, Announcement{Type: EventLocked, User: u.Key, Credential: u.CredentialID, ClientIP: ev.ClientIP,
		Actor: "gateway", Detail: ev.Detail})
}

// recordSuccess resets the consecutive-failure count and the push streak
// after an approval asked from clientIP.
func (e *Engine) recordSuccess(ctx context.Context, key, clientIP string) {
	if err := e.store.EndPushStreak(ctx, key, limit.AddressKey(clientIP), e.now()); err != nil {
		e.StoreFailed("end_push_streak", err)
		e.log.Warn("ending the push streak", "user", key, "error", err)
	}
	if err := e.store.ResetFailures(ctx, key, e.now()); err != nil {
		e.StoreFailed("reset_failures", err)
		e.log.Warn("resetting the failure count", "user", key, "error", err)
	}
}

// UserView is what the admin API shows about a user.
type UserView struct {
	Key          string    `json:"key"`
	State        UserState `json:"state"`
	Enrolled     bool      `json:"enrolled"`
	CredentialID string    `json:"credential_id,omitempty"`
	Failures     int       `json:"failures"`
	// Until is the end of the password-only grace of a suspended or
	// deregistered user.
	Until     *time.Time `json:"until,omitempty"`
	InGrace   bool       `json:"in_grace"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	// Recent lists the user's last challenge events, newest last.
	Recent []AuditEvent `json:"recent"`
}

// ShowUser returns the user's state and recent challenges.
func (e *Engine) ShowUser(ctx context.Context, key string) (*UserView, error) {
	u, err := e.store.GetUser(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownUser, key)
	}
	if err != nil {
		e.StoreFailed("get_user", err)
		return nil, err
	}
	v := &UserView{Key: u.Key, State: u.State, Enrolled: u.Enrolled(), CredentialID: u.CredentialID, Failures: u.Failures}
	if v.State == "" {
		v.State = UserActive
	}
	if !u.Until.IsZero() {
		t := u.Until
		v.Until = &t
		v.InGrace = e.now().Before(u.Until)
	}
	if !u.UpdatedAt.IsZero() {
		t := u.UpdatedAt
		v.UpdatedAt = &t
	}
	evs, err := e.cfg.Audit.Query(ctx, AuditQuery{User: key, Limit: 50})
	if err != nil {
		return nil, err
	}
	v.Recent = []AuditEvent{}
	for _, ev := range evs {
		if strings.HasPrefix(ev.Type, "challenge.") && ev.Type != AuditPushed {
			v.Recent = append(v.Recent, ev)
		}
	}
	if len(v.Recent) > 20 {
		v.Recent = v.Recent[len(v.Recent)-20:]
	}
	return v, nil
}

// adminChange runs one admin operation on a user and audits it with the
// actor who asked.
func (e *Engine) adminChange(ctx context.Context, key, action, actor string, fn func(u *User, exists bool) error) (*User, error) {
	if key == "" {
		return nil, fmt.Errorf("%w: empty user key", ErrUnknownUser)
	}
	var before UserState
	var beforeCred string
	u, err := e.UpdateUser(ctx, key, func(u *User, exists bool) error {
		before, beforeCred = u.State, u.CredentialID
		return fn(u, exists)
	})
	if err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("%s -> %s", before, u.State)
	if !u.Until.IsZero() {
		detail += " until " + u.Until.UTC().Format(time.RFC3339)
	}
	cred := u.CredentialID
	if cred == "" {
		cred = beforeCred
	}
	e.Record(ctx, AuditEvent{Type: AuditAdmin, User: key, Credential: cred, Outcome: action, Actor: actor, Detail: detail})
	return u, nil
}

func stateErr(u *User, want string) error {
	return fmt.Errorf("%w: user %q is %s%s, %s", ErrUserState, u.Key, u.State, map[bool]string{true: " without a phone", false: ""}[u.CredentialID == ""], want)
}

// Suspend suspends a bound user's push authentication: until the deadline
// the password alone is accepted; after it, step-up-required users are
// refused and others follow the rule's not_enrolled, until Resume.
func (e *Engine) Suspend(ctx context.Context, key string, until time.Time, actor string) (*User, error) {
	u, err := e.adminChange(ctx, key, "suspend", actor, func(u *User, exists bool) error {
		if !exists {
			return fmt.Errorf("%w: %q", ErrUnknownUser, key)
		}
		if u.CredentialID == "" || (u.State != UserActive && u.State != UserSuspended) {
			return stateErr(u, "only a user with an active phone can be suspended")
		}
		u.State, u.Until = UserSuspended, until
		return nil
	})
	if err == nil {
		e.announceChange(ctx, u, EventSuspended, actor, "password only until "+until.UTC().Format(time.RFC3339))
	}
	return u, err
}

// Resume ends a suspension: the next login is challenged again.
func (e *Engine) Resume(ctx context.Context, key, actor string) (*User, error) {
	return e.adminChange(ctx, key, "resume", actor, func(u *User, exists bool) error {
		if !exists {
			return fmt.Errorf("%w: %q", ErrUnknownUser, key)
		}
		if u.State != UserSuspended {
			return stateErr(u, "only a suspended user can be resumed")
		}
		u.State, u.Until = UserActive, time.Time{}
		return nil
	})
}

// Unlock lifts a lock after failures and clears the failure count.
func (e *Engine) Unlock(ctx context.Context, key, actor string) (*User, error) {
	return e.adminChange(ctx, key, "unlock", actor, func(u *User, exists bool) error {
		if !exists {
			return fmt.Errorf("%w: %q", ErrUnknownUser, key)
		}
		if u.State != UserLocked && u.Failures == 0 {
			return stateErr(u, "not locked")
		}
		if u.State == UserLocked {
			u.State = UserActive
		}
		u.Failures = 0
		return nil
	})
}

// Deregister removes the user's phone (lost, changed, stopped): the
// password alone is accepted until graceUntil; then step-up-required users
// must enrol again.
func (e *Engine) Deregister(ctx context.Context, key string, graceUntil time.Time, actor string) (*User, error) {
	u, err := e.adminChange(ctx, key, "deregister", actor, func(u *User, exists bool) error {
		if !exists {
			return fmt.Errorf("%w: %q", ErrUnknownUser, key)
		}
		if u.CredentialID == "" {
			return stateErr(u, "there is no phone to deregister")
		}
		u.PreviousCredentialID = u.CredentialID
		u.CredentialID, u.State, u.Until, u.Failures = "", UserDeregistered, graceUntil, 0
		return nil
	})
	if err == nil {
		e.announceChange(ctx, u, EventPhoneDeregistered, actor, "password only until "+graceUntil.UTC().Format(time.RFC3339))
	}
	return u, err
}

// Unbind removes the user's phone with no grace at all (support staff
// undoing a wrong binding).
func (e *Engine) Unbind(ctx context.Context, key, actor string) (*User, error) {
	u, err := e.adminChange(ctx, key, "unbind", actor, func(u *User, exists bool) error {
		if !exists {
			return fmt.Errorf("%w: %q", ErrUnknownUser, key)
		}
		if u.CredentialID == "" {
			return stateErr(u, "there is no phone to unbind")
		}
		u.PreviousCredentialID = u.CredentialID
		u.CredentialID, u.State, u.Until, u.Failures = "", UserDeregistered, e.now(), 0
		return nil
	})
	if err == nil {
		e.announceChange(ctx, u, EventPhoneDeregistered, actor, "no grace period")
	}
	return u, err
}

// announceChange tells the customer about an admin change to u that took
// place; the change stands whether or not the message could be queued.
func (e *Engine) announceChange(ctx context.Context, u *User, event, actor, detail string) {
	cred := u.CredentialID
	if cred == "" {
		cred = u.PreviousCredentialID
	}
	_ = e.Announce(ctx, Announcement{Type: event, User: u.Key, Credential: cred, Actor: actor, Detail: detail})
}

// TestPushKind is the kind of the push sent right after a binding, so the
// user sees at once that the phone receives the gateway's pushes. Its
// challenge_id ("test-…") names no challenge; apps show a confirmation.
const TestPushKind = "test"

// ReplacedPushKind is the kind of the push that tells a phone another one
// replaced it for a user (challenge_id "notice-…", naming no challenge).
const ReplacedPushKind = "replaced"

// SendNotice sends a push of kind that names no challenge (challenge id
// "test-…" or "notice-…"), audits its result and returns it: sent, poll
// (the app has no push channel), dead_token or failed.
func (e *Engine) SendNotice(ctx context.Context, cred *Credential, userKey, kind, detail string) string {
	result := "poll"
	if p := e.pusher(cred.Platform); p != nil && cred.Platform != "none" && !cred.TokenDead {
		id, err := RandomID()
		if err != nil {
			return "failed"
		}
		prefix := "notice-"
		if kind == TestPushKind {
			prefix = "test-"
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err = p.Push(pctx, cred, PushMessage{ChallengeID: prefix + id, Kind: kind, UserKey: userKey, ExpiresAt: e.now().Add(time.Minute)})
		switch {
		case err == nil:
			result = "sent"
		case errors.Is(err, ErrDeadToken):
			result = "dead_token"
			e.markTokenDead(cred.ID)
		default:
			result = "failed"
		}
	}
	e.Record(ctx, AuditEvent{Type: AuditPushed, User: userKey, Credential: cred.ID, Outcome: result, Detail: detail})
	return result
}

// Access is what the user's state allows for a request a rule matched.
type Access int

// The answers of AccessFor.
const (
	// AccessChallenge: an active, bound user; ask the phone.
	AccessChallenge Access = iota
	// AccessPassword: forward without a push (within a grace period, or a
	// rule that allows users without a phone).
	AccessPassword
	// AccessLocked: refused until the bank unlocks.
	AccessLocked
	// AccessSuspended: suspended and the grace period is over.
	AccessSuspended
	// AccessReenrol: deregistered and the grace period is over; the user
	// must register a phone again.
	AccessReenrol
	// AccessNotEnrolled: never had a phone and the rule denies such users.
	AccessNotEnrolled
)

func (a Access) String() string {
	return [...]string{"challenge", "password", "locked", "suspended", "reenrol", "not_enrolled"}[a]
}

// AccessFor decides what u gets at now for a request matched by rule.
// stepUp says whether the policy marks the user as needing step-up: such
// users are refused once a grace period has ended; others follow the
// rule's not_enrolled.
func AccessFor(u *User, rule *policy.Rule, stepUp bool, now time.Time) Access {
	if u.State == UserLocked {
		return AccessLocked
	}
	if u.Enrolled() {
		return AccessChallenge
	}
	refused := AccessNotEnrolled
	switch u.State {
	case UserSuspended, UserDeregistered:
		if now.Before(u.Until) {
			return AccessPassword
		}
		refused = AccessReenrol
		if u.State == UserSuspended {
			refused = AccessSuspended
		}
		if stepUp {
			return refused
		}
	}
	if rule.NotEnrolled == policy.ActionAllow {
		return AccessPassword
	}
	return refused
}
