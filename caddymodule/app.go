package caddymodule

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/onepush/onepush/pushauth"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the onepush app: it owns the engine (store, held requests, push
// senders) that the onepush handlers share. The engine lives in a usage
// pool keyed by the store config, so a config reload that keeps the store
// keeps every held request.
type App struct {
	// Store selects where challenges, credentials, users and sessions live.
	// Default: in memory (one instance only).
	Store *StoreConfig `json:"store,omitempty"`

	// WebhookAllow enables the "webhook" push platform for push tokens that
	// start with one of these URL prefixes (each an absolute http(s) URL
	// ending in "/"). Empty: webhook push is off.
	WebhookAllow []string `json:"webhook_allow,omitempty"`

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

	// UninstallGrace is how long users of an uninstalled credential may
	// still log in with their password only. Default 0 (none).
	UninstallGrace caddy.Duration `json:"uninstall_grace,omitempty"`

	engine *pushauth.Engine
	key    string
}

// StoreConfig chooses the store.
type StoreConfig struct {
	// Type is "memory" (default).
	Type string `json:"type,omitempty"`
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
		a.Store = &StoreConfig{Type: "memory"}
	}
	if a.Store.Type == "" {
		a.Store.Type = "memory"
	}
	keyJSON, err := json.Marshal(a.Store)
	if err != nil {
		return err
	}
	a.key = "onepush-engine:" + string(keyJSON)

	pushers := map[string]pushauth.Pusher{}
	if len(a.WebhookAllow) > 0 {
		wp, err := pushauth.NewWebhookPusher(a.WebhookAllow, nil)
		if err != nil {
			return fmt.Errorf("onepush: webhook_allow: %w", err)
		}
		pushers["webhook"] = wp
	}
	logger := ctx.Slogger()
	val, _, err := engines.LoadOrNew(a.key, func() (caddy.Destructor, error) {
		store, err := a.newStore()
		if err != nil {
			return nil, err
		}
		e, err := pushauth.NewEngine(pushauth.Config{
			Store:       store,
			Pushers:     pushers,
			Logger:      logger,
			MaxHeld:     a.MaxHeld,
			PushWorkers: a.PushWorkers,
			PushQueue:   a.PushQueue,
			MaxFailures: a.MaxFailures,
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

func (a *App) newStore() (pushauth.Store, error) {
	switch a.Store.Type {
	case "memory":
		return pushauth.NewMemoryStore(nil), nil
	default:
		return nil, fmt.Errorf("store type %q: must be memory", a.Store.Type)
	}
}

// Validate checks the config.
func (a *App) Validate() error {
	if a.MaxHeld < 0 || a.PushWorkers < 0 || a.PushQueue < 0 || a.MaxFailures < 0 {
		return fmt.Errorf("onepush: max_held, push_workers, push_queue and max_failures must not be negative")
	}
	return nil
}

// Start is a no-op: the engine runs from Provision.
func (a *App) Start() error { return nil }

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

// Engine is the shared engine (for handlers and tools in this process).
func (a *App) Engine() *pushauth.Engine { return a.engine }

func (a *App) uninstallGrace() time.Duration { return time.Duration(a.UninstallGrace) }

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
