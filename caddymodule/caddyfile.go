package caddymodule

import (
	"encoding/json"
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
	// The admin API goes first, right before the device API (registered
	// first, so the later insertions land after it), and no rule of the
	// gate ever sees an admin call.
	httpcaddyfile.RegisterHandlerDirective("onepush_admin", parseAdmin)
	httpcaddyfile.RegisterDirectiveOrder("onepush_admin", httpcaddyfile.Before, "handle")
	httpcaddyfile.RegisterDirectiveOrder("onepush_device", httpcaddyfile.Before, "handle")
	httpcaddyfile.RegisterDirectiveOrder("onepush", httpcaddyfile.Before, "handle")
}

// parseGlobal sets up the onepush app from the global options block:
//
//	onepush {
//	    store embedded {
//	        path <file>
//	        auto_init
//	    }
//	    store memory
//	    store redis {
//	        addresses <host:port...>
//	        master_name <name>
//	        cluster
//	        username <user>
//	        password {env.REDIS_PASSWORD}
//	        db <n>
//	        tls
//	        tls_server_name <name>
//	        prefix <prefix>
//	        min_replicas <n>
//	        replica_timeout <duration>
//	    }
//	    webhook_allow <prefix...>
//	    apns { key_file|key_id|team_id|cert_file|cert_password|topic|host|ca_file|category|title <v>; production|sandbox }
//	    fcm { credentials_file|project_id|endpoint <v> }
//	    max_held <n>
//	    push_workers <n>
//	    push_queue <n>
//	    max_failures <n>
//	    max_held_per_user <n>
//	    max_held_per_ip <n>
//	    body_read_timeout <duration>
//	    uninstall_grace <duration>
//	    push_rate <n>
//	    audit_retention <duration>
//	    audit_max_events <n>
//	    encryption_key {env.ONEPUSH_KEY}
//	    previous_encryption_keys <key...>
//	    notify { url <url>; secret {env.ONEPUSH_NOTIFY_SECRET}; repudiation <text>; timeout <duration> }
//	    unbound_credential_ttl <duration>
//	    max_polls <n>
//	    max_polls_per_ip <n>
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
			typ := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			var mod caddy.Module
			var err error
			switch typ {
			case "redis":
				mod, err = parseRedisBlock(d)
			case "embedded":
				mod, err = parseEmbeddedBlock(d)
			}
			if err != nil {
				return err
			}
			if mod == nil { // a store module without options (memory)
				a.StoreRaw = json.RawMessage(`{"type":` + strconv.Quote(typ) + `}`)
			} else {
				a.StoreRaw = caddyconfig.JSONModuleObject(mod, "type", typ, nil)
			}
		case "apns":
			c, err := parseAPNsBlock(d)
			if err != nil {
				return err
			}
			a.setPusher("apns", c)
		case "fcm":
			c, err := parseFCMBlock(d)
			if err != nil {
				return err
			}
			a.setPusher("fcm", c)
		case "webhook_allow":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			w := new(WebhookPusher)
			if raw, ok := a.PushersRaw["webhook"]; ok {
				_ = json.Unmarshal(raw, w)
			}
			w.Allow = append(w.Allow, args...)
			a.setPusher("webhook", w)
		case "max_held", "push_workers", "push_queue", "max_failures", "max_held_per_user", "max_held_per_ip":
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
			case "max_held_per_user":
				a.MaxHeldPerUser = n
			case "max_held_per_ip":
				a.MaxHeldPerIP = n
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
		case "audit_retention":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("audit_retention: %q is not a positive duration", d.Val())
			}
			a.AuditRetention = caddy.Duration(dur)
		case "push_rate":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("push_rate: %q is not a positive integer", d.Val())
			}
			a.PushRate = n
		case "audit_max_events":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("audit_max_events: %q is not a positive integer", d.Val())
			}
			a.AuditMaxEvents = n
		case "encryption_key":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.EncryptionKey = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "previous_encryption_keys":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.PreviousEncryptionKeys = append(a.PreviousEncryptionKeys, args...)
		case "max_polls", "max_polls_per_ip":
			name := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("%s: %q is not a positive integer", name, d.Val())
			}
			if name == "max_polls" {
				a.MaxPolls = n
			} else {
				a.MaxPollsPerIP = n
			}
		case "body_read_timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("body_read_timeout: %q is not a positive duration", d.Val())
			}
			a.BodyReadTimeout = caddy.Duration(dur)

		// Binding a phone: announcements and unbound credentials.
		case "notify":
			c, err := parseNotifyBlock(d)
			if err != nil {
				return err
			}
			a.Notify = c
		case "unbound_credential_ttl":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("unbound_credential_ttl: %q is not a positive duration", d.Val())
			}
			a.UnboundCredentialTTL = caddy.Duration(dur)

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
//	    wait_template <file>
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
		case "wait_template":
			h.WaitTemplate = val
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

func parseAdmin(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(AdminHandler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile parses:
//
//	onepush_admin [<base path>] {
//	    token <token>        # e.g. {env.ONEPUSH_ADMIN_TOKEN}
//	}
func (ah *AdminHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		ah.Base = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "token":
			if !d.NextArg() {
				return d.ArgErr()
			}
			ah.Token = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown onepush_admin subdirective %q", d.Val())
		}
	}
	if ah.Token == "" {
		return d.Err("onepush_admin: token is required")
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*DeviceHandler)(nil)
	_ caddyfile.Unmarshaler = (*AdminHandler)(nil)
)

// setPusher puts the push sender of platform into the app's JSON.
func (a *App) setPusher(platform string, mod caddy.Module) {
	if a.PushersRaw == nil {
		a.PushersRaw = caddy.ModuleMap{}
	}
	a.PushersRaw[platform] = caddyconfig.JSON(mod, nil)
}
