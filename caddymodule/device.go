package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/onepush/onepush/pushauth"
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

	api *pushauth.DeviceAPI
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
	appVal, err := ctx.App("onepush")
	if err != nil {
		return fmt.Errorf("onepush_device: loading the onepush app: %w", err)
	}
	app := appVal.(*App)
	d.api = pushauth.NewDeviceAPI(app.Engine(), d.Base, app.uninstallGrace())
	return nil
}

// ServeHTTP serves device API paths and passes the rest on.
func (d *DeviceHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !d.api.Handles(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	d.api.ServeHTTP(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*DeviceHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*DeviceHandler)(nil)
)
