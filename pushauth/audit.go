package pushauth

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// Audit event types.
const (
	AuditCreated     = "challenge.created"
	AuditPushed      = "challenge.pushed"
	AuditDecided     = "challenge.decided"
	AuditExpired     = "challenge.expired"
	AuditCancelled   = "challenge.cancelled"
	AuditSuperseded  = "challenge.superseded"
	AuditEnrolment   = "enrolment"
	AuditStateChange = "user.state"
	AuditRefused     = "request.refused"
	AuditAdmin       = "admin"

	// AuditSuspicious records a request that tried to use an approval
	// outside the session or browser it belongs to (a stolen session
	// riding on someone else's approval). Nothing was forwarded.
	AuditSuspicious = "request.suspicious"
)

// AuditEvent is one line of the audit trail. It never holds secrets:
// no codes, passwords, cookies or tokens.
type AuditEvent struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	User       string    `json:"user,omitempty"`
	Credential string    `json:"credential,omitempty"`
	Challenge  string    `json:"challenge,omitempty"`
	// Reference is the challenge's reference number, as its pages show it
	// to the customer (Reference): what a call centre searches for.
	Reference string `json:"reference,omitempty"`
	Rule      string `json:"rule,omitempty"`
	ClientIP  string `json:"client_ip,omitempty"`
	// Outcome is what happened: approved, denied, sent, bound, locked …
	Outcome string `json:"outcome,omitempty"`
	// Actor is who did it: "phone", "browser", "gateway", or the operator
	// named on an admin call.
	Actor string `json:"actor,omitempty"`
	// Detail is free text for humans (a reason, a deadline, a platform).
	Detail string `json:"detail,omitempty"`
	// Service and Host are the bank service the rule protects and the host
	// the request was sent to, where a request is concerned.
	Service string `json:"service,omitempty"`
	Host    string `json:"host,omitempty"`

	// Seq and Prev chain the trail (auditchain.go): Seq counts the events
	// of the store's trail, Prev is the hex SHA-256 of the previous
	// event's record. The store sets them when it appends.
	Seq  uint64 `json:"seq,omitempty"`
	Prev string `json:"prev,omitempty"`
}

// AuditQuery selects events: all set conditions must hold. Results are
// oldest first, at most Limit (default and maximum 1000), the newest ones
// when more match.
type AuditQuery struct {
	User  string
	Since time.Time
	Until time.Time
	Type  string
	Limit int
}

// MaxAuditQuery bounds one query's answer.
const MaxAuditQuery = 1000

// AuditLog keeps audit events. Implementations must be safe for
// concurrent use. A Redis-stream implementation shares the trail between
// instances, the embedded store keeps it in its file, the memory store in
// memory.
type AuditLog interface {
	Append(ctx context.Context, ev AuditEvent) error
	Query(ctx context.Context, q AuditQuery) ([]AuditEvent, error)
}

// audit stamps ev, writes it as a structured log line and appends it to
// the audit log. A failing audit log is logged and counted, never fatal
// to the request.
// Record writes ev to the audit trail and the log.
func (e *Engine) Record(ctx context.Context, ev AuditEvent) {
	if ev.Time.IsZero() {
		ev.Time = e.now()
	}
	if ev.Challenge != "" && ev.Reference == "" {
		ev.Reference = Reference(ev.Challenge)
	}
	attrs := []any{slog.String("type", ev.Type)}
	for _, kv := range [][2]string{
		{"user", ev.User}, {"credential", ev.Credential}, {"challenge", ev.Challenge}, {"reference", ev.Reference}, {"rule", ev.Rule},
		{"client_ip", ev.ClientIP}, {"outcome", ev.Outcome}, {"actor", ev.Actor}, {"detail", ev.Detail},
		{"service", ev.Service}, {"host", ev.Host},
	} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	e.log.Info("audit", attrs...)
	if err := e.cfg.Audit.Append(context.WithoutCancel(ctx), ev); err != nil {
		e.cfg.Metrics.StoreError("audit_append")
		e.log.Warn("audit log append failed", "type", ev.Type, "error", err)
	}
}

// RecordAggregated writes a refused or suspicious request's event through an
// aggregator, so that a flood of them cannot flush the audit trail (a
// shared, bounded log): the first event in each 10 s window for the given
// keys (a user or challenge, and the client's address: see addAny) is
// written as it comes, the rest of the window as one summary.
func (e *Engine) RecordAggregated(ctx context.Context, ev AuditEvent, keys ...string) {
	e.refusals.addAny(ctx, ev, keys...)
}

// Audit returns the engine's audit log.
func (e *Engine) Audit() AuditLog { return e.cfg.Audit }

// challengeClosed records a challenge that reached a final state.
func (e *Engine) challengeClosed(ctx context.Context, c *Challenge, actor string) {
	if c == nil || !c.Status.Final() {
		return
	}
	e.cfg.Metrics.ChallengeOutcome(c.Rule, string(c.Status))
	typ := AuditDecided
	switch c.Status {
	case StatusExpired:
		typ = AuditExpired
	case StatusCancelled:
		typ = AuditCancelled
	case StatusSuperseded:
		typ = AuditSuperseded
	case StatusApproved:
		if !c.DecidedAt.IsZero() && !c.DecidedAt.Before(c.CreatedAt) {
			e.cfg.Metrics.ApprovalLatency(c.DecidedAt.Sub(c.CreatedAt))
		}
	}
	detail := ""
	if c.Fraud {
		detail = "fraud reported"
	}
	e.Record(ctx, AuditEvent{Type: typ, User: c.UserKey, Credential: c.CredentialID, Challenge: c.ID, Rule: c.Rule,
		ClientIP: c.ClientIP, Outcome: string(c.Status), Actor: actor, Detail: detail, Service: c.Service, Host: c.Host})
}

// OnRequestPath reports whether ev is an event of a challenge or a refused
// request, which a held request would otherwise wait for: a store may append
// it after Append returns (a crash can lose the last moments of those).
// Events that record a durable change (enrolment, user state, admin
// operations) are kept before Append returns.
func (ev AuditEvent) OnRequestPath() bool {
	return strings.HasPrefix(ev.Type, "challenge.") || ev.Type == AuditRefused
}
