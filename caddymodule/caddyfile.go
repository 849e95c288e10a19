package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("onepush", parseGlobal)
	httpcaddyfile.RegisterHandlerDirective("onepush", parseHandler)
	httpcaddyfile.RegisterHandlerDirective("onepush_device", parseDevice)
	// The gate must see a request before any handler that ends the chain
	// (handle blocks, reverse_proxy); rewrites run first so the policy sees
	// the path the bank will see. Both go right before handle, the device
	// API first (each insertion lands immediately before handle).
	httpcaddyfile.RegisterDirectiveOrder("onepush_device", httpcaddyfile.Before, "handle")
	httpcaddyfile.RegisterDirectiveOrder("onepush", httpcaddyfile.Before, "handle")
}

// parseGlobal sets up the onepush app from the global options block:
//
//	onepush {
//	    store memory
//	    webhook_allow <prefix...>
//	    max_held <n>
//	    push_workers <n>
//	    push_queue <n>
//	    max_failures <n>
//	    uninstall_grace <duration>
//	}
func parseGlobal(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "onepush", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile parses the global onepush block.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.Store = &StoreConfig{Type: d.Val()}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "webhook_allow":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.WebhookAllow = append(a.WebhookAllow, args...)
		case "max_held", "push_workers", "push_queue", "max_failures":
			name := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return d.Errf("%s: %q is not a non-negative integer", name, d.Val())
			}
			switch name {
			case "max_held":
				a.MaxHeld = n
			case "push_workers":
				a.PushWorkers = n
			case "push_queue":
				a.PushQueue = n
			case "max_failures":
				a.MaxFailures = n
			}
		case "uninstall_grace":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("uninstall_grace: %v", err)
			}
			a.UninstallGrace = caddy.Duration(dur)
		default:
			return d.Errf("unknown onepush option %q", d.Val())
		}
	}
	return nil
}

func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile parses:
//
//	onepush [<policy file>] {
//	    policy <file>
//	    enroll_path <path>|off
//	    templates <file>
//	    bank_home <url>
//	    wait_path <prefix/>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		h.Policy = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		key := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch key {
		case "policy":
			h.Policy = val
		case "enroll_path":
			h.EnrollPath = val
		case "templates":
			h.Templates = val
		case "bank_home":
			h.BankHome = val
		case "wait_path":
			h.WaitPath = val
		default:
			return d.Errf("unknown onepush subdirective %q", key)
		}
	}
	if h.Policy == "" {
		return d.Err("onepush: a policy file is required")
	}
	return nil
}

func parseDevice(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(DeviceHandler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile parses:
//
//	onepush_device [<base path>]
func (dh *DeviceHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		dh.Base = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*DeviceHandler)(nil)
)
