package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/enrol"
	"github.com/onepush/onepush/pushauth/notify"
	"github.com/onepush/onepush/pushauth/seal"
	"github.com/onepush/onepush/pushauth/store/embedded"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the onepush app: it owns the engine (store, held requests, push
// senders) that the onepush handlers share. The engine lives in a usage
// pool keyed by the store config, so a config reload that keeps the store
// keeps every held request.
type App struct {
	// StoreRaw is where credentials, users, sessions and the audit trail
	// live: a module of the onepush.stores namespace named by "type"
	// (embedded, memory, redis). Default: {"type": "embedded"}, one
	// instance, a file under Caddy's data directory created by `caddy
	// onepush store init`.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=onepush.stores inline_key=type"`

	// PushersRaw are the push senders by platform: modules of the
	// onepush.pushers namespace (apns, fcm, webhook). Phones of a platform
	// without a sender poll for their challenges.
	PushersRaw caddy.ModuleMap `json:"pushers,omitempty" caddy:"namespace=onepush.pushers"`

	// MaxHeld bounds the requests this instance holds at once. Default 50000.
	MaxHeld int `json:"max_held,omitempty"`

	// PushWorkers is how many pushes are sent at once. Default 16.
	PushWorkers int `json:"push_workers,omitempty"`

	// PushQueue is how many pushes may wait for a worker; a full queue
	// refuses the request with 503. Default 4096.
	PushQueue int `json:"push_queue,omitempty"`

	// MaxFailures locks a user after this many consecutive failures
	// (denials, fraud reports, wrong codes). Default 5.
	MaxFailures int `json:"max_failures,omitempty"`

	// MaxHeldPerUser bounds the requests held at once for one user; more get
	// 429. Default 4.
	MaxHeldPerUser int `json:"max_held_per_user,omitempty"`

	// MaxHeldPerIP bounds the requests held at once from one client IP (as
	// Caddy's trusted_proxies determine it); more get 429. Default 256.
	MaxHeldPerIP int `json:"max_held_per_ip,omitempty"`

	// BodyReadTimeout bounds how long a request that matches a rule may take
	// to send its body before it is refused (slowloris). Default 10s.
	BodyReadTimeout caddy.Duration `json:"body_read_timeout,omitempty"`

	// UninstallGrace is how long users of an uninstalled credential may
	// still log in with their password only. Default 0 (none).
	UninstallGrace caddy.Duration `json:"uninstall_grace,omitempty"`

	// PushRate is how many pushes (challenges and resends) one user may get
	// per minute; more are refused, against push bombing. Default 5.
	PushRate int `json:"push_rate,omitempty"`
	// PushBackoffAfter is how many pushes one user gets since her last
	// approval before each further one waits PushBackoff, doubling (at
	// most 30m); PushDailyCap is how many she gets since her last approval
	// within 24 hours. Counted in the store, across every address and
	// instance; an approval resets them. Defaults 5, 30s and 20.
	PushBackoffAfter int            `json:"push_backoff_after,omitempty"`
	PushBackoff      caddy.Duration `json:"push_backoff,omitempty"`
	PushDailyCap     int            `json:"push_daily_cap,omitempty"`

	// AuditRetention is how long audit events are kept (in the embedded
	// store's file, in a Redis stream shared by every instance with the
	// Redis store, or in memory). Default 720h (30 days).
	AuditRetention caddy.Duration `json:"audit_retention,omitempty"`

	// AuditMaxEvents bounds the audit events kept; the oldest go first.
	// Default 100000.
	AuditMaxEvents int `json:"audit_max_events,omitempty"`

	// EncryptionKey seals the secrets a store keeps outside the process
	// (stored requests and bank responses, security-code secrets) with
	// AES-256-GCM: base64 of 32 random bytes (`openssl rand -base64 32`).
	// Use a placeholder such as {env.ONEPUSH_KEY}, never the key itself.
	// A store that keeps such records refuses to start without it.
	EncryptionKey string `json:"encryption_key,omitempty"`

	// PreviousEncryptionKeys still open records sealed before a key
	// rotation; new records are sealed with EncryptionKey only. Drop a key
	// once `caddy onepush store reseal` has rewritten every record.
	PreviousEncryptionKeys []string `json:"previous_encryption_keys,omitempty"`

	// Notify delivers the announcements every binding, replacement,
	// deregistration, suspension, lock and fraud report needs to the
	// bank's notification system. Without it they wait in the store's
	// outbox and Caddy warns at start. Read when the engine starts (like
	// the store).
	Notify *NotifyConfig `json:"notify,omitempty"`

	// UnboundCredentialTTL is how long a credential the device API
	// registered waits for a user to bind it before it is deleted.
	// Default 15m.
	UnboundCredentialTTL caddy.Duration `json:"unbound_credential_ttl,omitempty"`

	// MaxPolls bounds the long polls of waiting pages (interstitial mode)
	// this instance keeps open at once, counted apart from max_held; more
	// get 429 and the page asks again shortly. Default 10000.
	MaxPolls int `json:"max_polls,omitempty"`

	// MaxPollsPerIP bounds those long polls from one client IP. Default
	// 256. One challenge has at most 2 at once.
	MaxPollsPerIP int `json:"max_polls_per_ip,omitempty"`

	// MaxAuthenticationAge is how long an authentication may take at
	// most, from its challenge's creation to the release of what it
	// approves: after it nothing can be approved or released, whatever a
	// rule's timeout says. Default and most 10m (SP 800-63B rev 4 §3.1.3
	// voids an out-of-band authentication not completed within 10
	// minutes); a larger value is refused.
	MaxAuthenticationAge caddy.Duration `json:"max_authentication_age,omitempty"`

	// DrainTimeout is how long requests held when Caddy stops (or a
	// reload removes the onepush app) may still be approved; no new
	// challenge is created meanwhile (503 with Retry-After). Then the rest
	// get a page saying nothing was sent. Keep it under the servers'
	// grace_period; give the load balancer time to notice /health with
	// the global shutdown_delay. Default 30s.
	DrainTimeout caddy.Duration `json:"drain_timeout,omitempty"`

	engine    *pushauth.Engine
	binder    *enrol.Binder
	stopWatch chan struct{} // ends watchExit, see drain.go
	key       string
	store     StoreOpener
	storeType string
	pushers   map[string]pushauth.Pusher
	ctx       caddy.Context // for Start's look at where the gates sit
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "onepush",
		New: func() caddy.Module { return new(App) },
	}
}

// engines keeps engines alive across config reloads.
var engines = caddy.NewUsagePool()

// pooledEngine is an engine, what binds phones to its users and the
// deliverer of its outbox (nil without notify).
type pooledEngine struct {
	*pushauth.Engine
	binder  *enrol.Binder
	drain   *atomic.Int64 // the drain timeout the latest config set, see drain.go
	notify  *notify.Deliverer
	startup map[string]string // the settings read only at start, see restartOnly
}

func (p pooledEngine) Destruct() error {
	p.drainHeld()
	if p.notify != nil {
		p.notify.Close()
	}
	err := p.Engine.Close()
	if cerr := p.Engine.Store().Close(); err == nil {
		err = cerr
	}
	return err
}

// Provision loads the store and the pushers and builds or reuses the
// engine.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	sealer, keysID, err := a.sealerAndID()
	if err != nil {
		return err
	}
	storeJSON, err := a.loadStore(ctx)
	if err != nil {
		return err
	}
	// The same store config and keys share one engine (and its held
	// requests) across reloads; new keys need a new store.
	a.key = "onepush-engine:" + storeJSON + ":keys:" + keysID

	mods, err := ctx.LoadModule(a, "PushersRaw")
	if err != nil {
		return fmt.Errorf("onepush: loading pushers: %w", err)
	}
	a.pushers = map[string]pushauth.Pusher{}
	for platform, m := range mods.(map[string]any) {
		a.pushers[platform] = m.(pushauth.Pusher)
	}
	var notifyTo *notifySettings
	if a.Notify != nil {
		if notifyTo, err = a.Notify.config(caddy.NewReplacer()); err != nil {
			return err
		}
	}
	logger := ctx.Slogger()
	if err := metrics.register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("onepush: registering metrics: %w", err)
	}
	startup := a.restartOnly()
	val, loaded, err := engines.LoadOrNew(a.key, func() (caddy.Destructor, error) {
		store, audit, err := a.store.OpenStore(a.storeEnv(sealer, logger))
		if err != nil {
			return nil, err
		}
		cfg := a.limits()
		cfg.Store, cfg.Pushers, cfg.Logger, cfg.Audit, cfg.Metrics = store, a.pushers, logger, audit, metrics
		cfg.PushWorkers, cfg.PushQueue, cfg.Repudiation = a.PushWorkers, a.PushQueue, notifyTo.repudiation()
		e, err := pushauth.NewEngine(cfg)
		if err != nil {
			_ = store.Close()
			return nil, err
		}
		if notifyTo == nil {
			logger.Warn("notify is not configured: bindings, locks and fraud reports wait in the outbox and no customer is told (NIST SP 800-63B rev 4 §4.1.2.2 asks that every binding be announced)")
			return pooledEngine{Engine: e, binder: enrol.New(e), startup: startup, drain: new(atomic.Int64)}, nil
		}
		d, err := notify.Start(e, notifyTo.Config)
		if err != nil {
			_ = e.Close()
			_ = store.Close()
			return nil, fmt.Errorf("onepush: %w", err)
		}
		return pooledEngine{Engine: e, binder: enrol.New(e), notify: d, startup: startup, drain: new(atomic.Int64)}, nil
	})
	if err != nil {
		return fmt.Errorf("onepush: starting the engine: %w", err)
	}
	pooled := val.(pooledEngine)
	pooled.drain.Store(int64(a.drainTimeout()))
	a.engine, a.binder = pooled.Engine, pooled.binder
	a.engine.SetPushers(a.pushers)
	if loaded {
		// A reload that kept the engine: the limits apply now; what the
		// engine read at start says so when it changed.
		a.engine.Reconfigure(a.limits())
		for _, name := range slices.Sorted(maps.Keys(startup)) {
			if was := pooled.startup[name]; was != startup[name] {
				logger.Warn("onepush: "+name+" changed but takes effect only when the engine restarts (a restart of Caddy, or a change of the store or the encryption keys)",
					"running", was, "configured", startup[name])
			}
		}
	}
	return nil
}

// limits are the engine settings a reload changes on the running engine.
func (a *App) limits() pushauth.Config {
	return pushauth.Config{
		MaxHeld: a.MaxHeld, MaxHeldPerUser: a.MaxHeldPerUser, MaxHeldPerIP: a.MaxHeldPerIP,
		MaxPolls: a.MaxPolls, MaxPollsPerIP: a.MaxPollsPerIP,
		PushRate: a.PushRate, MaxFailures: a.MaxFailures, UnboundCredentialTTL: time.Duration(a.UnboundCredentialTTL),
		PushStreak:           pushauth.PushStreakLimits{Free: a.PushBackoffAfter, Cap: a.PushDailyCap, Backoff: time.Duration(a.PushBackoff)},
		MaxAuthenticationAge: time.Duration(a.MaxAuthenticationAge),
	}
}

// restartOnly are the settings the engine reads only when it starts, by
// option name: a reload that changes one logs that it waits for a restart.
func (a *App) restartOnly() map[string]string {
	n := a.Notify
	if n == nil {
		n = new(NotifyConfig)
	}
	// 0 is the option left out: the default.
	value := func(n int64, s string) string {
		if n == 0 {
			return "default"
		}
		return s
	}
	return map[string]string{
		"push_workers":     value(int64(a.PushWorkers), strconv.Itoa(a.PushWorkers)),
		"push_queue":       value(int64(a.PushQueue), strconv.Itoa(a.PushQueue)),
		"audit_retention":  value(int64(a.AuditRetention), time.Duration(a.AuditRetention).String()),
		"audit_max_events": value(int64(a.AuditMaxEvents), strconv.Itoa(a.AuditMaxEvents)),
		// The secret is compared by its hash, never logged.
		"notify": n.URL + " " + n.Repudiation + " " + time.Duration(n.Timeout).String() + " " + fingerprint(n.Secret),
	}
}

// fingerprint names a secret without revealing it.
func fingerprint(s string) string {
	if s == "" {
		return ""
	}
	h := sha256.Sum256([]byte(s))
	return "secret:" + hex.EncodeToString(h[:4])
}

// storeEnv is what the app tells its store when it opens it.
func (a *App) storeEnv(sealer *seal.Sealer, logger *slog.Logger) StoreEnv {
	var repudiation string
	if a.Notify != nil {
		// A restore's announcements carry the notify block's text (a CLI
		// run needs no notify secret for it).
		repudiation = caddy.NewReplacer().ReplaceAll(a.Notify.Repudiation, "")
	}
	return StoreEnv{Sealer: sealer, Logger: logger, AuditRetention: time.Duration(a.AuditRetention),
		AuditMaxEvents: a.AuditMaxEvents, Repudiation: repudiation}
}

// loadStore loads the store module (the embedded store when none is
// configured) and returns its config as loaded.
func (a *App) loadStore(ctx caddy.Context) (string, error) {
	if len(a.StoreRaw) == 0 {
		a.StoreRaw = json.RawMessage(`{"type":"embedded"}`)
	}
	raw := string(a.StoreRaw)
	var named struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(a.StoreRaw, &named); err != nil {
		return "", fmt.Errorf("onepush: store: %w", err)
	}
	mod, err := ctx.LoadModule(a, "StoreRaw")
	if err != nil {
		return "", fmt.Errorf("onepush: loading the store: %w", err)
	}
	a.store, a.storeType = mod.(StoreOpener), named.Type
	return raw, nil
}

// Validate checks the config.
func (a *App) Validate() error {
	if a.PushBackoffAfter < 0 || a.PushDailyCap < 0 || (a.PushBackoff != 0 && time.Duration(a.PushBackoff) < time.Second) {
		return fmt.Errorf("onepush: push_backoff_after %d and push_daily_cap %d must not be negative, push_backoff %s not under 1s",
			a.PushBackoffAfter, a.PushDailyCap, time.Duration(a.PushBackoff))
	}
	if a.AuditRetention < 0 || a.AuditMaxEvents < 0 || a.UninstallGrace < 0 || a.PushRate < 0 {
		return fmt.Errorf("onepush: audit_retention %s, audit_max_events %d, uninstall_grace %s and push_rate %d must not be negative",
			time.Duration(a.AuditRetention), a.AuditMaxEvents, time.Duration(a.UninstallGrace), a.PushRate)
	}
	if a.MaxHeld < 0 || a.PushWorkers < 0 || a.PushQueue < 0 || a.MaxFailures < 0 {
		return fmt.Errorf("onepush: max_held, push_workers, push_queue and max_failures must not be negative")
	}
	if a.DrainTimeout < 0 {
		return fmt.Errorf("onepush: drain_timeout %s must not be negative", time.Duration(a.DrainTimeout))
	}
	if a.UnboundCredentialTTL < 0 {
		return fmt.Errorf("onepush: unbound_credential_ttl %s must not be negative", time.Duration(a.UnboundCredentialTTL))
	}
	if a.MaxAuthenticationAge < 0 || time.Duration(a.MaxAuthenticationAge) > pushauth.MaxAuthentication {
		return fmt.Errorf("onepush: max_authentication_age %s must be between 0 (the default, %s) and %s: SP 800-63B rev 4 §3.1.3 voids an out-of-band authentication not completed within 10 minutes",
			time.Duration(a.MaxAuthenticationAge), pushauth.MaxAuthentication, pushauth.MaxAuthentication)
	}
	if a.MaxPolls < 0 || a.MaxPollsPerIP < 0 {
		return fmt.Errorf("onepush: max_polls %d and max_polls_per_ip %d must not be negative", a.MaxPolls, a.MaxPollsPerIP)
	}
	if a.MaxHeldPerUser < 0 || a.MaxHeldPerIP < 0 || a.BodyReadTimeout < 0 {
		return fmt.Errorf("onepush: max_held_per_user %d, max_held_per_ip %d and body_read_timeout %s must not be negative",
			a.MaxHeldPerUser, a.MaxHeldPerIP, time.Duration(a.BodyReadTimeout))
	}
	return nil
}

// Start opens the embedded store's file; the other stores are ready from
// Provision. `caddy validate` provisions without starting, so it never
// takes the file's lock from the running gateway.
func (a *App) Start() error {
	if err := checkPlacement(a.ctx); err != nil {
		return err
	}
	if s, ok := a.engine.Store().(*embedded.Store); ok {
		if err := s.Start(); err != nil {
			return fmt.Errorf("onepush: %w", err)
		}
	}
	a.stopWatch = make(chan struct{})
	go a.watchExit(a.stopWatch)
	return nil
}

// Stop drains the engine when Caddy exits (see drain.go); on a reload the
// engine lives on, or Cleanup's release drains it.
func (a *App) Stop() error {
	if caddy.Exiting() {
		a.engine.Drain(a.drainTimeout())
	}
	return nil
}

// Cleanup releases this config's hold on the engine.
func (a *App) Cleanup() error {
	if a.stopWatch != nil {
		close(a.stopWatch)
		a.stopWatch = nil
	}
	if a.key != "" {
		_, err := engines.Delete(a.key)
		return err
	}
	return nil
}

// loadApp returns the onepush app of this config (provisioning it with
// defaults when the config has no global onepush block); who names the
// handler in the error.
func loadApp(ctx caddy.Context, who string) (*App, error) {
	v, err := ctx.App("onepush")
	if err != nil {
		return nil, fmt.Errorf("%s: loading the onepush app: %w", who, err)
	}
	return v.(*App), nil
}

// sealer builds the Sealer from the configured keys, expanding
// placeholders; nil, without error, when no key is configured (the caller
// decides whether its store can run without one).
func (a *App) sealer() (*seal.Sealer, error) {
	if a.EncryptionKey == "" {
		if len(a.PreviousEncryptionKeys) > 0 {
			return nil, fmt.Errorf("onepush: previous_encryption_keys without encryption_key")
		}
		return nil, nil
	}
	keys := append([]string{a.EncryptionKey}, a.PreviousEncryptionKeys...)
	repl := caddy.NewReplacer()
	for i, k := range keys {
		v, err := repl.ReplaceOrErr(k, true, true)
		if err != nil {
			return nil, fmt.Errorf("onepush: encryption key %d: %w", i, err)
		}
		keys[i] = v
	}
	s, err := seal.ParseKeys(keys[0], keys[1:]...)
	if err != nil {
		return nil, fmt.Errorf("onepush: %w", err)
	}
	return s, nil
}

// sealerAndID is sealer() and a fingerprint of the keys it was built from
// ("" without keys), which names no key.
func (a *App) sealerAndID() (*seal.Sealer, string, error) {
	s, err := a.sealer()
	if err != nil || s == nil {
		return s, "", err
	}
	repl := caddy.NewReplacer()
	h := sha256.New()
	for _, k := range append([]string{a.EncryptionKey}, a.PreviousEncryptionKeys...) {
		v, _ := repl.ReplaceOrErr(k, true, true) // sealer() checked them
		h.Write([]byte(v + "\x00"))
	}
	return s, hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// Engine is the shared engine (for handlers and tools in this process).
func (a *App) Engine() *pushauth.Engine { return a.engine }

// Binder binds phones to the shared engine's users.
func (a *App) Binder() *enrol.Binder { return a.binder }

func (a *App) uninstallGrace() time.Duration { return time.Duration(a.UninstallGrace) }

func (a *App) bodyReadTimeout() time.Duration { return time.Duration(a.BodyReadTimeout) }

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
