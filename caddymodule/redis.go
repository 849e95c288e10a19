package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
	redisstore "github.com/onepush/onepush/pushauth/store/redis"
)

// RedisStore is the store of several Caddy instances sharing one Redis
// (single, Sentinel or Cluster). Every string field may hold Caddy placeholders such as
// {env.REDIS_PASSWORD}; they are expanded when the store is opened.
type RedisStore struct {
	// Addresses are host:port pairs: one for a single server, several
	// for a Cluster (seed nodes), or the Sentinels when master_name is
	// set. Default: 127.0.0.1:6379.
	Addresses []string `json:"addresses,omitempty"`

	// MasterName selects Sentinel: the name of the master the Sentinels
	// at Addresses monitor.
	MasterName string `json:"master_name,omitempty"`

	// Cluster uses the Cluster protocol even with a single seed address
	// (several addresses without master_name always mean Cluster).
	Cluster bool `json:"cluster,omitempty"`

	// Username for Redis ACL authentication.
	Username string `json:"username,omitempty"`

	// Password for Redis authentication. Prefer a placeholder such as
	// {env.REDIS_PASSWORD} to a literal.
	Password string `json:"password,omitempty"`

	// DB is the database number (single server and Sentinel; must be 0
	// for Cluster).
	DB int `json:"db,omitempty"`

	// TLS connects over TLS (implied by tls_server_name and
	// tls_insecure_skip_verify).
	TLS bool `json:"tls,omitempty"`

	// TLSServerName is the name to verify the server certificate against
	// when it differs from the host in the address.
	TLSServerName string `json:"tls_server_name,omitempty"`

	// TLSInsecureSkipVerify turns off certificate verification. For
	// testing only: it makes the connection open to interception.
	TLSInsecureSkipVerify bool `json:"tls_insecure_skip_verify,omitempty"`

	// Prefix starts every key and the pub/sub channel, so several
	// deployments can share one Redis. Default "onepush:".
	Prefix string `json:"prefix,omitempty"`

	// MinReplicas is how many replicas must acknowledge (WAIT) a write
	// whose loss in a failover would allow a replay or undo a lock (used
	// tokens and codes, approvals, failure counts and locks) before it
	// counts; fewer within replica_timeout fail the operation closed (503,
	// nothing forwarded). Default 1 with Sentinel (master_name), 0
	// otherwise. This narrows the window a failover can lose such a write
	// in; it does not close it.
	MinReplicas *int `json:"min_replicas,omitempty"`

	// ReplicaTimeout bounds the wait for min_replicas. Default 500ms.
	ReplicaTimeout caddy.Duration `json:"replica_timeout,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "onepush.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// Provision sets the defaults that do not depend on placeholders.
func (c *RedisStore) Provision(caddy.Context) error {
	if len(c.Addresses) == 0 {
		c.Addresses = []string{"127.0.0.1:6379"}
	}
	return nil
}

// Validate refuses settings Redis would refuse later, or silently ignore.
func (c *RedisStore) Validate() error {
	if c.DB < 0 || c.ReplicaTimeout < 0 || (c.MinReplicas != nil && *c.MinReplicas < 0) {
		return fmt.Errorf("store redis: db %d, min_replicas and replica_timeout %s must not be negative", c.DB, time.Duration(c.ReplicaTimeout))
	}
	if c.Cluster && c.DB != 0 {
		return fmt.Errorf("store redis: db %d: a Redis Cluster has database 0 only", c.DB)
	}
	return nil
}

// OpenStore connects (see open); the audit trail is a Redis stream every
// instance shares.
func (c *RedisStore) OpenStore(env StoreEnv) (pushauth.Store, pushauth.AuditLog, error) {
	s, err := c.open(caddy.NewReplacer(), env.Sealer)
	if err != nil {
		return nil, nil, err
	}
	return s, redisstore.NewAuditLog(s, env.AuditRetention, env.AuditMaxEvents), nil
}

// minReplicas is MinReplicas or its default.
func (c *RedisStore) minReplicas() int {
	switch {
	case c.MinReplicas != nil:
		return *c.MinReplicas
	case c.MasterName != "":
		return 1
	}
	return 0
}

// open expands placeholders and connects. It fails when Redis does not
// answer within ten seconds, or when it lost the data this instance used
// before (the epoch file under Caddy's data directory names an epoch Redis
// no longer holds); once open, the store rides out outages. The store
// seals its secrets with sealer and refuses to start without it.
func (c *RedisStore) open(repl *caddy.Replacer, sealer *seal.Sealer) (*redisstore.Store, error) {
	if c == nil {
		c = new(RedisStore)
	}
	expand := func(s string) string {
		if repl == nil {
			return s
		}
		return repl.ReplaceKnown(s, "")
	}
	var addrs []string
	for _, a := range c.Addresses {
		addrs = append(addrs, strings.Fields(expand(a))...)
	}
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:6379"}
	}
	opts := redisstore.Options{
		Addrs:      addrs,
		MasterName: expand(c.MasterName),
		Cluster:    c.Cluster,
		Username:   expand(c.Username),
		Password:   expand(c.Password),
		DB:         c.DB,
		Prefix:     expand(c.Prefix),

		Sealer:         sealer,
		MinReplicas:    c.minReplicas(),
		ReplicaTimeout: time.Duration(c.ReplicaTimeout),
	}
	if sealer == nil {
		return nil, fmt.Errorf("store redis: no encryption_key: the store keeps stored requests and security-code secrets, which it seals before they reach Redis; set encryption_key to base64 of 32 random bytes (`openssl rand -base64 32`), e.g. {env.ONEPUSH_KEY}")
	}
	opts.EpochFile = epochFile(opts)
	if c.TLS || c.TLSServerName != "" || c.TLSInsecureSkipVerify {
		opts.TLS = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         expand(c.TLSServerName),
			InsecureSkipVerify: c.TLSInsecureSkipVerify, //nolint:gosec // documented as testing only
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("store redis: %w", err)
	}
	return s, nil
}

// epochFile is where this instance records the epoch of the Redis data it
// uses (see pushauth/store/redis/epoch.go), under Caddy's data directory:
// one file per Redis (addresses, master name, db) and prefix, so a Redis
// that comes back empty is refused instead of every user looking not
// enrolled.
func epochFile(o redisstore.Options) string {
	prefix := o.Prefix
	if prefix == "" {
		prefix = redisstore.DefaultPrefix
	}
	addrs := slices.Sorted(slices.Values(o.Addrs))
	h := sha256.Sum256([]byte(strings.Join(addrs, ",") + "\x00" + o.MasterName + "\x00" + prefix + "\x00" + strconv.Itoa(o.DB)))
	return filepath.Join(caddy.AppDataDir(), "onepush", "redis-epoch-"+hex.EncodeToString(h[:8]))
}
