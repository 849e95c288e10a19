package caddymodule

import (
	"log/slog"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
	"github.com/onepush/onepush/pushauth/store/memory"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
	caddy.RegisterModule(RedisStore{})
	caddy.RegisterModule(EmbeddedStore{})
}

// StoreOpener is what a module in the onepush.stores namespace provides:
// the store and where its audit trail goes. The app opens it once per
// engine, so a reload that keeps the store's config keeps the engine and
// its held requests; the engine closes the store.
type StoreOpener interface {
	OpenStore(env StoreEnv) (pushauth.Store, pushauth.AuditLog, error)
}

// StoreEnv is what the onepush app tells a store when it opens it.
type StoreEnv struct {
	// Sealer seals the secrets a store keeps outside the process; nil
	// without encryption_key.
	Sealer *seal.Sealer
	Logger *slog.Logger
	// AuditRetention and AuditMaxEvents bound the audit trail (0: the
	// store's defaults).
	AuditRetention time.Duration
	AuditMaxEvents int
	// Repudiation is the notify block's text, which the announcements of a
	// restore carry.
	Repudiation string
}

// MemoryStore keeps everything in the process: nothing survives a restart
// of Caddy (bindings, locks, learned sessions, used codes, the audit
// trail). For tests and demos only.
type MemoryStore struct{}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "onepush.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// Provision warns that nothing survives a restart.
func (*MemoryStore) Provision(ctx caddy.Context) error {
	ctx.Slogger().Warn("store memory: nothing survives a restart of Caddy (bindings, locks, suspensions, learned sessions, used security codes, the audit trail); use it for tests and demos only, the default embedded store keeps them")
	return nil
}

// OpenStore returns an empty store and an audit log in memory.
func (*MemoryStore) OpenStore(env StoreEnv) (pushauth.Store, pushauth.AuditLog, error) {
	return memory.New(nil), memory.NewAuditLog(env.AuditRetention, env.AuditMaxEvents, nil), nil
}

// Interface guards
var (
	_ caddy.Provisioner = (*MemoryStore)(nil)
	_ StoreOpener       = (*MemoryStore)(nil)
	_ StoreOpener       = (*RedisStore)(nil)
	_ caddy.Provisioner = (*RedisStore)(nil)
	_ caddy.Validator   = (*RedisStore)(nil)
	_ StoreOpener       = (*EmbeddedStore)(nil)
	_ caddy.Provisioner = (*EmbeddedStore)(nil)
	_ caddy.Validator   = (*EmbeddedStore)(nil)
)
