package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/onepush/onepush/pushauth/httpapi"
)

func init() {
	caddy.RegisterModule(AdminHandler{})
}

// AdminHandler serves the onepush admin API (user state, suspend/resume,
// unlock, deregister, bind/unbind, audit query) under its base path and
// passes every other request on. Put it on an internal listener; every
// call needs the bearer token. For mutual TLS, add Caddy's own
// client_auth to that listener's tls settings as well.
type AdminHandler struct {
	// Token is the bearer token every call must present. Required, at
	// least 16 characters; placeholders such as {env.ONEPUSH_ADMIN_TOKEN}
	// are expanded, so the secret need not be written in the config.
	Token string `json:"token,omitempty"`

	// Base is the path prefix of the admin API. Default
	// "/onepush/admin/v1".
	Base string `json:"base,omitempty"`

	api *httpapi.Admin
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
	token := caddy.NewReplacer().ReplaceAll(h.Token, "")
	if len(token) < 16 {
		return fmt.Errorf("onepush_admin: token: required, at least 16 characters (got %d)", len(token))
	}
	app, err := loadApp(ctx, "onepush_admin")
	if err != nil {
		return err
	}
	h.api, err = httpapi.NewAdmin(app.Engine(), app.Binder(), h.Base, token, app.uninstallGrace())
	if err != nil {
		return fmt.Errorf("onepush_admin: %w", err)
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
