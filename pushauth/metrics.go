package pushauth

import (
	"context"
	"errors"
	"time"
)

// Metrics receives the engine's measurements. The caddymodule package
// implements it with Prometheus collectors; the default discards them.
// Every method must be safe for concurrent use and must not block.
type Metrics interface {
	// ChallengeOutcome counts a challenge that reached a final state or was
	// created: outcome is "created", "approved", "denied", "expired",
	// "cancelled" or "superseded"; or one refused before it was created:
	// "push_streak" (the pushes since the user's last approval,
	// PushStreakLimits) or "too_many_pending" (MaxPendingPerUser).
	ChallengeOutcome(rule, outcome string)
	// Held moves the number of requests held right now by delta.
	Held(delta int)
	// ApprovalLatency records how long an approved challenge waited.
	ApprovalLatency(d time.Duration)
	// PushResult counts one push send: provider is the credential platform
	// (apns, fcm, webhook), result "sent", "dead_token", "failed" or
	// "queue_full".
	PushResult(provider, result string)
	// StoreError counts a store operation that failed.
	StoreError(op string)
}

// NopMetrics discards every measurement.
type NopMetrics struct{}

func (NopMetrics) ChallengeOutcome(string, string) {}
func (NopMetrics) Held(int)                        {}
func (NopMetrics) ApprovalLatency(time.Duration)   {}
func (NopMetrics) PushResult(string, string)       {}
func (NopMetrics) StoreError(string)               {}

// StoreFailed counts a failed store operation op (not a miss or a lost
// race); the gate and the APIs report the ones they meet.
func (e *Engine) StoreFailed(op string, err error) {
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrExists) {
		e.cfg.Metrics.StoreError(op)
	}
}

// measuredPusher wraps a platform's sender so every send is counted and
// audited, whatever the sender.
type measuredPusher struct {
	e        *Engine
	platform string
	next     Pusher
}

// Allowed forwards the webhook allow-list check of the wrapped sender.
func (p *measuredPusher) Allowed(target string) bool {
	a, ok := p.next.(interface{ Allowed(string) bool })
	return ok && a.Allowed(target)
}

func (p *measuredPusher) Push(ctx context.Context, cred *Credential, m PushMessage) error {
	err := p.next.Push(ctx, cred, m)
	result := "sent"
	switch {
	case errors.Is(err, ErrDeadToken):
		result = "dead_token"
	case err != nil:
		result = "failed"
	}
	p.e.cfg.Metrics.PushResult(p.platform, result)
	if m.Kind != TestPushKind {
		p.e.Record(context.WithoutCancel(ctx), AuditEvent{
			Type: AuditPushed, User: m.UserKey, Credential: cred.ID, Challenge: m.ChallengeID,
			Outcome: result, Detail: p.platform,
		})
	}
	return err
}
