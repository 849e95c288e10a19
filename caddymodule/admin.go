package caddymodule

import (
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/onepush/onepush/pushauth/httpapi"
)

func init() {
	caddy.RegisterModule(AdminHandler{})
}

// AdminHandler serves the onepush admin API (user state, suspend/resume,
// unlock, deregister, bind/unbind, audit query, requests under dual
// control) under its base path and passes every other request on. Put it
// on an internal listener. Name the operators (Operators): then bind,
// unbind, unlock, deregister, suspend and activation codes wait for a
// second operator's approval. The single Token is for small setups and test
// rigs: one operator, no dual control (Caddy warns at start). For mutual
// TLS, add Caddy's own client_auth to that listener's tls settings and
// map the certificates to operators.
type AdminHandler struct {
	// Token is the one bearer token every call presents, when no
	// operators are named: at least 16 characters; placeholders such as
	// {env.ONEPUSH_ADMIN_TOKEN} are expanded, so the secret need not be
	// written in the config. Not together with Operators.
	Token string `json:"token,omitempty"`

	// Operators are the named people who may call the API, each with a
	// token, client certificates or both, and a role.
	Operators []AdminOperator `json:"operators,omitempty"`

	// DualControl lists the operations that wait for a supervisor's
	// approval when operators are named. Default: bind, unbind, unlock,
	// deregister, suspend, activation-code. Also possible: resume.
	DualControl []string `json:"dual_control,omitempty"`

	// RequestTTL is how long a request under dual control waits for a
	// decision before it expires. Default 1h.
	RequestTTL caddy.Duration `json:"request_ttl,omitempty"`

	// Base is the path prefix of the admin API. Default
	// "/onepush/admin/v1".
	Base string `json:"base,omitempty"`

	api *httpapi.Admin
}

// AdminOperator is one named operator of the admin API.
type AdminOperator struct {
	// Name is what the audit trail records for every call they make.
	Name string `json:"name"`
	// Role is "support" (makes changes) or "supervisor" (also approves
	// other operators' requests).
	Role string `json:"role"`
	// Token is the operator's own bearer token, at least 16 characters;
	// use a placeholder such as {env.OPS1_TOKEN}.
	Token string `json:"token,omitempty"`
	// ClientCertSHA256 are hex SHA-256 fingerprints of the client
	// certificates (DER) that identify this operator on a listener whose
	// tls client_auth verifies them (mode require_and_verify).
	ClientCertSHA256 []string `json:"client_cert_sha256,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (AdminHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.onepush_admin",
		New: func() caddy.Module { return new(AdminHandler) },
	}
}

// Provision attaches to the onepush app's engine.
func (h *AdminHandler) Provision(ctx caddy.Context) error {
	app, err := loadApp(ctx, "onepush_admin")
	if err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	if len(h.Operators) > 0 {
		if h.Token != "" {
			return fmt.Errorf("onepush_admin: token and operators: name every operator, each with their own token, instead of the shared one")
		}
		ops := make([]httpapi.Operator, len(h.Operators))
		for i, o := range h.Operators {
			ops[i] = httpapi.Operator{Name: o.Name, Role: o.Role, Token: repl.ReplaceAll(o.Token, ""), CertSHA256: o.ClientCertSHA256}
		}
		h.api, err = httpapi.NewNamedAdmin(app.Engine(), h.Base, ops, httpapi.DualControl{Ops: h.DualControl, TTL: time.Duration(h.RequestTTL)}, app.uninstallGrace())
		if err != nil {
			return fmt.Errorf("onepush_admin: %w", err)
		}
	} else {
		token := repl.ReplaceAll(h.Token, "")
		if len(token) < 16 {
			return fmt.Errorf("onepush_admin: token: required, at least 16 characters (got %d), or name operators", len(token))
		}
		if len(h.DualControl) > 0 {
			return fmt.Errorf("onepush_admin: dual_control needs named operators")
		}
		ctx.Logger().Warn("onepush_admin: one shared token: every caller is one operator whose name is self-declared, and nothing needs a second operator's approval; name operators (operator NAME { token …; role support|supervisor }) for dual control")
		h.api, err = httpapi.NewAdmin(app.Engine(), h.Base, token, app.uninstallGrace())
		if err != nil {
			return fmt.Errorf("onepush_admin: %w", err)
		}
	}
	h.api.ClientIP = clientIP // the audit trail names the caller as Caddy's trusted proxies see it
	return nil
}

// ServeHTTP serves admin API paths and passes the rest on.
func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return servePrefixed(h.api, w, r, next)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
)
