package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/gate"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the onepush gate: requests that match a rule of the policy
// wait for the user's phone before they reach the next handler (usually
// reverse_proxy to the bank). Other requests pass straight through.
type Handler struct {
	// Policy is the path of the policy file (YAML, see the README). Required.
	Policy string `json:"policy,omitempty"`

	// EnrollPath is where users bind their phone from the PC. Default
	// "/onepush/enroll"; "off" disables it.
	EnrollPath string `json:"enroll_path,omitempty"`

	// Templates is an html/template file replacing the built-in page
	// template (see pushauth/gate/templates/page.html for the fields it gets).
	Templates string `json:"templates,omitempty"`

	// WaitPath is the prefix of the interstitial waiting pages (rules with
	// mode: interstitial). Default "/onepush/wait/".
	WaitPath string `json:"wait_path,omitempty"`

	// WaitTemplate is an html/template file replacing the built-in
	// interstitial waiting page (see pushauth/gate/templates/wait.html).
	WaitTemplate string `json:"wait_template,omitempty"`

	// BankHome is the link the gateway's pages offer back to the bank.
	// Default "/".
	BankHome string `json:"bank_home,omitempty"`

	// Passkeys is the relying party (the bank's domain and origins) for
	// rules with method passkey or passkey_or_push, and the passkey
	// registration page. Required when the policy has such a rule.
	Passkeys *PasskeyConfig `json:"passkeys,omitempty"`

	gate        *gate.Gate
	dropPolicy  func()
	errorRoutes *atomic.Int32 // see hasErrorRoutes
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.onepush",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the policy; a broken policy stops Caddy from starting
// with the file, line and field in the message.
func (h *Handler) Provision(ctx caddy.Context) error {
	if h.Policy == "" {
		return fmt.Errorf("onepush: policy file is required")
	}
	pol, err := policy.Load(h.Policy)
	if err != nil {
		return fmt.Errorf("onepush: %w", err)
	}
	for _, w := range pol.Warnings() {
		ctx.Slogger().Warn("onepush policy: "+w.Message, "file", h.Policy, "line", w.Line, "field", w.Field)
	}
	app, err := loadApp(ctx, "onepush")
	if err != nil {
		return err
	}
	// Each gate decides with its own policy; the engine derives only what
	// no single site owns (activation code validity, the grace after an
	// uninstall) from the policies loaded now, and forgets this one at
	// Cleanup.
	h.dropPolicy = app.Engine().AddPolicy(pol)
	pages, err := gate.NewPages(h.Templates, h.BankHome)
	if err != nil {
		return fmt.Errorf("onepush: templates %q: %w", h.Templates, err)
	}
	if h.WaitTemplate != "" {
		if err := pages.LoadWaitTemplate(h.WaitTemplate); err != nil {
			return fmt.Errorf("onepush: wait_template %q: %w", h.WaitTemplate, err)
		}
	}
	enroll := h.EnrollPath
	switch enroll {
	case "":
		enroll = "/onepush/enroll"
	case "off":
		enroll = ""
	}
	h.errorRoutes = new(atomic.Int32)
	h.gate = &gate.Gate{
		Engine:          app.Engine(),
		Policy:          pol,
		Pages:           pages,
		Log:             ctx.Slogger(),
		ClientIP:        clientIP,
		EnrollPath:      enroll,
		Binder:          app.Binder(),
		BodyReadTimeout: app.bodyReadTimeout(),
		WaitPath:        h.WaitPath,
		Note:            note,
		TakeRefusal:     h.takeRefusal,
	}
	if h.gate.WaitPath == "" {
		h.gate.WaitPath = "/onepush/wait/"
	}
	if !strings.HasPrefix(h.gate.WaitPath, "/") || !strings.HasSuffix(h.gate.WaitPath, "/") {
		return fmt.Errorf("onepush: wait_path %q: must start and end with /", h.gate.WaitPath)
	}
	if h.Passkeys != nil {
		if h.gate.Passkeys, err = h.Passkeys.gatePasskeys(); err != nil {
			return err
		}
	} else if r := passkeyRule(pol); r != nil {
		return fmt.Errorf("onepush: policy %s: rule %q (line %d) asks for passkeys (method %s): configure passkeys { rp_id …; origins … } on this site", h.Policy, r.Name, r.Line, r.Method)
	}
	return nil
}

// Cleanup forgets this handler's policy at the shared engine (a reload
// or the site's removal).
func (h *Handler) Cleanup() error {
	if h.dropPolicy != nil {
		h.dropPolicy()
	}
	return nil
}

// clientIP is Caddy's view of the client address, which honours the
// server's trusted_proxies and nothing else.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return pushauth.ClientAddr(r.RemoteAddr)
}

// ServeHTTP runs the gate. A refusal is a caddyhttp.Error with its status
// when the server has handle_errors routes; otherwise the gate's own page
// answers it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if err := h.gate.Route(w, r, next.ServeHTTP); err != nil || !h.hasErrorRoutes(r) {
		return err
	}
	return refusal(r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
