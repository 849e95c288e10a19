package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/onepush/onepush/pushauth/httpapi"
)

func init() {
	caddy.RegisterModule(DeviceHandler{})
}

// DeviceHandler serves the device protocol (what the phone app talks to)
// under its base path and passes every other request on.
type DeviceHandler struct {
	// Base is the path prefix of the device API. Default
	// "/onepush/device/v1".
	Base string `json:"base,omitempty"`

	api *httpapi.Device
}

// CaddyModule returns the Caddy module information.
func (DeviceHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.onepush_device",
		New: func() caddy.Module { return new(DeviceHandler) },
	}
}

// Provision attaches to the onepush app's engine.
func (d *DeviceHandler) Provision(ctx caddy.Context) error {
	app, err := loadApp(ctx, "onepush_device")
	if err != nil {
		return err
	}
	d.api = httpapi.NewDevice(app.Engine(), d.Base, app.uninstallGrace())
	d.api.ClientIP = clientIP // registrations are limited by Caddy's view of the client
	return nil
}

// ServeHTTP serves device API paths and passes the rest on.
func (d *DeviceHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return servePrefixed(d.api, w, r, next)
}

// prefixAPI is an API that owns the paths under its base.
type prefixAPI interface {
	http.Handler
	Handles(path string) bool
}

// servePrefixed serves api's paths and passes every other request on.
func servePrefixed(api prefixAPI, w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !api.Handles(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	api.ServeHTTP(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*DeviceHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*DeviceHandler)(nil)
)
