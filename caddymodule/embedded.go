package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/onepush/onepush/pushauth/store/embedded"
)

// EmbeddedConfig configures the embedded store (the default): one file
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
type EmbeddedConfig struct {
	// Path is the data file. Placeholders are expanded. Default:
	// onepush/store.db under Caddy's data directory.
	Path string `json:"path,omitempty"`

	// AutoInit creates the file at the first start when nothing shows that
	// a store existed (no identity record): for the demo and tests. A file
	// lost later still stops Caddy, unless Caddy's config directory was
	// lost with it.
	AutoInit bool `json:"auto_init,omitempty"`
}

// embeddedOptions resolves the files and the key of the embedded store
// from the app's config.
func (a *App) embeddedOptions(logger *slog.Logger) (embedded.Options, error) {
	c := a.Store.Embedded
	if c == nil {
		c = new(EmbeddedConfig)
	}
	path := filepath.Join(caddy.AppDataDir(), "onepush", "store.db")
	if c.Path != "" {
		p, err := caddy.NewReplacer().ReplaceOrErr(c.Path, true, true)
		if err != nil {
			return embedded.Options{}, fmt.Errorf("store embedded: path: %w", err)
		}
		path = p
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return embedded.Options{}, fmt.Errorf("store embedded: path %q: %w", path, err)
	}
	sealer, err := a.sealer()
	if err != nil {
		return embedded.Options{}, err
	}
	// A restore's announcements carry the notify block's text (a CLI run
	// needs no notify secret for it).
	var repudiation string
	if a.Notify != nil {
		repudiation = caddy.NewReplacer().ReplaceAll(a.Notify.Repudiation, "")
	}
	h := sha256.Sum256([]byte(path))
	name := filepath.Join(caddy.AppConfigDir(), "onepush", "embedded-"+hex.EncodeToString(h[:8]))
	return embedded.Options{
		Path:           path,
		IdentityFile:   name + ".json",
		KeyFile:        name + ".key",
		Sealer:         sealer,
		AutoInit:       c.AutoInit,
		AuditRetention: time.Duration(a.AuditRetention),
		AuditMaxEvents: a.AuditMaxEvents,
		Repudiation:    repudiation,
		Logger:         logger,
	}, nil
}

// parseEmbeddedBlock parses the optional block after "store embedded";
// the dispenser is on the "embedded" token:
//
//	store embedded {
//	    path <file>
//	    auto_init
//	}
func parseEmbeddedBlock(d *caddyfile.Dispenser) (*EmbeddedConfig, error) {
	c := new(EmbeddedConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "path":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			c.Path = d.Val()
			if d.NextArg() {
				return nil, d.Errf("path takes one argument")
			}
		case "auto_init":
			if d.NextArg() {
				return nil, d.Errf("auto_init takes no argument")
			}
			c.AutoInit = true
		default:
			return nil, d.Errf("unknown store embedded option %q", d.Val())
		}
	}
	return c, nil
}
