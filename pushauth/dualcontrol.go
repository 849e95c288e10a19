package pushauth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Admin changes and dual control (二人承認): where the bank names its
// operators, the changes an insider or a social engineer would abuse are
// entered by one operator and take effect only when a second one, a
// supervisor, approves them. Pending requests live in the store, so any
// instance sharing it can approve them.

// The admin operations an AdminChange names.
const (
	OpSuspend        = "suspend"
	OpResume         = "resume"
	OpUnlock         = "unlock"
	OpDeregister     = "deregister"
	OpBind           = "bind"
	OpUnbind         = "unbind"
	OpActivationCode = "activation-code"
)

// AdminOps lists every operation RunAdminChange knows.
var AdminOps = []string{OpSuspend, OpResume, OpUnlock, OpDeregister, OpBind, OpUnbind, OpActivationCode}

// DefaultDualControl are the operations that need a second operator where
// operators are named, unless configured otherwise. Suspend is among them:
// a suspended user within her grace logs in and transfers with the
// password alone, as after a deregistration, so one operator suspending
// a customer whose passwords they know would turn step-up off alone.
var DefaultDualControl = []string{OpBind, OpUnbind, OpUnlock, OpDeregister, OpSuspend, OpActivationCode}

// AdminChange is one admin operation on a user, as an operator asked for it.
type AdminChange struct {
	Op   string `json:"op"`
	User string `json:"user"`
	// CredentialID is the credential to bind (bind).
	CredentialID string `json:"credential_id,omitempty"`
	// Until ends the password-only grace period (suspend, deregister).
	Until time.Time `json:"until,omitzero"`
	// Kind is the activation code's kind (activation-code).
	Kind string `json:"kind,omitempty"`
}

// IssuedCode is an activation code RunAdminChange issued: shown once, to
// the one who asked for it.
type IssuedCode struct {
	Code string
	*ActivationCode
}

// PhoneBinder binds phones and issues activation codes for RunAdminChange.
// pushauth/enrol provides it and registers it with UsePhoneBinder (it
// imports the core, so the core cannot call it by name).
type PhoneBinder interface {
	Bind(ctx context.Context, key, credID, actor string) (*User, error)
	IssueActivationCode(ctx context.Context, userKey, kind, actor string) (string, *ActivationCode, error)
}

// UsePhoneBinder sets what binds phones and issues activation codes for
// the admin changes of this engine.
func (e *Engine) UsePhoneBinder(b PhoneBinder) { e.phoneBinder.Store(&b) }

// binder is the registered PhoneBinder, or an error naming op without one.
func (e *Engine) binder(op string) (PhoneBinder, error) {
	b := e.phoneBinder.Load()
	if b == nil {
		return nil, fmt.Errorf("pushauth: %s: no phone binder registered (pushauth/enrol.New)", op)
	}
	return *b, nil
}

// RunAdminChange carries out ch as actor (who the audit trail names):
// every admin change, with or without dual control, goes through here.
func (e *Engine) RunAdminChange(ctx context.Context, ch AdminChange, actor string) (*IssuedCode, error) {
	var err error
	switch ch.Op {
	case OpSuspend:
		_, err = e.Suspend(ctx, ch.User, ch.Until, actor)
	case OpResume:
		_, err = e.Resume(ctx, ch.User, actor)
	case OpUnlock:
		_, err = e.Unlock(ctx, ch.User, actor)
	case OpDeregister:
		_, err = e.Deregister(ctx, ch.User, ch.Until, actor)
	case OpBind:
		b, berr := e.binder(ch.Op)
		if berr != nil {
			return nil, berr
		}
		_, err = b.Bind(ctx, ch.User, ch.CredentialID, actor)
	case OpUnbind:
		_, err = e.Unbind(ctx, ch.User, actor)
	case OpActivationCode:
		b, berr := e.binder(ch.Op)
		if berr != nil {
			return nil, berr
		}
		code, c, ierr := b.IssueActivationCode(ctx, ch.User, ch.Kind, actor)
		if ierr != nil {
			return nil, ierr
		}
		return &IssuedCode{Code: code, ActivationCode: c}, nil
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownOp, ch.Op)
	}
	return nil, err
}

// AdminRequestStatus is where a request under dual control stands.
type AdminRequestStatus string

const (
	// AdminRequestPending waits for a supervisor.
	AdminRequestPending AdminRequestStatus = "pending"
	// AdminRequestApproved is an approved activation-code request waiting
	// for its requester to collect the code (the approver never sees it).
	AdminRequestApproved AdminRequestStatus = "approved"
	// AdminRequestDone was carried out.
	AdminRequestDone AdminRequestStatus = "done"
	// AdminRequestFailed was approved, but the operation failed (the
	// user's state had changed, say); Result says why.
	AdminRequestFailed   AdminRequestStatus = "failed"
	AdminRequestRejected AdminRequestStatus = "rejected"
	AdminRequestExpired  AdminRequestStatus = "expired"
)

// AdminRequest is an admin change waiting for, or decided by, a second
// operator. It holds no secret: an activation code is issued only when its
// requester collects it.
type AdminRequest struct {
	ID string `json:"id"`
	AdminChange
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	// ExpiresAt ends a pending request (and an approved activation-code
	// request not collected by then).
	ExpiresAt time.Time          `json:"expires_at"`
	Status    AdminRequestStatus `json:"status"`
	DecidedBy string             `json:"decided_by,omitempty"`
	DecidedAt time.Time          `json:"decided_at,omitzero"`
	Result    string             `json:"result,omitempty"`
}

// AdminRequests keeps requests under dual control, shared by every
// instance on the store. Records stay until AdminRequestRetention after
// they expire.
type AdminRequests interface {
	// CreateAdminRequest stores a new request; ErrTooManyAdminRequests
	// when MaxAdminRequests are kept already.
	CreateAdminRequest(ctx context.Context, r *AdminRequest) error
	// GetAdminRequest returns ErrNotFound for an unknown id.
	GetAdminRequest(ctx context.Context, id string) (*AdminRequest, error)
	// ListAdminRequests returns the requests kept, newest first.
	ListAdminRequests(ctx context.Context) ([]*AdminRequest, error)
	// UpdateAdminRequest replaces the record of r.ID with r if its status
	// is still from, exactly once across instances; otherwise it returns
	// the current record and ErrConflict.
	UpdateAdminRequest(ctx context.Context, r *AdminRequest, from AdminRequestStatus) (*AdminRequest, error)
}

// The customer is told of a change asked for under dual control, and of
// its rejection, through the outbox like the change itself (which is
// announced as always when it runs): an insider's attempt reaches the
// customer even when a supervisor stops it.
const (
	EventChangeRequested = "change.requested"
	EventChangeRejected  = "change.rejected"
)

// Bounds of the requests a store keeps.
const (
	MaxAdminRequests      = 1000
	AdminRequestRetention = 7 * 24 * time.Hour
)

// Errors of dual control.
var (
	ErrUnknownOp            = errors.New("unknown admin operation")
	ErrTooManyAdminRequests = errors.New("too many admin requests are kept")
	ErrSelfApproval         = errors.New("an operator cannot decide their own request")
	ErrNotSupervisor        = errors.New("only a supervisor can decide a request")
	ErrNotRequester         = errors.New("only the operator who asked can collect the code")
	ErrRequestClosed        = errors.New("the request is not open any more")
)

// Approver is the operator deciding a request.
type Approver struct {
	Name       string
	Supervisor bool
	// Addr is the caller's address, for the audit trail.
	Addr string
}

// adminRequestID is a fresh request id an operator can copy into a command
// line: lower-case base32 (128 bits), so it never starts with "-" and reads
// as a flag, as a base64url id does one time in 64.
func adminRequestID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("pushauth: reading randomness: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])), nil
}

// RequestAdminChange records ch as requested by operator (from addr),
// pending until a supervisor decides it or ttl passes. Nothing changes yet.
func (e *Engine) RequestAdminChange(ctx context.Context, ch AdminChange, operator, addr string, ttl time.Duration) (*AdminRequest, error) {
	if !slices.Contains(AdminOps, ch.Op) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownOp, ch.Op)
	}
	id, err := adminRequestID()
	if err != nil {
		return nil, err
	}
	now := e.now()
	r := &AdminRequest{ID: id, AdminChange: ch, RequestedBy: operator, RequestedAt: now, ExpiresAt: now.Add(ttl), Status: AdminRequestPending}
	if err := e.store.CreateAdminRequest(ctx, r); err != nil {
		return nil, err
	}
	e.recordRequest(ctx, r, "request.created", operator+"@"+addr, "")
	e.announceRequest(ctx, r, EventChangeRequested, operator)
	return r, nil
}

// AdminRequestsOpen lists the requests kept, newest first, a pending one
// past its expiry shown as expired.
func (e *Engine) AdminRequestsOpen(ctx context.Context) ([]*AdminRequest, error) {
	rs, err := e.store.ListAdminRequests(ctx)
	if err != nil {
		return nil, err
	}
	now := e.now()
	for _, r := range rs {
		if r.Status == AdminRequestPending && !now.Before(r.ExpiresAt) {
			r.Status = AdminRequestExpired
		}
	}
	return rs, nil
}

// DecideAdminRequest approves or rejects request id. Only a supervisor
// other than the requester decides; an approved change runs at once
// (activation codes: when the requester collects them, see
// CollectActivationCode), exactly once across instances.
func (e *Engine) DecideAdminRequest(ctx context.Context, id string, approve bool, by Approver) (*AdminRequest, error) {
	r, err := e.store.GetAdminRequest(ctx, id)
	if err != nil {
		return nil, err
	}
	actor := by.Name + "@" + by.Addr
	switch {
	case !by.Supervisor:
		e.recordRequest(ctx, r, "request.refused", actor, ErrNotSupervisor.Error())
		return r, ErrNotSupervisor
	case by.Name == r.RequestedBy:
		e.recordRequest(ctx, r, "request.refused", actor, ErrSelfApproval.Error())
		return r, ErrSelfApproval
	case r.Status != AdminRequestPending:
		return r, fmt.Errorf("%w: request %s is %s", ErrRequestClosed, id, r.Status)
	}
	now := e.now()
	next := *r
	next.DecidedBy, next.DecidedAt = by.Name, now
	switch {
	case !now.Before(r.ExpiresAt):
		next.Status = AdminRequestExpired
	case !approve:
		next.Status = AdminRequestRejected
	case r.Op == OpActivationCode:
		next.Status = AdminRequestApproved
		next.ExpiresAt = now.Add(r.ExpiresAt.Sub(r.RequestedAt))
	default:
		// Claimed before it runs: another instance deciding at the same
		// time finds it closed.
		next.Status = AdminRequestDone
	}
	cur, err := e.store.UpdateAdminRequest(ctx, &next, AdminRequestPending)
	if errors.Is(err, ErrConflict) {
		return cur, fmt.Errorf("%w: request %s is %s", ErrRequestClosed, id, cur.Status)
	}
	if err != nil {
		return nil, err
	}
	switch next.Status {
	case AdminRequestExpired:
		e.recordRequest(ctx, &next, "request.expired", actor, "")
		return &next, fmt.Errorf("%w: request %s expired at %s", ErrRequestClosed, id, r.ExpiresAt.UTC().Format(time.RFC3339))
	case AdminRequestRejected:
		e.recordRequest(ctx, &next, "request.rejected", actor, "")
		e.announceRequest(ctx, &next, EventChangeRejected, by.Name)
		return &next, nil
	}
	e.recordRequest(ctx, &next, "request.approved", actor, "")
	if next.Status == AdminRequestApproved {
		return &next, nil
	}
	// The change names both operators.
	if _, err := e.RunAdminChange(ctx, next.AdminChange, r.RequestedBy+" approved by "+actor); err != nil {
		return e.requestFailed(ctx, &next, err)
	}
	return &next, nil
}

// CollectActivationCode issues the code of an approved activation-code
// request to its requester, once: the supervisor who approved it never
// sees it, and the store never keeps it.
func (e *Engine) CollectActivationCode(ctx context.Context, id, operator, addr string) (*IssuedCode, *AdminRequest, error) {
	r, err := e.store.GetAdminRequest(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case r.Op != OpActivationCode:
		return nil, r, fmt.Errorf("%w: request %s is a %s request", ErrRequestClosed, id, r.Op)
	case operator != r.RequestedBy:
		return nil, r, ErrNotRequester
	case r.Status != AdminRequestApproved || !e.now().Before(r.ExpiresAt):
		return nil, r, fmt.Errorf("%w: request %s is %s", ErrRequestClosed, id, r.Status)
	}
	next := *r
	next.Status = AdminRequestDone
	if cur, err := e.store.UpdateAdminRequest(ctx, &next, AdminRequestApproved); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, cur, fmt.Errorf("%w: request %s is %s", ErrRequestClosed, id, cur.Status)
		}
		return nil, nil, err
	}
	code, err := e.RunAdminChange(ctx, next.AdminChange, operator+"@"+addr+" approved by "+next.DecidedBy)
	if err != nil {
		_, err = e.requestFailed(ctx, &next, err)
		return nil, &next, err
	}
	e.recordRequest(ctx, &next, "code.collected", operator+"@"+addr, "")
	return code, &next, nil
}

// requestFailed records that an approved change could not be carried out
// and returns err.
func (e *Engine) requestFailed(ctx context.Context, r *AdminRequest, err error) (*AdminRequest, error) {
	failed := *r
	failed.Status, failed.Result = AdminRequestFailed, err.Error()
	if _, uerr := e.store.UpdateAdminRequest(ctx, &failed, r.Status); uerr != nil {
		e.log.Warn("admin request: recording the failure", "request", r.ID, "error", uerr)
	}
	e.recordRequest(ctx, &failed, "request.failed", "gateway", err.Error())
	return &failed, err
}

// announceRequest tells the customer about a request's step; the request
// stands whether or not the message could be queued (logged then).
func (e *Engine) announceRequest(ctx context.Context, r *AdminRequest, event, actor string) {
	_ = e.Announce(ctx, Announcement{Type: event, User: r.User, Credential: r.CredentialID, Actor: actor,
		Detail: r.Op + " requested by the bank's operator " + r.RequestedBy + ", effective only once a second operator approves it"})
}

// recordRequest writes a request's step to the audit trail.
func (e *Engine) recordRequest(ctx context.Context, r *AdminRequest, outcome, actor, why string) {
	detail := r.Op + " request " + r.ID + " by " + r.RequestedBy
	if r.CredentialID != "" {
		detail += " credential " + r.CredentialID
	}
	if why != "" {
		detail += ": " + why
	}
	e.Record(ctx, AuditEvent{Type: AuditAdmin, User: r.User, Outcome: outcome, Actor: actor, Detail: detail})
}
