package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
	"github.com/onepush/onepush/pushauth/store/embedded"
	redisstore "github.com/onepush/onepush/pushauth/store/redis"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the onepush app: it owns the engine (store, held requests, push
// senders) that the onepush handlers share. The engine lives in a usage
// pool keyed by the store config, so a config reload that keeps the store
// keeps every held request.
type App struct {
	// Store selects where credentials, users, sessions and the audit trail
	// live. Default: the embedded store (one instance; a file under Caddy's
	// data directory, created by `caddy onepush store init`).
	Store *StoreConfig `json:"store,omitempty"`

	// WebhookAllow enables the "webhook" push platform for push tokens that
	// start with one of these URL prefixes (each an absolute http(s) URL
	// ending in "/"). Empty: webhook push is off.
	WebhookAllow []string `json:"webhook_allow,omitempty"`

	// APNs enables the "apns" push platform (iOS apps) through Apple's
	// push service. Secrets may be Caddy placeholders ({env.NAME}).
	APNs *APNsConfig `json:"apns,omitempty"`

	// FCM enables the "fcm" push platform (Android apps) through Firebase
	// Cloud Messaging.
	FCM *FCMConfig `json:"fcm,omitempty"`

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

	engine *pushauth.Engine
	key    string
}

// StoreConfig chooses the store.
type StoreConfig struct {
	// Type is "embedded" (default: one instance, a durable file),
	// "memory" (tests and demos: nothing survives a restart) or "redis"
	// (several instances sharing one Redis: single, Sentinel or Cluster).
	Type string `json:"type,omitempty"`

	// Redis configures the Redis store (Type "redis"). Default: a single
	// Redis at 127.0.0.1:6379.
	Redis *RedisConfig `json:"redis,omitempty"`

	// Embedded configures the embedded store (Type "embedded").
	Embedded *EmbeddedConfig `json:"embedded,omitempty"`
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

type pooledEngine struct{ *pushauth.Engine }

func (p pooledEngine) Destruct() error {
	err := p.Engine.Close()
	if cerr := p.Engine.Store().Close(); err == nil {
		err = cerr
	}
	return err
}

// Provision builds or reuses the engine.
func (a *App) Provision(ctx caddy.Context) error {
	if a.Store == nil {
		a.Store = &StoreConfig{Type: "embedded"}
	}
	if a.Store.Type == "" {
		a.Store.Type = "embedded"
	}
	keyJSON, err := json.Marshal(a.Store)
	if err != nil {
		return err
	}
	sealer, keysID, err := a.sealerAndID()
	if err != nil {
		return err
	}
	// New keys need a new store, hence a new engine.
	a.key = "onepush-engine:" + string(keyJSON) + ":keys:" + keysID

	pushers := map[string]pushauth.Pusher{}
	if len(a.WebhookAllow) > 0 {
		wp, err := pushauth.NewWebhookPusher(a.WebhookAllow, nil)
		if err != nil {
			return fmt.Errorf("onepush: webhook_allow: %w", err)
		}
		pushers["webhook"] = wp
	}
	repl := caddy.NewReplacer()
	if a.APNs != nil {
		p, err := a.APNs.pusher(repl)
		if err != nil {
			return err
		}
		pushers["apns"] = p
	}
	if a.FCM != nil {
		p, err := a.FCM.pusher(ctx, repl)
		if err != nil {
			return err
		}
		pushers["fcm"] = p
	}
	var notify *pushauth.NotifyConfig
	if a.Notify != nil {
		if notify, err = a.Notify.config(repl); err != nil {
			return err
		}
	}
	logger := ctx.Slogger()
	if a.Store.Type == "memory" {
		logger.Warn("store memory: nothing survives a restart of Caddy (bindings, locks, suspensions, learned sessions, used security codes, the audit trail); use it for tests and demos only, the default embedded store keeps them")
	}
	if a.Store.Type == "embedded" && a.Store.Embedded != nil && a.Store.Embedded.AutoInit {
		logger.Warn("store embedded: auto_init is set: a start that finds neither the data file nor its identity record (data and config directories lost together) creates an empty store with every user not enrolled instead of refusing; it is for demos and tests, a bank removes it once `caddy onepush store init` has created the store")
	}
	if err := metrics.register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("onepush: registering metrics: %w", err)
	}
	val, _, err := engines.LoadOrNew(a.key, func() (caddy.Destructor, error) {
		store, err := a.newStore(sealer, logger)
		if err != nil {
			return nil, err
		}
		e, err := pushauth.NewEngine(pushauth.Config{
			Store:          store,
			Pushers:        pushers,
			Logger:         logger,
			MaxHeld:        a.MaxHeld,
			PushWorkers:    a.PushWorkers,
			PushQueue:      a.PushQueue,
			MaxFailures:    a.MaxFailures,
			MaxHeldPerUser: a.MaxHeldPerUser,
			MaxHeldPerIP:   a.MaxHeldPerIP,
			Audit:          a.newAuditLog(store),
			Metrics:        metrics,
			PushRate:       a.PushRate,

			Notify:               notify,
			UnboundCredentialTTL: time.Duration(a.UnboundCredentialTTL),
			MaxPolls:             a.MaxPolls,
			MaxPollsPerIP:        a.MaxPollsPerIP,
		})
		if err != nil {
			_ = store.Close()
			return nil, err
		}
		return pooledEngine{e}, nil
	})
	if err != nil {
		return fmt.Errorf("onepush: starting the engine: %w", err)
	}
	a.engine = val.(pooledEngine).Engine
	a.engine.SetPushers(pushers)
	return nil
}

// newAuditLog keeps the audit trail where the store is: a Redis stream
// shared by every instance, the embedded store's file, or memory.
func (a *App) newAuditLog(store pushauth.Store) pushauth.AuditLog {
	if rs, ok := store.(*redisstore.Store); ok {
		return redisstore.NewAuditLog(rs, time.Duration(a.AuditRetention), a.AuditMaxEvents)
	}
	if es, ok := store.(*embedded.Store); ok {
		return es.AuditLog()
	}
	return pushauth.NewMemoryAuditLog(time.Duration(a.AuditRetention), a.AuditMaxEvents, nil)
}

func (a *App) newStore(sealer *seal.Sealer, logger *slog.Logger) (pushauth.Store, error) {
	switch a.Store.Type {
	case "memory":
		return pushauth.NewMemoryStore(nil), nil
	case "redis":
		s, err := a.Store.Redis.open(caddy.NewReplacer(), sealer)
		if err != nil {
			return nil, err
		}
		return s, nil
	case "embedded":
		opts, err := a.embeddedOptions(logger)
		if err != nil {
			return nil, err
		}
		return embedded.New(opts)
	default:
		return nil, fmt.Errorf("store type %q: must be embedded, memory or redis", a.Store.Type)
	}
}

// Validate checks the config.
func (a *App) Validate() error {
	if a.AuditRetention < 0 || a.AuditMaxEvents < 0 || a.UninstallGrace < 0 || a.PushRate < 0 {
		return fmt.Errorf("onepush: audit_retention %s, audit_max_events %d, uninstall_grace %s and push_rate %d must not be negative",
			time.Duration(a.AuditRetention), a.AuditMaxEvents, time.Duration(a.UninstallGrace), a.PushRate)
	}
	if a.MaxHeld < 0 || a.PushWorkers < 0 || a.PushQueue < 0 || a.MaxFailures < 0 {
		return fmt.Errorf("onepush: max_held, push_workers, push_queue and max_failures must not be negative")
	}
	if a.UnboundCredentialTTL < 0 {
		return fmt.Errorf("onepush: unbound_credential_ttl %s must not be negative", time.Duration(a.UnboundCredentialTTL))
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
	if s, ok := a.engine.Store().(*embedded.Store); ok {
		if err := s.Start(); err != nil {
			return fmt.Errorf("onepush: %w", err)
		}
	}
	return nil
}

// Stop is a no-op: Cleanup releases the engine when no config uses it.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's hold on the engine.
func (a *App) Cleanup() error {
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

func (a *App) uninstallGrace() time.Duration { return time.Duration(a.UninstallGrace) }

func (a *App) bodyReadTimeout() time.Duration { return time.Duration(a.BodyReadTimeout) }

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
