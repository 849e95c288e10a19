package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/embedded"
)

// EmbeddedStore is the default store: one file
// that keeps credentials, bindings, user states and deadlines, failure
// counts and locks, learned sessions, used security codes and the audit
// trail across restarts, for a gateway that runs alone. Challenges stay in
// memory: a restart cancels them.
//
// The file is created by `caddy onepush store init`, never by starting
// Caddy; a missing or replaced file stops Caddy with a message naming it.
// What shows that a store existed (its identity record) and, without
// encryption_key, its generated sealing key live in Caddy's config
// directory (onepush/embedded-<hash of the path>.json and .key), not next
// to the data file, so a copy of the data directory holds no usable
// secret and losing it is seen as a loss.
type EmbeddedStore struct {
	// Path is the data file. Placeholders are expanded. Default:
	// onepush/store.db under Caddy's data directory.
	Path string `json:"path,omitempty"`

	// AutoInit creates the file at the first start when nothing shows that
	// a store existed (no identity record): for the demo and tests. A file
	// lost later still stops Caddy, unless Caddy's config directory was
	// lost with it.
	AutoInit bool `json:"auto_init,omitempty"`

	path string // Path resolved
}

// CaddyModule returns the Caddy module information.
func (EmbeddedStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "onepush.stores.embedded",
		New: func() caddy.Module { return new(EmbeddedStore) },
	}
}

// Provision resolves the data file: placeholders expanded, made absolute.
func (c *EmbeddedStore) Provision(ctx caddy.Context) error {
	if c.AutoInit {
		ctx.Slogger().Warn("store embedded: auto_init is set: a start that finds neither the data file nor its identity record (data and config directories lost together) creates an empty store with every user not enrolled instead of refusing; it is for demos and tests, a bank removes it once `caddy onepush store init` has created the store")
	}
	path := filepath.Join(caddy.AppDataDir(), "onepush", "store.db")
	if c.Path != "" {
		p, err := caddy.NewReplacer().ReplaceOrErr(c.Path, true, true)
		if err != nil {
			return fmt.Errorf("store embedded: path: %w", err)
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("store embedded: path %q: %w", path, err)
	}
	c.path = abs
	return nil
}

// Validate refuses a data file in a directory that cannot be one.
func (c *EmbeddedStore) Validate() error {
	if filepath.Base(c.path) == "." || filepath.Base(c.path) == string(filepath.Separator) {
		return fmt.Errorf("store embedded: path %q names no file", c.path)
	}
	return nil
}

// OpenStore opens the file (Caddy's Start takes its lock, see App.Start);
// the audit trail is kept in it.
func (c *EmbeddedStore) OpenStore(env StoreEnv) (pushauth.Store, pushauth.AuditLog, error) {
	s, err := embedded.New(c.options(env))
	if err != nil {
		return nil, nil, err
	}
	return s, s.AuditLog(), nil
}

// options are the files and the key of the store: what shows that a store
// existed and its generated key live in Caddy's config directory, named
// by the hash of the data file's path.
func (c *EmbeddedStore) options(env StoreEnv) embedded.Options {
	h := sha256.Sum256([]byte(c.path))
	name := filepath.Join(caddy.AppConfigDir(), "onepush", "embedded-"+hex.EncodeToString(h[:8]))
	return embedded.Options{
		Path:           c.path,
		IdentityFile:   name + ".json",
		KeyFile:        name + ".key",
		Sealer:         env.Sealer,
		AutoInit:       c.AutoInit,
		AuditRetention: env.AuditRetention,
		AuditMaxEvents: env.AuditMaxEvents,
		Repudiation:    env.Repudiation,
		Logger:         env.Logger,
	}
}
