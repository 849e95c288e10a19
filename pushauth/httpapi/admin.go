package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
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
// unlock, deregister, bind/unbind, audit query. Every call needs
// "Authorization: Bearer <token>"; it is meant for an internal listener.
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
type Admin struct {
	Engine *pushauth.Engine
	Binder *enrol.Binder // bind and activation-code
	Base   string
	// DefaultGrace is the password-only period of suspend and deregister
	// calls that name no deadline, unless the policy's
	// deregistration_grace is set.
	DefaultGrace time.Duration
	// ClientIP returns the caller's address as the trusted-proxy logic
	// sees it, for the audit trail; nil uses the connection's.
	ClientIP func(*http.Request) string

	tokenHash [32]byte
	mux       *http.ServeMux
}

// NewAdmin builds the handler; token must not be empty.
func NewAdmin(e *pushauth.Engine, b *enrol.Binder, base, token string, defaultGrace time.Duration) (*Admin, error) {
	if token == "" {
		return nil, errors.New("admin API: a bearer token is required")
	}
	if base == "" {
		base = DefaultAdminBase
	}
	base = strings.TrimSuffix(base, "/")
	a := &Admin{Engine: e, Binder: b, Base: base, DefaultGrace: defaultGrace, tokenHash: sha256.Sum256([]byte(token)), mux: http.NewServeMux()}
	a.mux.HandleFunc("GET "+base+"/user", a.showUser)
	a.mux.HandleFunc("POST "+base+"/user/{action}", a.userAction)
	a.mux.HandleFunc("GET "+base+"/audit", a.auditQuery)
	a.mux.HandleFunc("GET "+base+"/store/backup", a.storeBackup)
	a.passkeyRoutes()
	return a, nil
}

// Handles reports whether path is under the API's base.
func (a *Admin) Handles(path string) bool {
	return path == a.Base || strings.HasPrefix(path, a.Base+"/")
}

func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	got := sha256.Sum256([]byte(strings.TrimSpace(raw)))
	if subtle.ConstantTimeCompare(got[:], a.tokenHash[:]) != 1 || !ok {
		a.Engine.Logger().Warn("admin API: refused a call without a valid token", "path", truncate(r.URL.Path, 200), "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="onepush-admin"`)
		writeErr(w, http.StatusUnauthorized, "admin token required")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	a.mux.ServeHTTP(w, r)
}

// actor is who the audit trail names: the declared operator and the
// caller's address.
func (a *Admin) actor(r *http.Request) string {
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
	ctx, who := r.Context(), a.actor(r)
	var err error
	switch action := r.PathValue("action"); action {
	case "suspend", "deregister":
		until, derr := a.deadline(req)
		if derr != nil {
			writeErr(w, http.StatusBadRequest, derr.Error())
			return
		}
		if action == "suspend" {
			_, err = a.Engine.Suspend(ctx, req.Key, until, who)
		} else {
			_, err = a.Engine.Deregister(ctx, req.Key, until, who)
		}
	case "resume":
		_, err = a.Engine.Resume(ctx, req.Key, who)
	case "unlock":
		_, err = a.Engine.Unlock(ctx, req.Key, who)
	case "bind":
		if req.CredentialID == "" {
			writeErr(w, http.StatusBadRequest, "credential_id: required")
			return
		}
		_, err = a.Binder.Bind(ctx, req.Key, req.CredentialID, who)
	case "unbind":
		_, err = a.Engine.Unbind(ctx, req.Key, who)
	case "activation-code":
		a.activationCode(w, r, req, who)
		return
	default:
		writeErr(w, http.StatusNotFound, fmt.Sprintf("unknown action %q (suspend, resume, unlock, deregister, bind, unbind, activation-code)", action))
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	v, err := a.Engine.ShowUser(ctx, req.Key)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
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

// activationCode issues a user's activation code and answers it, once:
// only its hash is kept.
func (a *Admin) activationCode(w http.ResponseWriter, r *http.Request, req adminRequest, who string) {
	kind := req.Kind
	if kind == "" {
		kind = pushauth.ActivationBinding
	}
	code, c, err := a.Binder.IssueActivationCode(r.Context(), req.Key, kind, who)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": c.User, "kind": c.Kind, "code": code, "code_id": c.ID, "expires_at": c.ExpiresAt})
}

func (a *Admin) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, enrol.ErrBadInput):
		writeErr(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, pushauth.ErrUnknownUser) || errors.Is(err, pushauth.ErrUnknownCredential):
		writeErr(w, http.StatusNotFound, err.Error())
	case errors.Is(err, pushauth.ErrUserState) || errors.Is(err, pushauth.ErrAlreadyBound) || errors.Is(err, pushauth.ErrLocked):
		writeErr(w, http.StatusConflict, err.Error())
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
