package httpapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/enrol"
)

// DefaultAdminBase is where the admin API lives unless configured.
const DefaultAdminBase = "/onepush/admin/v1"

// ActorHeader names the person behind an admin call; it goes into the
// audit trail with the caller's address.
const ActorHeader = "X-Onepush-Actor"

// Admin is the bank's operations API: user state, suspend/resume,
// unlock, deregister, bind/unbind, audit query. Every call needs an
// operator's credential (see operators.go): the single bearer token of
// NewAdmin, or a named operator's token or client certificate
// (NewNamedAdmin), with which the changes under dual control wait for a
// supervisor's approval. It is meant for an internal listener.
//
//	GET  {base}/user?key=K
//	POST {base}/user/suspend     {"key", "until"|"grace"}
//	POST {base}/user/resume      {"key"}
//	POST {base}/user/unlock      {"key"}
//	POST {base}/user/deregister  {"key", "until"|"grace"}
//	POST {base}/user/bind        {"key", "credential_id"}
//	POST {base}/user/unbind      {"key"}
//	POST {base}/user/activation-code {"key", "kind": "binding"|"recovery"}
//	GET  {base}/audit?user=K&since=T&until=T&type=X&limit=N
//	GET  {base}/store/backup     (a consistent copy of the embedded store)
//	GET  {base}/user/passkeys?key=K, POST {base}/user/passkeys/revoke (admin_passkeys.go)
//	GET  {base}/audit/verify     (walks the audit hash chain)
//	GET  {base}/health           (no token: 200 or 503, for load balancers)
//	GET  {base}/requests, {base}/requests/{id}   (named operators)
//	POST {base}/requests/{id}/approve|reject|collect
type Admin struct {
	Engine *pushauth.Engine
	Base   string
	// DefaultGrace is the password-only period of suspend and deregister
	// calls that name no deadline, unless the policy's
	// deregistration_grace is set.
	DefaultGrace time.Duration
	// ClientIP returns the caller's address as the trusted-proxy logic
	// sees it, for the audit trail; nil uses the connection's.
	ClientIP func(*http.Request) string

	ops  operators
	dual dualControl
	mux  *http.ServeMux
}

// NewAdmin builds the handler for one shared bearer token, one operator
// without dual control whose name is what the caller declares in
// ActorHeader; token must not be empty.
func NewAdmin(e *pushauth.Engine, base, token string, defaultGrace time.Duration) (*Admin, error) {
	if token == "" {
		return nil, errors.New("admin API: a bearer token is required")
	}
	return newAdmin(e, base, operators{list: []operator{{tokenHash: sha256.Sum256([]byte(token)), hasToken: true}}}, dualControl{}, defaultGrace), nil
}

func newAdmin(e *pushauth.Engine, base string, ops operators, dual dualControl, defaultGrace time.Duration) *Admin {
	if base == "" {
		base = DefaultAdminBase
	}
	base = strings.TrimSuffix(base, "/")
	a := &Admin{Engine: e, Base: base, DefaultGrace: defaultGrace, ops: ops, dual: dual, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET "+base+"/user", a.showUser)
	a.mux.HandleFunc("POST "+base+"/user/{action}", a.userAction)
	a.mux.HandleFunc("GET "+base+"/audit", a.auditQuery)
	a.mux.HandleFunc("GET "+base+"/store/backup", a.storeBackup)
	a.mux.HandleFunc("GET "+base+"/audit/verify", a.auditVerify)
	// Dual control.
	a.mux.HandleFunc("GET "+base+"/requests", a.listRequests)
	a.mux.HandleFunc("GET "+base+"/requests/{id}", a.showRequest)
	a.mux.HandleFunc("POST "+base+"/requests/{id}/{decision}", a.decideRequest)
	a.passkeyRoutes()
	return a
}

// Handles reports whether path is under the API's base.
func (a *Admin) Handles(path string) bool {
	return path == a.Base || strings.HasPrefix(path, a.Base+"/")
}

func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == a.Base+"/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		a.health(w, r) // for load balancers: no token, no secret, no user
		return
	}
	op := a.ops.authenticate(r)
	if op == nil {
		a.Engine.Logger().Warn("admin API: refused a call without a valid credential", "path", truncate(r.URL.Path, 200), "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="onepush-admin"`)
		writeErr(w, http.StatusUnauthorized, "admin token required")
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), operatorKey{}, op))
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	a.mux.ServeHTTP(w, r)
}

// actor is who the audit trail names: the authenticated operator (or,
// with the single shared token, the declared one) and the caller's
// address.
func (a *Admin) actor(r *http.Request) string {
	if op := operatorOf(r); op != nil && op.name != "" {
		return op.name + "@" + clientAddr(a.ClientIP, r)
	}
	name := strings.Map(func(c rune) rune {
		if unicode.IsPrint(c) && c != '"' {
			return c
		}
		return -1
	}, truncate(r.Header.Get(ActorHeader), 64))
	if name == "" {
		name = "admin-api"
	}
	return name + "@" + clientAddr(a.ClientIP, r)
}

func (a *Admin) showUser(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		writeErr(w, http.StatusBadRequest, "key: required")
		return
	}
	v, err := a.Engine.ShowUser(r.Context(), key)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

type adminRequest struct {
	Key          string `json:"key"`
	Until        string `json:"until,omitempty"`
	Grace        string `json:"grace,omitempty"`
	CredentialID string `json:"credential_id,omitempty"`
	// Kind is the activation code's kind (activation-code only).
	Kind string `json:"kind,omitempty"`
}

// deadline reads until (RFC 3339) or grace (a duration from now); neither
// gives the default grace.
func (a *Admin) deadline(req adminRequest) (time.Time, error) {
	now := a.Engine.Now()
	switch {
	case req.Until != "" && req.Grace != "":
		return time.Time{}, errors.New("give until or grace, not both")
	case req.Until != "":
		t, err := time.Parse(time.RFC3339, req.Until)
		if err != nil {
			return time.Time{}, fmt.Errorf("until %q: not an RFC 3339 time", req.Until)
		}
		return t, nil
	case req.Grace != "":
		d, err := time.ParseDuration(req.Grace)
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("grace %q: not a non-negative duration", req.Grace)
		}
		return now.Add(d), nil
	}
	return now.Add(a.Engine.DeregistrationGrace(a.DefaultGrace)), nil
}

func (a *Admin) userAction(w http.ResponseWriter, r *http.Request) {
	var req adminRequest
	if err := decodeJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if req.Key == "" {
		writeErr(w, http.StatusBadRequest, "key: required")
		return
	}
	ch := pushauth.AdminChange{Op: r.PathValue("action"), User: req.Key, CredentialID: req.CredentialID, Kind: req.Kind}
	switch ch.Op {
	case pushauth.OpSuspend, pushauth.OpDeregister:
		until, err := a.deadline(req)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		ch.Until = until
	case pushauth.OpBind:
		if req.CredentialID == "" {
			writeErr(w, http.StatusBadRequest, "credential_id: required")
			return
		}
	case pushauth.OpActivationCode:
		if ch.Kind == "" {
			ch.Kind = pushauth.ActivationBinding
		}
	case pushauth.OpResume, pushauth.OpUnlock, pushauth.OpUnbind:
	default:
		writeErr(w, http.StatusNotFound, fmt.Sprintf("unknown action %q (%s)", ch.Op, strings.Join(pushauth.AdminOps, ", ")))
		return
	}
	ctx := r.Context()
	if op := operatorOf(r); op.name != "" && a.dual.needs(ch.Op) {
		// Nothing changes until another operator, a supervisor, approves.
		req, err := a.Engine.RequestAdminChange(ctx, ch, op.name, clientAddr(a.ClientIP, r), a.dual.ttl)
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"request_id": req.ID, "status": req.Status, "expires_at": req.ExpiresAt})
		return
	}
	code, err := a.Engine.RunAdminChange(ctx, ch, a.actor(r))
	if err != nil {
		a.fail(w, err)
		return
	}
	if code != nil {
		writeCode(w, code)
		return
	}
	v, err := a.Engine.ShowUser(ctx, req.Key)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// auditVerify walks the store's audit chain (see pushauth.VerifyAudit);
// a break is in the answer, not in its status.
func (a *Admin) auditVerify(w http.ResponseWriter, r *http.Request) {
	walker, ok := a.Engine.Audit().(pushauth.AuditWalker)
	if !ok {
		writeErr(w, http.StatusNotImplemented, "this audit log cannot be walked")
		return
	}
	v, err := pushauth.VerifyAudit(r.Context(), walker)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// health answers 200 when the store answers and the engine is not
// draining, 503 otherwise (see pushauth.Engine.Health).
func (a *Admin) health(w http.ResponseWriter, r *http.Request) {
	h, ok := a.Engine.Health(r.Context())
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

// writeCode answers an activation code, once: only its hash is kept.
func writeCode(w http.ResponseWriter, c *pushauth.IssuedCode) {
	writeJSON(w, http.StatusOK, map[string]any{"key": c.User, "kind": c.Kind, "code": c.Code, "code_id": c.ID, "expires_at": c.ExpiresAt})
}

func (a *Admin) auditQuery(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	q := pushauth.AuditQuery{User: qv.Get("user"), Type: qv.Get("type")}
	for name, dst := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		if s := qv.Get(name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				writeErr(w, http.StatusBadRequest, fmt.Sprintf("%s %q: not an RFC 3339 time", name, s))
				return
			}
			*dst = t
		}
	}
	if s := qv.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > pushauth.MaxAuditQuery {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("limit %q: must be 1..%d", s, pushauth.MaxAuditQuery))
			return
		}
		q.Limit = n
	}
	evs, err := a.Engine.Audit().Query(r.Context(), q)
	if err != nil {
		a.fail(w, err)
		return
	}
	if evs == nil {
		evs = []pushauth.AuditEvent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

func (a *Admin) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, enrol.ErrBadInput):
		writeErr(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, pushauth.ErrUnknownUser) || errors.Is(err, pushauth.ErrUnknownCredential):
		writeErr(w, http.StatusNotFound, err.Error())
	case errors.Is(err, pushauth.ErrUserState) || errors.Is(err, pushauth.ErrAlreadyBound) || errors.Is(err, pushauth.ErrLocked) ||
		errors.Is(err, pushauth.ErrRequestClosed):
		writeErr(w, http.StatusConflict, err.Error())
	case errors.Is(err, pushauth.ErrUnknownOp):
		writeErr(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, pushauth.ErrNotFound):
		writeErr(w, http.StatusNotFound, "not found")
	case errors.Is(err, pushauth.ErrSelfApproval) || errors.Is(err, pushauth.ErrNotSupervisor) || errors.Is(err, pushauth.ErrNotRequester):
		writeErr(w, http.StatusForbidden, err.Error())
	case errors.Is(err, pushauth.ErrTooManyAdminRequests):
		writeErr(w, http.StatusTooManyRequests, err.Error())
	default:
		a.Engine.Logger().Error("admin API: store failure", "error", err)
		a.Engine.StoreFailed("admin", err)
		writeErr(w, http.StatusServiceUnavailable, "store unavailable")
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
