package caddymodule

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("onepush", parseGlobal)
	httpcaddyfile.RegisterDirective("onepush", parseGate)
	httpcaddyfile.RegisterHandlerDirective("onepush_device", parseDirective[DeviceHandler])
	// The gate must see a request before any handler that ends the chain
	// (handle blocks, reverse_proxy); rewrites run first so the policy sees
	// the path the bank will see. Both go right before handle, the device
	// API first (each insertion lands immediately before handle).
	// The admin API goes first, right before the device API (registered
	// first, so the later insertions land after it), and no rule of the
	// gate ever sees an admin call.
	httpcaddyfile.RegisterHandlerDirective("onepush_admin", parseDirective[AdminHandler])
	httpcaddyfile.RegisterDirectiveOrder("onepush_admin", httpcaddyfile.Before, "handle")
	httpcaddyfile.RegisterDirectiveOrder("onepush_device", httpcaddyfile.Before, "handle")
	httpcaddyfile.RegisterDirectiveOrder("onepush", httpcaddyfile.Before, "handle")
}

// parseDirective reads a handler directive into a new T with T's own
// UnmarshalCaddyfile.
func parseDirective[T any, PT interface {
	*T
	caddyfile.Unmarshaler
	caddyhttp.MiddlewareHandler
}](h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := PT(new(T))
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// parseGate reads the onepush directive as RegisterHandlerDirective
// would, and says what to do when Caddy took a first argument starting
// with / for a path matcher while the policy file was meant.
func parseGate(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	first := ""
	if h.NextArg() {
		first = h.Val()
	}
	h.Reset()
	h.Next()
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	g := new(Handler)
	if err := g.UnmarshalCaddyfile(h.Dispenser); err != nil {
		if matcherSet != nil && g.Policy == "" && strings.HasPrefix(first, "/") {
			return nil, h.Errf("onepush: %q is read by Caddy as a path matcher, not as the policy file (a first argument starting with / always is): name the file in the block, onepush { policy %s }", first, first)
		}
		return nil, err
	}
	return h.NewRoute(matcherSet, g), nil
}

// globalOptions are the options of the global onepush block, which a
// site's onepush block does not take: naming one there says where it goes.
var globalOptions = []string{"store", "apns", "fcm", "webhook_allow", "max_held", "push_workers", "push_queue",
	"max_failures", "max_held_per_user", "max_held_per_ip", "uninstall_grace", "audit_retention", "push_rate",
	"push_backoff_after", "push_backoff", "push_daily_cap", "audit_max_events", "encryption_key",
	"previous_encryption_keys", "max_polls", "max_polls_per_ip", "body_read_timeout", "notify", "unbound_credential_ttl"}

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
//	    push_backoff_after <n>
//	    push_backoff <duration>
//	    push_daily_cap <n>
//	    audit_retention <duration>
//	    audit_max_events <n>
//	    drain_timeout <duration>
//	    encryption_key {env.ONEPUSH_KEY}
//	    previous_encryption_keys <key...>
//	    notify { url <url>; secret {env.ONEPUSH_NOTIFY_SECRET}; repudiation <text>; timeout <duration> }
//	    unbound_credential_ttl <duration>
//	    max_polls <n>
//	    max_polls_per_ip <n>
//	    max_authentication_age <duration>
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
		var err error
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
			switch typ {
			case "redis":
				rs := new(RedisStore)
				mod, err = rs, rs.UnmarshalCaddyfile(d)
			case "embedded":
				es := new(EmbeddedStore)
				mod, err = es, es.UnmarshalCaddyfile(d)
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
			c := new(APNsPusher)
			if err := c.UnmarshalCaddyfile(d); err != nil {
				return err
			}
			a.setPusher("apns", c)
		case "fcm":
			c := new(FCMPusher)
			if err := c.UnmarshalCaddyfile(d); err != nil {
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
			n, err := intArg(d, 0)
			if err != nil {
				return err
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
			if a.AuditRetention, err = durationArg(d); err != nil {
				return err
			}
		case "push_rate":
			if a.PushRate, err = intArg(d, 1); err != nil {
				return err
			}
		case "push_backoff_after":
			if a.PushBackoffAfter, err = intArg(d, 1); err != nil {
				return err
			}
		case "push_backoff":
			if a.PushBackoff, err = durationArg(d); err != nil {
				return err
			}
		case "push_daily_cap":
			if a.PushDailyCap, err = intArg(d, 1); err != nil {
				return err
			}
		case "audit_max_events":
			if a.AuditMaxEvents, err = intArg(d, 1); err != nil {
				return err
			}
		case "encryption_key":
			if err := oneArg(d, &a.EncryptionKey); err != nil {
				return err
			}
		case "previous_encryption_keys":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.PreviousEncryptionKeys = append(a.PreviousEncryptionKeys, args...)
		case "max_polls", "max_polls_per_ip":
			name := d.Val()
			n, err := intArg(d, 1)
			if err != nil {
				return err
			}
			if name == "max_polls" {
				a.MaxPolls = n
			} else {
				a.MaxPollsPerIP = n
			}
		case "body_read_timeout":
			if a.BodyReadTimeout, err = durationArg(d); err != nil {
				return err
			}

		// Binding a phone: announcements and unbound credentials.
		case "notify":
			c := new(NotifyConfig)
			if err := c.UnmarshalCaddyfile(d); err != nil {
				return err
			}
			a.Notify = c
		case "unbound_credential_ttl":
			if a.UnboundCredentialTTL, err = durationArg(d); err != nil {
				return err
			}
		case "max_authentication_age":
			if a.MaxAuthenticationAge, err = durationArg(d); err != nil {
				return err
			}

		// Stopping (#22).
		case "drain_timeout":
			if a.DrainTimeout, err = durationArg(d); err != nil {
				return err
			}

		default:
			return d.Errf("unknown onepush option %q", d.Val())
		}
	}
	return nil
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
//	    passkeys { rp_id <domain>; origins <origin>…; rp_name <name>; path <path>|off }
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		h.Policy = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	strs := map[string]*string{"policy": &h.Policy, "enroll_path": &h.EnrollPath, "templates": &h.Templates,
		"bank_home": &h.BankHome, "wait_path": &h.WaitPath, "wait_template": &h.WaitTemplate}
	err := block(d, "onepush", strs, func(opt string) error {
		if opt == "passkeys" {
			pc, err := parsePasskeys(d)
			h.Passkeys = pc
			return err
		}
		if slices.Contains(globalOptions, opt) {
			return d.Errf("onepush: %s is a global option: put it in the global options block at the top of the Caddyfile, { onepush { %s … } }, not in a site's onepush block", opt, opt)
		}
		return errUnknown
	})
	if err != nil {
		return err
	}
	if h.Policy == "" {
		return d.Err("onepush: a policy file is required: onepush <file> or onepush { policy <file> }")
	}
	return nil
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

// UnmarshalCaddyfile parses:
//
//	onepush_admin [<base path>] {
//	    token <token>        # one shared token, e.g. {env.ONEPUSH_ADMIN_TOKEN}; or:
//	    operator <name> {
//	        token <token>
//	        client_cert_sha256 <hex>...
//	        role support|supervisor
//	    }
//	    dual_control <operation>...   # default bind unbind unlock deregister suspend activation-code
//	    request_ttl <duration>
//	}
func (ah *AdminHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		ah.Base = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	err := block(d, "onepush_admin", map[string]*string{"token": &ah.Token}, func(opt string) error {
		switch opt {
		case "operator":
			var o AdminOperator
			if err := oneArg(d, &o.Name); err != nil {
				return err
			}
			err := block(d, "operator "+o.Name, map[string]*string{"token": &o.Token, "role": &o.Role}, func(opt string) error {
				if opt != "client_cert_sha256" {
					return d.Errf("operator %s: unknown option %q (token, role, client_cert_sha256)", o.Name, opt)
				}
				o.ClientCertSHA256 = append(o.ClientCertSHA256, d.RemainingArgs()...)
				return nil
			})
			if err != nil {
				return err
			}
			ah.Operators = append(ah.Operators, o)
		case "dual_control":
			ah.DualControl = d.RemainingArgs()
			if len(ah.DualControl) == 0 {
				return d.ArgErr()
			}
		case "request_ttl":
			v, err := durationArg(d)
			if err != nil {
				return err
			}
			ah.RequestTTL = v
		default:
			return errUnknown
		}
		return nil
	})
	if err != nil {
		return err
	}
	if ah.Token == "" && len(ah.Operators) == 0 {
		return d.Err("onepush_admin: token or operator is required")
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

// UnmarshalCaddyfile parses the block after "store redis" in the global
// onepush options; the dispenser is on the "redis" token:
//
//	store redis {
//	    addresses <host:port...>
//	    master_name <name>
//	    cluster
//	    username <user>
//	    password <password>
//	    db <n>
//	    tls
//	    tls_server_name <name>
//	    tls_insecure_skip_verify
//	    prefix <prefix>
//	    min_replicas <n>
//	    replica_timeout <duration>
//	}
func (c *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	strs := map[string]*string{"master_name": &c.MasterName, "username": &c.Username, "password": &c.Password, "prefix": &c.Prefix}
	return block(d, "store redis", strs, func(opt string) (err error) {
		switch opt {
		case "addresses":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			c.Addresses = append(c.Addresses, args...)
		case "cluster":
			c.Cluster, err = true, noArg(d)
		case "db":
			c.DB, err = intArg(d, 0)
		case "tls":
			c.TLS, err = true, noArg(d)
		case "tls_server_name":
			err = oneArg(d, &c.TLSServerName)
			c.TLS = true
		case "tls_insecure_skip_verify":
			c.TLSInsecureSkipVerify, err = true, noArg(d)
			c.TLS = true
		case "min_replicas":
			var n int
			if n, err = intArg(d, 0); err == nil {
				c.MinReplicas = &n
			}
		case "replica_timeout":
			c.ReplicaTimeout, err = durationArg(d)
		default:
			return errUnknown
		}
		return err
	})
}

// UnmarshalCaddyfile parses the optional block after "store embedded";
// the dispenser is on the "embedded" token:
//
//	store embedded {
//	    path <file>
//	    auto_init
//	}
func (c *EmbeddedStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return block(d, "store embedded", map[string]*string{"path": &c.Path}, func(opt string) (err error) {
		if opt != "auto_init" {
			return errUnknown
		}
		c.AutoInit, err = true, noArg(d)
		return err
	})
}

// UnmarshalCaddyfile parses the apns block of the global onepush options; d is
// on the "apns" token:
//
//	apns {
//	    key_file      <path.p8>
//	    key_id        <key id>
//	    team_id       <team id>
//	    cert_file     <path.p12|path.pem>   # instead of the three above
//	    cert_password <password>
//	    topic         <bundle id>
//	    production | sandbox
//	    host          <url>
//	    category      <aps category>
//	    title         <alert title>
//	}
func (c *APNsPusher) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	strs := map[string]*string{"key_file": &c.KeyFile, "key_id": &c.KeyID, "team_id": &c.TeamID,
		"cert_file": &c.CertFile, "cert_password": &c.CertPassword, "topic": &c.Topic, "host": &c.Host,
		"ca_file": &c.CAFile, "category": &c.Category, "title": &c.Title}
	return block(d, "apns", strs, func(opt string) error {
		if opt != "production" && opt != "sandbox" {
			return errUnknown
		}
		c.Production = opt == "production"
		if d.NextArg() {
			return d.ArgErr()
		}
		return nil
	})
}

// UnmarshalCaddyfile parses the fcm block of the global onepush options; d is on
// the "fcm" token:
//
//	fcm {
//	    credentials_file <service-account.json>
//	    project_id       <firebase project id>
//	    endpoint         <url>
//	}
func (c *FCMPusher) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return block(d, "fcm", map[string]*string{"credentials_file": &c.CredentialsFile, "project_id": &c.ProjectID, "endpoint": &c.Endpoint}, nil)
}

// UnmarshalCaddyfile parses the notify block of the global onepush options;
// d is on the "notify" token:
//
//	notify {
//	    url         <https://notify.bank.internal/onepush>
//	    secret      {env.ONEPUSH_NOTIFY_SECRET}
//	    repudiation "<what a customer who did not do this should do>"
//	    timeout     <duration>
//	}
func (c *NotifyConfig) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	strs := map[string]*string{"url": &c.URL, "secret": &c.Secret, "repudiation": &c.Repudiation}
	if err := block(d, "notify", strs, func(opt string) (err error) {
		if opt != "timeout" {
			return errUnknown
		}
		c.Timeout, err = durationArg(d)
		return err
	}); err != nil {
		return err
	}
	if c.URL == "" || c.Secret == "" {
		return d.Err("notify: url and secret are required")
	}
	return nil
}

// errUnknown is what the other function of block answers for an option it
// does not know.
var errUnknown = errors.New("unknown option")

// block reads the options of the block d is on: each option named in strs
// takes one value into its string, and other (nil: none) reads the rest,
// answering errUnknown for an option it does not know. what names the
// block in errors.
func block(d *caddyfile.Dispenser, what string, strs map[string]*string, other func(opt string) error) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		err := errUnknown
		if dst, ok := strs[opt]; ok {
			err = oneArg(d, dst)
		} else if other != nil {
			err = other(opt)
		}
		if errors.Is(err, errUnknown) {
			return d.Errf("%s: unknown option %q", what, opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// oneArg reads the single argument of the current option line.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if !d.NextArg() {
		return d.Errf("%s: missing value", name)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s: takes one value", name)
	}
	return nil
}

// noArg checks that the current option line is the option alone.
func noArg(d *caddyfile.Dispenser) error {
	if name := d.Val(); d.NextArg() {
		return d.Errf("%s: takes no value", name)
	}
	return nil
}

// intArg reads the single argument of the current option line as an
// integer of at least min (0 or 1).
func intArg(d *caddyfile.Dispenser, min int) (int, error) {
	name := d.Val()
	var v string
	if err := oneArg(d, &v); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		kind := "non-negative"
		if min > 0 {
			kind = "positive"
		}
		return 0, d.Errf("%s: %q is not a %s integer", name, v, kind)
	}
	return n, nil
}

// durationArg reads the single argument of the current option line as a
// duration above zero.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	var v string
	if err := oneArg(d, &v); err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: %q is not a positive duration", name, v)
	}
	return caddy.Duration(dur), nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*EmbeddedStore)(nil)
	_ caddyfile.Unmarshaler = (*APNsPusher)(nil)
	_ caddyfile.Unmarshaler = (*FCMPusher)(nil)
	_ caddyfile.Unmarshaler = (*NotifyConfig)(nil)
)
