package pushauth

import (
	"context"
	"errors"
	"fmt"
)

// Concurrent challenges for one user.
//
// Under code transfer each browser shows its own code and the phone's
// approval must carry it, so several challenges of one user can be pending
// at once: the code typed into the phone decides which one is approved,
// and approving one never releases another. Under approve-only rules the
// phone cannot tell two challenges of one user apart (same contract, same
// user), so an approval meant for one could release the other (the
// supersede race): a second challenge while one is pending stops both.
// The same holds when one of the two is a code-transfer challenge and the
// other approve-only, in either order: the approve-only prompt needs no
// code, so the customer's tap could land on it.
//
// Every Store applies these rules in CreateChallenge, atomically across
// instances (PendingRule).

// MaxPendingPerUser bounds the code-transfer challenges of one user
// pending at once. A further one is refused (ErrTooManyPending), never
// made to silently replace one that a browser is waiting on: the customer
// denies or waits out the prompts she does not recognise, then tries again.
const MaxPendingPerUser = 3

// ErrTooManyPending refuses a challenge while MaxPendingPerUser
// code-transfer challenges of the same user are pending. Nothing is
// stored; the gate answers 429.
var ErrTooManyPending = errors.New("too many approval requests of this user are pending")

// ReasonAnotherLogin is why a challenge was stopped (StatusSuperseded):
// another challenge of the same user started while it was pending and at
// least one of them was approve-only, so both were stopped. The device API
// shows it as the challenge's reason.
const ReasonAnotherLogin = "another_login_started"

// StopReason says why c was stopped without a decision, "" when it was
// not (pending, decided, expired, cancelled).
func (c *Challenge) StopReason() string {
	if c.Status == StatusSuperseded {
		return ReasonAnotherLogin
	}
	return ""
}

// PendingRule is what CreateChallenge does with the pending challenges of
// c's user (status pending, their records as stored) when c arrives:
//
//   - those that expired by c's creation (nobody resolved them yet) are
//     superseded: they count for nothing; so are the user's pending
//     passkey challenges when c is one (a reload of the waiting page, a
//     second try: only the browser with the authenticator approves them,
//     and the phone never showed them);
//   - when c and every one still live transfer a code, the live ones stay
//     pending beside c, up to MaxPendingPerUser in all (more: ErrTooManyPending,
//     nothing changes);
//   - otherwise (c or one of them approve-only) every one is superseded.
//
// It returns the challenges to supersede. The Redis store's script
// applies the same rule.
func PendingRule(pending []*Challenge, c *Challenge) (supersede []*Challenge, err error) {
	var live []*Challenge
	allCode := c.BoundToItsBrowser()
	for _, p := range pending {
		if !c.CreatedAt.Before(p.ExpiresAt) || replacesPasskey(c, p) {
			supersede = append(supersede, p)
			continue
		}
		live = append(live, p)
		allCode = allCode && p.BoundToItsBrowser()
	}
	if !allCode {
		return append(supersede, live...), nil
	}
	if len(live) >= MaxPendingPerUser {
		return nil, ErrTooManyPending
	}
	return supersede, nil
}

// BoundToItsBrowser reports whether only its own browser can approve c: by
// the code it shows (code transfer) or by an assertion over its context
// (a passkey challenge, never shown to the phone). Such challenges can be
// pending side by side; an approve-only one cannot.
func (c *Challenge) BoundToItsBrowser() bool {
	return c.CodeDigits > 0 || c.Method == MethodPasskey
}

// replacesPasskey reports whether c, arriving, replaces pending p: both
// are passkey challenges of one user.
func replacesPasskey(c, p *Challenge) bool {
	return c.Method == MethodPasskey && p.Method == MethodPasskey
}

// StoppedPushKind is the kind of the push telling the phone that a
// challenge it may show was stopped (StopReason): its challenge_id names
// that challenge, whose view over the device API carries the reason.
const StoppedPushKind = "stopped"

// tellStopped pushes the phone a notice that challenge id, which it was
// shown, was stopped (the one that stopped it was never pushed: one notice
// per collision says both were stopped); rec is its record when at hand,
// else c (the challenge that stopped it) gives the push its deadline.
// Polling phones read the same from the challenge's view. A full queue
// only loses the notice.
func (e *Engine) tellStopped(cred *Credential, id string, rec, c *Challenge) {
	n := &Challenge{ID: id, Kind: c.Kind, UserKey: c.UserKey, ExpiresAt: c.ExpiresAt}
	if rec != nil {
		n.Kind, n.ExpiresAt = rec.Kind, rec.ExpiresAt
	}
	_ = e.dispatch.enqueueJob(pushJob{cred: cred, c: n, kind: StoppedPushKind})
}

// reportStopped takes a fraud report on a challenge stopped because
// another sign-in started (StopReason): the customer telling us the other
// one was not hers, so someone else has her password or session. It locks
// at once and is announced like any fraud report; the challenge stays as
// it is. Taken once per challenge.
func (e *Engine) reportStopped(ctx context.Context, c *Challenge) (*Challenge, error) {
	fresh, err := e.store.UseJTI(ctx, "stopped-fraud/"+c.ID, c.ExpiresAt.Add(e.cfg.Retain))
	if err != nil {
		e.StoreFailed("use_jti", err)
		return nil, fmt.Errorf("pushauth: recording the fraud report on %s: %w", c.ID, err)
	}
	if !fresh {
		return c, fmt.Errorf("%w: already reported as fraud", ErrConflict)
	}
	e.log.Warn("fraud reported on a stopped challenge", "challenge", c.ID, "user", c.UserKey, "credential", c.CredentialID, "rule", c.Rule)
	_ = e.Announce(ctx, Announcement{Type: EventFraudReported, User: c.UserKey, Credential: c.CredentialID,
		ClientIP: c.ClientIP, Actor: "phone", Detail: "reported as fraud after another sign-in stopped it: " + c.Kind + " (" + c.Rule + ")"})
	reported := *c
	reported.Fraud = true
	e.recordFailure(ctx, c.UserKey, "fraud report", &reported)
	return c, nil
}

// tooManyPending refuses a challenge over MaxPendingPerUser, audited.
func (e *Engine) tooManyPending(ctx context.Context, user *User, cred *Credential, spec ChallengeSpec) error {
	e.log.Warn("challenge refused: too many pending for the user", "user", user.Key, "rule", spec.Rule, "client_ip", spec.ClientIP, "max", MaxPendingPerUser)
	e.cfg.Metrics.ChallengeOutcome(spec.Rule, "too_many_pending")
	e.RecordAggregated(ctx, AuditEvent{Type: AuditRefused, User: user.Key, Credential: cred.ID, Rule: spec.Rule,
		ClientIP: spec.ClientIP, Outcome: "too_many_pending", Actor: "gateway", Service: spec.Service, Host: spec.Host,
		Detail: fmt.Sprintf("%d code-transfer challenges of the user are pending already", MaxPendingPerUser)},
		"too_many_pending\x00"+user.Key)
	return fmt.Errorf("pushauth: user %q: %w", user.Key, ErrTooManyPending)
}
