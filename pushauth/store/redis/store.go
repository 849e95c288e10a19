// Package redis is the pushauth.Store for several Caddy instances sharing
// one Redis (single server, Sentinel or Cluster) through go-redis v9.
//
// # Key layout
//
// Every key starts with the configured prefix <p> (default "onepush:").
// Keys that one Lua script touches together share a hash tag ({u:<user>}),
// so the store works on Redis Cluster; a user's challenges therefore live
// in that user's slot.
//
//	key                                   type    value                                     TTL
//	<p>cred:<credential id>               string  credential JSON, sealed (seal.go)         none
//	<p>{c:<credential id>}:users          set     keys of users bound to the credential     none
//	<p>{c:<credential id>}:pending        zset    challenge ids, score = expiry (Unix ms)   latest expiry among members
//	<p>{u:<user key>}:user                string  user JSON                                 none
//	<p>{u:<user key>}:pending             string  id of the user's latest challenge (read by earlier versions)  retainUntil of that challenge
//	<p>{u:<user key>}:live                zset    ids of the user's pending challenges, score = expiry (Unix ms)  latest retainUntil among them
//	<p>{u:<user key>}:ch:<challenge id>   string  challenge JSON (without its secrets)      retainUntil
//	<p>{u:<user key>}:sec:<challenge id>  string  its secrets (stored request), sealed      retainUntil (absent when there are none)
//	<p>ch:<challenge id>                  string  "<op>:<user key>" (finds the user's slot) retainUntil
//	<p>jti:<jti>                          string  op token of the first use                 until
//	<p>sess:<session hash>                string  user key                                  session ttl
//	<p>epoch                              string  random value set once (see epoch.go)      none
//	<p>failover:<replication id>          string  when that primary took over, Unix ms      10 minutes (failover.go)
//	<p>resolved                           pub/sub channel: "<id>\n<final JSON>" of every challenge resolved or superseded, without its secrets ("<id>" alone when the record is over 16 KiB)
//
// <op> is a random token per store call; it makes a call that go-redis
// retries after a lost reply idempotent (a retried Resolve that had in fact
// won still reports success, not a conflict). A resolved challenge JSON
// carries it as "_op". A challenge record also carries "repl" (the
// replication ID of the primary it was created on, failover.go) and, while
// an approval waits for its replicas, "_ack" (replication.go); its
// pushauth.ChallengeSecrets are sealed in the :sec: key beside it
// (seal.go).
//
// CreateChallenge (pushauth.PendingRule over the user's pending
// challenges, store the new one, list it as pending) and Resolve (pending
// → final, exactly once)
// are Lua scripts on the user's slot; both PUBLISH the affected challenge
// id and its final record on <p>resolved from inside the script, so the
// instance holding the request releases it without reading Redis again. Watch holds one dedicated
// SUBSCRIBE connection per call, pings it and re-subscribes after an
// outage; messages published while it was down are lost, which the engine
// covers by re-reading held challenges periodically.
//
// The {c:<credential id>} sets and sorted sets are indexes: they are read
// through the records they point to (a user is listed only while its record
// still names the credential, a challenge only while it is pending and
// unexpired), so a race between two instances can leave a stale member but
// never a wrong answer.
package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
)

// Options configure the Redis store.
type Options struct {
	// Addrs are host:port addresses: one for a single server, several for
	// a Cluster (seed nodes), or the Sentinels when MasterName is set.
	Addrs []string
	// MasterName selects Sentinel mode: the name of the monitored master.
	MasterName string
	// Cluster forces Cluster mode with a single seed address.
	Cluster bool
	// Username and Password authenticate to Redis (ACL or requirepass).
	Username, Password string
	// DB is the database number (single and Sentinel only).
	DB int
	// TLS enables TLS with this configuration when not nil.
	TLS *tls.Config
	// Prefix starts every key and the pub/sub channel. Default "onepush:".
	Prefix string
	// Now is the clock for TTLs and expiry checks; nil means time.Now.
	Now func() time.Time
	// EpochFile, when set, is a local file recording the epoch of the
	// Redis data this instance uses (see epoch.go): New refuses to start
	// when it names an epoch Redis no longer holds.
	EpochFile string

	// Sealer seals the secrets the store keeps (stored requests, the
	// security-code secrets of credentials; see seal.go). Required: New
	// refuses to start without it.
	Sealer *seal.Sealer
	// MinReplicas is how many replicas must acknowledge a write whose loss
	// would allow a replay or undo a lock (used token IDs and codes,
	// approvals, failure counts and locks; see replication.go) within
	// ReplicaTimeout before it counts; fewer fail the operation. 0 waits
	// for none.
	MinReplicas int
	// ReplicaTimeout bounds the wait for MinReplicas. Default 500ms.
	ReplicaTimeout time.Duration
}

// Store is a pushauth.Store on Redis. It is safe for concurrent use and for
// use by several processes sharing one Redis and prefix.
type Store struct {
	client  goredis.UniversalClient
	prefix  string
	channel string
	now     func() time.Time

	epoch       string      // value of <prefix>epoch found or created by New
	wiped       atomic.Bool // the last epoch check found it gone or changed
	epochCancel context.CancelFunc
	epochDone   chan struct{}

	owners owners // challenge id → user key, saves the index read

	sealer         *seal.Sealer
	minReplicas    int
	replicaTimeout time.Duration
	primary        primary // the replication ID of the primary, see failover.go

	mu       sync.Mutex
	watches  map[*watch]struct{}
	closed   bool
	closeErr error
}

var _ pushauth.Store = (*Store)(nil)

// DefaultPrefix is the key prefix used when Options.Prefix is empty.
const DefaultPrefix = "onepush:"

// New connects to Redis, checks it answers PING and sets up the epoch
// (epoch.go): it fails when Options.EpochFile records an epoch that Redis
// no longer holds. After New returns, the
// store rides out Redis outages: calls fail while Redis is unreachable and
// work again once it is back (go-redis reconnects by itself), and watches
// re-subscribe.
func New(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redis: no address configured")
	}
	if opts.DB != 0 && opts.MasterName == "" && (len(opts.Addrs) > 1 || opts.Cluster) {
		return nil, errors.New("redis: db must be 0 in cluster mode")
	}
	if opts.DB < 0 {
		return nil, errors.New("redis: db must not be negative")
	}
	if opts.Sealer == nil {
		return nil, errors.New("redis: no encryption key: the store keeps stored requests and security-code secrets, which are sealed before they reach Redis")
	}
	if opts.MinReplicas < 0 {
		return nil, fmt.Errorf("redis: min_replicas %d must not be negative", opts.MinReplicas)
	}
	if opts.ReplicaTimeout < 0 {
		return nil, fmt.Errorf("redis: replica_timeout %s must not be negative", opts.ReplicaTimeout)
	}
	if opts.ReplicaTimeout == 0 {
		opts.ReplicaTimeout = DefaultReplicaTimeout
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	// Every new connection reads the replication ID of the server it
	// reaches before it is used: after a failover all connections are new
	// ones, so this instance knows of the new primary before its first
	// command there (failover.go).
	var self atomic.Pointer[Store]
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{
		OnConnect: func(ctx context.Context, cn *goredis.Conn) error {
			if s := self.Load(); s != nil {
				return s.onConnect(ctx, cn)
			}
			return nil
		},
		Addrs:                 opts.Addrs,
		MasterName:            opts.MasterName,
		IsClusterMode:         opts.Cluster,
		Username:              opts.Username,
		Password:              opts.Password,
		DB:                    opts.DB,
		TLSConfig:             opts.TLS,
		ClientName:            "onepush",
		ContextTimeoutEnabled: true,
		// Fail fast while Redis is down (the gate answers 503 rather than
		// holding the visitor): about 0.3 s instead of go-redis's ~1.7 s.
		DialerRetries:      2,
		DialerRetryTimeout: 50 * time.Millisecond,
		MaxRetries:         2,
		MaxRetryBackoff:    200 * time.Millisecond,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis: PING %s: %w", strings.Join(opts.Addrs, ","), err)
	}
	s := &Store{
		client:  client,
		prefix:  prefix,
		channel: prefix + "resolved",
		now:     now,
		watches: make(map[*watch]struct{}),
		owners:  owners{max: maxOwners},

		sealer:         opts.Sealer,
		minReplicas:    opts.MinReplicas,
		replicaTimeout: opts.ReplicaTimeout,
	}
	if err := s.setupEpoch(ctx, opts); err != nil {
		_ = client.Close()
		return nil, err
	}
	if err := s.setupPrimary(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	self.Store(s)
	ectx, cancel := context.WithCancel(context.Background())
	s.epochCancel, s.epochDone = cancel, make(chan struct{})
	go s.epochLoop(ectx, s.epochDone)
	return s, nil
}

// Client returns the underlying go-redis client (for health checks and
// tests).
func (s *Store) Client() goredis.UniversalClient { return s.client }

// Prefix returns the key prefix in use.
func (s *Store) Prefix() string { return s.prefix }

// ---- keys ----

func (s *Store) credKey(id string) string        { return s.prefix + "cred:" + id }
func (s *Store) credUsersKey(id string) string   { return s.prefix + "{c:" + id + "}:users" }
func (s *Store) credPendingKey(id string) string { return s.prefix + "{c:" + id + "}:pending" }
func (s *Store) userTag(key string) string       { return s.prefix + "{u:" + key + "}" }
func (s *Store) userKey(key string) string       { return s.userTag(key) + ":user" }
func (s *Store) userPendingKey(key string) string {
	return s.userTag(key) + ":pending"
}
func (s *Store) userLiveKey(key string) string      { return s.userTag(key) + ":live" }
func (s *Store) challengePrefix(user string) string { return s.userTag(user) + ":ch:" }
func (s *Store) challengeKey(user, id string) string {
	return s.challengePrefix(user) + id
}
func (s *Store) secretsKey(user, id string) string  { return s.userTag(user) + ":sec:" + id }
func (s *Store) challengeIndexKey(id string) string { return s.prefix + "ch:" + id }
func (s *Store) jtiKey(jti string) string           { return s.prefix + "jti:" + jti }
func (s *Store) sessionKey(hash string) string      { return s.prefix + "sess:" + hash }

// Redacted key names for errors: jtis can contain one-time codes and
// session hashes identify live sessions.
func (s *Store) jtiKeyRedacted() string     { return s.prefix + "jti:<redacted>" }
func (s *Store) sessionKeyRedacted() string { return s.prefix + "sess:<redacted>" }

func wrap(op, key string, err error) error {
	return fmt.Errorf("redis: %s %s: %w", op, key, err)
}

// get reads the record at key: ErrNotFound (as notFound says it) when there
// is none.
func (s *Store) get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.client.Get(ctx, key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, s.notFound(ctx, pushauth.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("GET", key, err)
	}
	return b, nil
}

// getAll reads keys in one round trip; each command holds its answer
// (goredis.Nil for a key that is missing).
func (s *Store) getAll(ctx context.Context, keys []string) []*goredis.StringCmd {
	pipe := s.client.Pipeline()
	cmds := make([]*goredis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	_, _ = pipe.Exec(ctx)
	return cmds
}

// set writes the record at key with ttl (0: none).
func (s *Store) set(ctx context.Context, key string, b []byte, ttl time.Duration) error {
	if err := s.client.Set(ctx, key, b, ttl).Err(); err != nil {
		return wrap("SET", key, err)
	}
	return nil
}

func newOp() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

const opLen = 16

// ttlUntil is the time left until t, at least 1 ms so a key never lives
// without a TTL.
func (s *Store) ttlUntil(t time.Time) time.Duration {
	d := t.Sub(s.now())
	if d < time.Millisecond {
		return time.Millisecond
	}
	return d
}

// ---- credentials ----

func (s *Store) PutCredential(ctx context.Context, c *pushauth.Credential) error {
	key := s.credKey(c.ID)
	b, err := s.sealCredential(key, c)
	if err != nil {
		return err
	}
	// A credential nobody bound lives until its ExpiresAt; storing it
	// without one (at binding) drops the TTL.
	var ttl time.Duration
	if !c.ExpiresAt.IsZero() {
		ttl = s.ttlUntil(c.ExpiresAt)
	}
	return s.set(ctx, key, b, ttl)
}

func (s *Store) GetCredential(ctx context.Context, id string) (*pushauth.Credential, error) {
	key := s.credKey(id)
	b, err := s.get(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := s.wipedErr(); err != nil {
		return nil, err
	}
	return s.openCredential(ctx, key, b)
}

// delScript deletes KEYS[1]: a script, so that the store's acknowledged
// path (run) can follow it with WAIT.
var delScript = goredis.NewScript(`return redis.call('DEL', KEYS[1])`)

// DeleteCredential removes a credential (its app was uninstalled). With
// MinReplicas set, a deletion the replicas do not acknowledge fails the
// call (ErrNotReplicated): a failover must not bring the phone back.
func (s *Store) DeleteCredential(ctx context.Context, id string) error {
	key := s.credKey(id)
	cmd, ackErr := s.run(ctx, s.minReplicas > 0, delScript, []string{key})
	if err := cmd.Err(); err != nil {
		return wrap("EVALSHA del", key, err)
	}
	if ackErr != nil {
		return fmt.Errorf("redis: deleting %s: %w", key, ackErr)
	}
	return nil
}

// ---- users ----

func (s *Store) getUserRaw(ctx context.Context, key string) (*pushauth.User, error) {
	_, u, err := s.readUser(ctx, key)
	if err == nil && u == nil {
		return nil, pushauth.ErrNotFound
	}
	return u, err
}

// userWriteTries bounds how often PutUser writes over a record that
// changed between its read and its write (a failure counted meanwhile).
const userWriteTries = 8

// PutUser stores u whatever the record holds. It is a compare-and-set of
// the record it reads (putUserOver), retried when another write came in
// between, so the credential → users index follows the record it
// replaced; see putUserOver for the index and the acknowledgement.
func (s *Store) PutUser(ctx context.Context, u *pushauth.User) error {
	for range userWriteTries {
		raw, cur, err := s.readUser(ctx, u.Key)
		if err != nil {
			return err
		}
		if err := s.putUserOver(ctx, raw, cur, u); !errors.Is(err, pushauth.ErrUserChanged) {
			return err
		}
	}
	return fmt.Errorf("redis: writing %s: %w %d times while being written", s.userKey(u.Key), pushauth.ErrUserChanged, userWriteTries)
}

// CompareAndPutUser stores u only if the user's record still reads as old
// (nil: there is none), so a change read before a lock was taken cannot
// overwrite the lock.
func (s *Store) CompareAndPutUser(ctx context.Context, old, u *pushauth.User) error {
	raw, cur, err := s.readUser(ctx, u.Key)
	if err != nil {
		return err
	}
	if !pushauth.SameUser(cur, old) {
		return fmt.Errorf("redis: %s: %w", s.userKey(u.Key), pushauth.ErrUserChanged)
	}
	return s.putUserOver(ctx, raw, cur, u)
}

// readUser reads a user's record as stored ("" and nil when there is
// none) and decoded.
func (s *Store) readUser(ctx context.Context, key string) (string, *pushauth.User, error) {
	rk := s.userKey(key)
	raw, err := s.client.Get(ctx, rk).Result()
	if errors.Is(err, goredis.Nil) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, wrap("GET", rk, err)
	}
	var u pushauth.User
	if err := json.Unmarshal([]byte(raw), &u); err != nil {
		return "", nil, fmt.Errorf("redis: decoding %s: %w", rk, err)
	}
	return raw, &u, nil
}

// putUserOver replaces the record raw (cur decoded; "" and nil for none)
// with u in one compare-and-set, or answers ErrUserChanged when it changed
// since. The user joins the new credential's set before its record
// changes and leaves the old one's after, so a reader never misses a
// binding. The write is acknowledged by MinReplicas (WAIT on its
// connection; replication is in order, so it covers the set before it
// too, except on Cluster where the set lives on another shard): a
// binding, unbinding, deregistration or lock change that a failover
// could lose fails with ErrNotReplicated instead of being reported done
// (the primary keeps it).
func (s *Store) putUserOver(ctx context.Context, raw string, cur, u *pushauth.User) error {
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("redis: encoding user: %w", err)
	}
	if u.CredentialID != "" {
		k := s.credUsersKey(u.CredentialID)
		if err := s.client.SAdd(ctx, k, u.Key).Err(); err != nil {
			return wrap("SADD", k, err)
		}
	}
	rk := s.userKey(u.Key)
	cmd, ackErr := s.run(ctx, s.minReplicas > 0, casScript, []string{rk}, raw, b)
	n, err := cmd.Int()
	if err != nil {
		return wrap("EVALSHA cas", rk, err)
	}
	if n != 1 {
		return fmt.Errorf("redis: %s: %w", rk, pushauth.ErrUserChanged)
	}
	if cur != nil && cur.CredentialID != "" && cur.CredentialID != u.CredentialID {
		k := s.credUsersKey(cur.CredentialID)
		if err := s.client.SRem(ctx, k, u.Key).Err(); err != nil {
			return wrap("SREM", k, err)
		}
	}
	if ackErr != nil {
		return fmt.Errorf("redis: writing %s: %w", rk, ackErr)
	}
	return nil
}

// GetUser answers ErrNotFound only while the epoch shows the data is
// intact: after a wipe it fails with ErrWiped (fail closed).
func (s *Store) GetUser(ctx context.Context, key string) (*pushauth.User, error) {
	u, err := s.getUserRaw(ctx, key)
	if errors.Is(err, pushauth.ErrNotFound) {
		return nil, s.notFound(ctx, err)
	}
	if err != nil {
		return nil, err
	}
	if err := s.wipedErr(); err != nil {
		return nil, err
	}
	return u, nil
}

func (s *Store) UsersOfCredential(ctx context.Context, credentialID string) ([]string, error) {
	k := s.credUsersKey(credentialID)
	members, err := s.client.SMembers(ctx, k).Result()
	if err != nil {
		return nil, wrap("SMEMBERS", k, err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = s.userKey(m)
	}
	var out []string
	for i, cmd := range s.getAll(ctx, keys) {
		b, err := cmd.Bytes()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, wrap("GET", keys[i], err)
		}
		var u pushauth.User
		if err := json.Unmarshal(b, &u); err != nil {
			return nil, fmt.Errorf("redis: decoding %s: %w", keys[i], err)
		}
		if u.CredentialID == credentialID {
			out = append(out, members[i])
		}
	}
	slices.Sort(out)
	return out, nil
}

// ---- challenges ----

// luaLib is the start of every script that reads a challenge record.
//
// replid is the replication ID of the primary running the script; a
// replica promoted by a failover has a new one. live says whether a record
// can still change: pending, or approved but waiting for its replicas'
// acknowledgement (_ack, see replication.go), which readers see as
// pending. store writes a record and returns what of it may leave the
// script (a reply or a PUBLISH): all of it, since a challenge's secrets
// live sealed in a key of their own (seal.go), but a stored request an
// earlier version wrote in clear into the record is left out. settle
// stores a final record, takes the challenge off the user's pending list
// (the :live set; an earlier version's caller names the :pending pointer,
// cleared if it names the challenge), and publishes the record.
const luaLib = `
local function replid()
  return string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or ''
end
local function live(c)
  return c.status == 'pending' or c._ack ~= nil
end
local function pub(c)
  local held = c.held
  c.held = nil
  local out = cjson.encode(c)
  c.held = held
  return out
end
local function store(key, c)
  local raw = cjson.encode(c)
  redis.call('SET', key, raw, 'KEEPTTL')
  if c.held == nil then
    return raw
  end
  return pub(c)
end
local function publish(channel, id, out, max)
  if #out <= tonumber(max) then
    redis.call('PUBLISH', channel, id .. '\n' .. out)
  else
    redis.call('PUBLISH', channel, id)
  end
end
local function settle(key, pointer, id, c, channel, max)
  local out = store(key, c)
  if redis.call('TYPE', pointer).ok == 'zset' then
    redis.call('ZREM', pointer, id)
    pointer = string.sub(pointer, 1, -5) .. 'pending' -- :live → :pending, same slot
  end
  if redis.call('GET', pointer) == id then
    redis.call('DEL', pointer)
  end
  publish(channel, id, out, max)
  return out
end
`

// createScript applies pushauth.PendingRule to the user's pending
// challenges (the :live set, and the :pending pointer an earlier version
// wrote), stores the new one with the replication ID of the primary it is
// created on (and its sealed secrets, if any) and lists it as pending.
//
// KEYS[1] user's latest pointer (:pending), KEYS[2] new challenge record,
// KEYS[3] its secrets, KEYS[4] user's pending set (:live). ARGV[1] new id,
// ARGV[2] challenge JSON (an object, without "repl"), ARGV[3] record TTL
// ms, ARGV[4] user's challenge key prefix, ARGV[5] decided_at for the
// superseded ones, ARGV[6] channel, ARGV[7] largest record to publish,
// ARGV[8] sealed secrets ("" for none), ARGV[9] the new one's creation
// (Unix ms), ARGV[10] its expiry (Unix ms), ARGV[11] 1 when it is bound to its browser (code transfer, passkey), else 0,
// ARGV[12] pushauth.MaxPendingPerUser, ARGV[13] 1 when it is a passkey
// challenge (it replaces the user's pending ones), else 0. A superseded record's key is
// ARGV[4]..id: same {u:<user>} hash tag, so the same slot as KEYS.
// Returns {replid, "ok", superseded ids...} or {replid, "full"}
// (ErrTooManyPending: nothing written).
var createScript = goredis.NewScript(luaLib + `
local r = replid()
local now = tonumber(ARGV[9])
local stale, alive = {}, {}
local allcode = tonumber(ARGV[11]) > 0
local listed = {}
local members = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local id, exp = members[i], tonumber(members[i + 1])
  listed[id] = true
  local raw = redis.call('GET', ARGV[4] .. id)
  local c = raw and cjson.decode(raw)
  if not c or not live(c) then
    redis.call('ZREM', KEYS[4], id)
  elseif id ~= ARGV[1] then
    if exp <= now or (ARGV[13] == '1' and c.method == 'passkey') then
      table.insert(stale, {id, c})
    else
      table.insert(alive, {id, c})
      allcode = allcode and ((type(c.code_digits) == 'number' and c.code_digits > 0) or c.method == 'passkey')
    end
  end
end
-- A challenge of an earlier version is known by the pointer only: it is
-- superseded as that version did.
local old = redis.call('GET', KEYS[1])
if old and old ~= ARGV[1] and not listed[old] then
  local raw = redis.call('GET', ARGV[4] .. old)
  if raw then
    local c = cjson.decode(raw)
    if live(c) then
      table.insert(alive, {old, c})
      allcode = false
    end
  end
end
local stop = stale
if allcode then
  if #alive >= tonumber(ARGV[12]) then
    return {r, 'full'}
  end
else
  for _, e in ipairs(alive) do
    table.insert(stop, e)
  end
end
local out = {r, 'ok'}
local pubs = {}
for _, e in ipairs(stop) do
  local c = e[2]
  c.status = 'superseded'
  c.decided_at = ARGV[5]
  c._ack = nil
  table.insert(pubs, {e[1], store(ARGV[4] .. e[1], c)})
  redis.call('ZREM', KEYS[4], e[1])
  table.insert(out, e[1])
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local rec = string.sub(ARGV[2], 1, -2) .. ',"repl":"' .. r .. '"}'
  redis.call('SET', KEYS[2], rec, 'PX', ARGV[3])
  if ARGV[8] ~= '' then
    redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[3])
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[10], ARGV[1])
if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
end
for _, p in ipairs(pubs) do
  publish(ARGV[6], p[1], p[2], ARGV[7])
end
return out
`)

// resolveScript moves a live challenge to a final status exactly once.
// A challenge created on a primary that has been replaced since (its
// replication ID is not the current one) may lack writes the old primary
// acknowledged: it is cancelled instead, whatever was asked. The current
// replication ID is the caller's (ARGV[9]): every connection learns it
// before its first command (failover.go), and asking INFO here cost the
// release on Redis about 5%. "" (Cluster) asks INFO.
//
// KEYS[1] challenge record, KEYS[2] user pending pointer.
// ARGV[1] id, ARGV[2] status, ARGV[3] fraud "1"/"0", ARGV[4] decided_at,
// ARGV[5] channel, ARGV[6] op token, ARGV[7] largest record to publish,
// ARGV[8] "1": an approval that counts only once replicas acknowledge it
// (it is kept with _ack and neither published nor unpointed; ackScript
// finishes it), ARGV[9] the replication ID of this primary, or "".
// Returns {"nf"}, {"ok", json, seen}, {"conflict", json, seen} or
// {"failover", json, seen, "1" when this call cancelled it}; seen is the
// replication ID the script read from INFO, "" when it was given one.
var resolveScript = goredis.NewScript(luaLib + `
local raw = redis.call('GET', KEYS[1])
if not raw then
  return {'nf'}
end
local c = cjson.decode(raw)
local r, seen = ARGV[9], ''
if r == nil or r == '' then
  r = replid()
  seen = r
end
if c._op == ARGV[6] and c.status ~= 'pending' then
  -- This very call, retried after a lost reply: rewrite the record so
  -- that a WAIT after the retry covers it.
  redis.call('SET', KEYS[1], raw, 'KEEPTTL')
  return {'ok', pub(c), seen}
end
if c.repl and c.repl ~= r then
  local now = '0'
  if live(c) then
    c.status = 'cancelled'
    c.decided_at = ARGV[4]
    c.fraud = nil
    c._ack = nil
    c._op = ARGV[6]
    settle(KEYS[1], KEYS[2], ARGV[1], c, ARGV[5], ARGV[7])
    now = '1'
  end
  return {'failover', pub(c), seen, now}
end
if not live(c) then
  return {'conflict', pub(c), seen}
end
c.status = ARGV[2]
c.decided_at = ARGV[4]
if ARGV[3] == '1' then c.fraud = true else c.fraud = nil end
c._op = ARGV[6]
if ARGV[8] == '1' then
  c._ack = ARGV[6]
  redis.call('SET', KEYS[1], cjson.encode(c), 'KEEPTTL')
  return {'ok', pub(c), seen}
end
c._ack = nil
return {'ok', settle(KEYS[1], KEYS[2], ARGV[1], c, ARGV[5], ARGV[7]), seen}
`)

// pushResultScript sets push_result on an existing challenge.
// KEYS[1] challenge record; ARGV[1] result. Returns 0 when missing.
var pushResultScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local c = cjson.decode(raw)
if ARGV[1] == '' then c.push_result = nil else c.push_result = ARGV[1] end
redis.call('SET', KEYS[1], cjson.encode(c), 'KEEPTTL')
return 1
`)

// zaddExpireScript adds a member and makes the key live at least ARGV[3] ms.
// KEYS[1] zset; ARGV[1] score, ARGV[2] member, ARGV[3] TTL ms.
var zaddExpireScript = goredis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
`)

func timeJSON(t time.Time) (string, error) {
	b, err := t.MarshalJSON()
	if err != nil {
		return "", err
	}
	return strings.Trim(string(b), `"`), nil
}

func (s *Store) CreateChallenge(ctx context.Context, c *pushauth.Challenge, retainUntil time.Time) ([]string, error) {
	if c.ID == "" {
		return nil, errors.New("redis: challenge without id")
	}
	now := s.now()
	rk, sk := s.challengeKey(c.UserKey, c.ID), s.secretsKey(c.UserKey, c.ID)
	b, err := json.Marshal(challengeRecord{Challenge: *c})
	if err != nil {
		return nil, fmt.Errorf("redis: encoding challenge %s: %w", c.ID, err)
	}
	sealed, err := s.sealSecrets(sk, c.ChallengeSecrets)
	if err != nil {
		return nil, err
	}
	decided, err := timeJSON(now)
	if err != nil {
		return nil, fmt.Errorf("redis: encoding time: %w", err)
	}
	retain := s.ttlUntil(retainUntil)

	// The index claims the id; a retry of our own claim is not a duplicate.
	op := newOp()
	idx := s.challengeIndexKey(c.ID)
	val := op + ":" + c.UserKey
	ok, err := s.client.SetNX(ctx, idx, val, retain).Result()
	if err != nil {
		return nil, wrap("SET NX", idx, err)
	}
	if !ok {
		cur, err := s.client.Get(ctx, idx).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return nil, wrap("GET", idx, err)
		}
		if cur != val {
			return nil, pushauth.ErrExists
		}
	}

	// Listed for the credential before it exists, so a phone polling in
	// between cannot miss it once it does.
	if c.CredentialID != "" && c.ExpiresAt.After(now) {
		zk := s.credPendingKey(c.CredentialID)
		err := zaddExpireScript.Run(ctx, s.client, []string{zk},
			c.ExpiresAt.UnixMilli(), c.ID, s.ttlUntil(c.ExpiresAt).Milliseconds()).Err()
		if err != nil {
			return nil, wrap("EVALSHA zadd", zk, err)
		}
	}

	res, err := createScript.Run(ctx, s.client,
		[]string{s.userPendingKey(c.UserKey), rk, sk, s.userLiveKey(c.UserKey)},
		c.ID, b, retain.Milliseconds(), s.challengePrefix(c.UserKey), decided, s.channel, maxPublishedRecord, sealed,
		c.CreatedAt.UnixMilli(), c.ExpiresAt.UnixMilli(), c.BoundToItsBrowser() /* go-redis sends 1 or 0 */, pushauth.MaxPendingPerUser,
		c.Method == pushauth.MethodPasskey,
	).StringSlice()
	if err != nil {
		return nil, wrap("EVALSHA create", rk, err)
	}
	if len(res) < 2 {
		return nil, fmt.Errorf("redis: EVALSHA create %s: %d values in the reply, want at least 2", rk, len(res))
	}
	s.notePrimary(res[0])
	if res[1] == "full" {
		// Nothing was written: the claims on the id go again.
		_ = s.client.Del(ctx, idx).Err()
		if c.CredentialID != "" {
			_ = s.client.ZRem(ctx, s.credPendingKey(c.CredentialID), c.ID).Err()
		}
		return nil, fmt.Errorf("redis: user %q: %w", c.UserKey, pushauth.ErrTooManyPending)
	}
	s.owners.put(c.ID, c.UserKey)
	return res[2:], nil
}

// lookup finds the user a challenge belongs to (its record's slot),
// through the index unless this store has seen the id before.
func (s *Store) lookup(ctx context.Context, id string) (string, error) {
	if user, ok := s.owners.get(id); ok {
		return user, nil
	}
	idx := s.challengeIndexKey(id)
	v, err := s.client.Get(ctx, idx).Result()
	if errors.Is(err, goredis.Nil) {
		return "", pushauth.ErrNotFound
	}
	if err != nil {
		return "", wrap("GET", idx, err)
	}
	user, ok := indexUser(v)
	if !ok {
		return "", fmt.Errorf("redis: malformed index %s", idx)
	}
	s.owners.put(id, user)
	return user, nil
}

// maxOwners bounds the owners cache: about 30,000 challenges alive at once
// per instance are served from it; beyond that it starts over.
const maxOwners = 1 << 15

// owners remembers which user each challenge id belongs to. An id's owner
// never changes, so an entry can only outlive its challenge, and then the
// record it leads to is gone too: reads still report not found.
type owners struct {
	mu  sync.Mutex
	m   map[string]string
	max int
}

func (o *owners) get(id string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	u, ok := o.m[id]
	return u, ok
}

func (o *owners) put(id, user string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil || len(o.m) >= o.max {
		o.m = make(map[string]string, 1024)
	}
	o.m[id] = user
}

func indexUser(v string) (string, bool) {
	if len(v) < opLen+1 || v[opLen] != ':' {
		return "", false
	}
	return v[opLen+1:], true
}

func (s *Store) GetChallenge(ctx context.Context, id string) (*pushauth.Challenge, error) {
	user, err := s.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	rk, sk := s.challengeKey(user, id), s.secretsKey(user, id)
	vals, err := s.client.MGet(ctx, rk, sk).Result()
	if err != nil {
		return nil, wrap("MGET", rk, err)
	}
	b, ok := vals[0].(string)
	if !ok {
		return nil, pushauth.ErrNotFound
	}
	sealed, _ := vals[1].(string)
	rec, err := s.readChallenge(rk, []byte(b))
	if err != nil {
		return nil, err
	}
	if err := s.openSecrets(sk, []byte(sealed), rec); err != nil {
		return nil, err
	}
	if s.needsReseal(rec, []byte(sealed)) {
		// Written in clear by an earlier version, or sealed under a key
		// that is being rotated out: seal it now. A failure leaves it for
		// the next read or `store reseal`.
		_, _ = s.resealChallenge(ctx, rk, sk, []byte(b), []byte(sealed), rec.ChallengeSecrets)
	}
	return s.present(rec), nil
}

// Resolve moves a live challenge to its final status. With MinReplicas
// set, an approval takes two steps (see replication.go): it is written,
// kept from every reader as still pending, until the replicas
// acknowledge it; only then is it final and published. Without the
// acknowledgement it goes back to pending and Resolve returns
// ErrNotReplicated: nothing was approved. A challenge created before a
// failover is cancelled instead (ErrConflict, or nil when cancelling was
// asked).
func (s *Store) Resolve(ctx context.Context, id string, to pushauth.Status, fraud bool, at time.Time) (*pushauth.Challenge, error) {
	user, err := s.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	atJSON, err := timeJSON(at)
	if err != nil {
		return nil, fmt.Errorf("redis: encoding time: %w", err)
	}
	f := "0"
	if fraud {
		f = "1"
	}
	acked := s.minReplicas > 0 && to == pushauth.StatusApproved
	hold := "0"
	if acked {
		hold = "1"
	}
	rk := s.challengeKey(user, id)
	keys := []string{rk, s.userLiveKey(user)}
	op := newOp()
	cmd, ackErr := s.run(ctx, acked, resolveScript, keys, id, string(to), f, atJSON, s.channel, op, maxPublishedRecord, hold,
		s.primary.current())
	res, err := cmd.Slice()
	if err != nil {
		return nil, wrap("EVALSHA resolve", rk, err)
	}
	code, c, err := s.scriptChallenge(rk, res)
	if err != nil {
		return nil, err
	}
	switch code {
	case "nf":
		return nil, pushauth.ErrNotFound
	case "conflict":
		return c, pushauth.ErrConflict
	case "failover":
		if to == pushauth.StatusCancelled && len(res) > 3 && res[3] == "1" {
			return c, nil
		}
		return c, pushauth.ErrConflict
	case "ok":
	default:
		return nil, fmt.Errorf("redis: EVALSHA resolve %s: unexpected reply %q", rk, code)
	}
	if !acked {
		return approvedAsAsked(c, to)
	}
	if ackErr != nil {
		// Not acknowledged: take the approval back, so that nobody acts on
		// a write a failover could lose.
		if _, err := s.finishAck(ctx, keys, id, op, false); err != nil {
			return nil, errors.Join(ackErr, err)
		}
		return nil, ackErr
	}
	c, err = s.finishAck(ctx, keys, id, op, true)
	if err != nil {
		return c, err
	}
	return approvedAsAsked(c, to)
}

// approvedAsAsked is Resolve's answer for a record it wrote: an approval
// of a challenge from before a failover the call had not seen yet was
// written, but nobody reads it as approved (present), so it is a conflict.
func approvedAsAsked(c *pushauth.Challenge, to pushauth.Status) (*pushauth.Challenge, error) {
	if to == pushauth.StatusApproved && c.Status != pushauth.StatusApproved {
		return c, pushauth.ErrConflict
	}
	return c, nil
}

// finishAck ends a two-step approval: commit makes it final and publishes
// it; otherwise it goes back to pending.
func (s *Store) finishAck(ctx context.Context, keys []string, id, op string, commit bool) (*pushauth.Challenge, error) {
	flag := "0"
	if commit {
		flag = "1"
	}
	res, err := ackScript.Run(ctx, s.client, keys, id, op, s.channel, maxPublishedRecord, flag).Slice()
	if err != nil {
		return nil, wrap("EVALSHA ack", keys[0], err)
	}
	code, c, err := s.scriptChallenge(keys[0], res)
	if err != nil {
		return nil, err
	}
	switch code {
	case "ok", "aborted":
		return c, nil
	case "conflict":
		// Closed by someone else (a timeout, a cancel, a failover) while
		// the replicas were asked.
		return c, pushauth.ErrConflict
	case "nf":
		return nil, pushauth.ErrNotFound
	}
	return nil, fmt.Errorf("redis: EVALSHA ack %s: unexpected reply %q", keys[0], code)
}

// scriptChallenge reads the {code, record, replid, ...} reply of a
// challenge script: the record (without secrets) as readers see it.
func (s *Store) scriptChallenge(key string, res []any) (string, *pushauth.Challenge, error) {
	if len(res) == 0 {
		return "", nil, fmt.Errorf("redis: script on %s: empty reply", key)
	}
	code, _ := res[0].(string)
	if code == "nf" {
		return code, nil, nil
	}
	if len(res) < 2 {
		return "", nil, fmt.Errorf("redis: script on %s: short reply", key)
	}
	if len(res) > 2 {
		r, _ := res[2].(string)
		s.notePrimary(r)
	}
	raw, _ := res[1].(string)
	rec, err := s.readChallenge(key, []byte(raw))
	if err != nil {
		return "", nil, err
	}
	return code, s.present(rec), nil
}

func (s *Store) PendingForCredential(ctx context.Context, credentialID string) ([]*pushauth.Challenge, error) {
	now := s.now()
	zk := s.credPendingKey(credentialID)
	if err := s.client.ZRemRangeByScore(ctx, zk, "-inf", strconv.FormatInt(now.UnixMilli(), 10)).Err(); err != nil {
		return nil, wrap("ZREMRANGEBYSCORE", zk, err)
	}
	ids, err := s.client.ZRange(ctx, zk, 0, -1).Result()
	if err != nil {
		return nil, wrap("ZRANGE", zk, err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	idxKeys := make([]string, len(ids))
	for i, id := range ids {
		idxKeys[i] = s.challengeIndexKey(id)
	}
	pipe := s.client.Pipeline()
	recs := make([]*goredis.StringCmd, len(ids))
	keys := make([]string, len(ids))
	for i, cmd := range s.getAll(ctx, idxKeys) {
		v, err := cmd.Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, wrap("GET", idxKeys[i], err)
		}
		user, ok := indexUser(v)
		if !ok {
			continue
		}
		keys[i] = s.challengeKey(user, ids[i])
		recs[i] = pipe.Get(ctx, keys[i])
	}
	_, _ = pipe.Exec(ctx)
	var out []*pushauth.Challenge
	var final []any
	for i, cmd := range recs {
		if cmd == nil {
			continue
		}
		b, err := cmd.Bytes()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, wrap("GET", keys[i], err)
		}
		rec, err := s.readChallenge(keys[i], b)
		if err != nil {
			return nil, err
		}
		rec.ChallengeSecrets = pushauth.ChallengeSecrets{} // an earlier version's clear request stays here
		c := s.present(rec)
		if c.Status.Final() {
			final = append(final, ids[i]) // final never changes back
			continue
		}
		if c.Status == pushauth.StatusPending && c.CredentialID == credentialID && now.Before(c.ExpiresAt) {
			out = append(out, c)
		}
	}
	if len(final) > 0 {
		if err := s.client.ZRem(ctx, zk, final...).Err(); err != nil {
			return nil, wrap("ZREM", zk, err)
		}
	}
	return out, nil
}

func (s *Store) SetPushResult(ctx context.Context, id, result string) error {
	user, err := s.lookup(ctx, id)
	if err != nil {
		return err
	}
	rk := s.challengeKey(user, id)
	n, err := pushResultScript.Run(ctx, s.client, []string{rk}, result).Int()
	if err != nil {
		return wrap("EVALSHA push_result", rk, err)
	}
	if n == 0 {
		return pushauth.ErrNotFound
	}
	return nil
}

// ---- jti ----

// useJTIScript records a single-use marker, for a call followed by WAIT.
//
// KEYS[1] marker. ARGV[1] op token, ARGV[2] TTL ms.
// Returns 1 when fresh, 0 when used before.
var useJTIScript = goredis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  -- This very call, retried after a lost reply; the write lets the WAIT
  -- after the retry cover the first one.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// UseJTI records a single-use marker (a token ID, a used security code, a
// replay, a push-budget slot). With MinReplicas set, a marker the
// replicas do not acknowledge fails the call (ErrNotReplicated): it
// stays used on the primary, so the token or code is spent, and nothing
// acts on it.
func (s *Store) UseJTI(ctx context.Context, jti string, until time.Time) (bool, error) {
	d := until.Sub(s.now())
	if d < time.Millisecond {
		// Its lifetime is already over: nothing to remember.
		return true, nil
	}
	key := s.jtiKey(jti)
	op := newOp()
	if s.minReplicas > 0 {
		cmd, ackErr := s.run(ctx, true, useJTIScript, []string{key}, op, d.Milliseconds())
		fresh, err := cmd.Int()
		if err != nil {
			return false, wrap("EVALSHA use", s.jtiKeyRedacted(), err)
		}
		if fresh == 1 && ackErr != nil {
			return false, ackErr
		}
		return fresh == 1, nil
	}
	ok, err := s.client.SetNX(ctx, key, op, d).Result()
	if err != nil {
		return false, wrap("SET NX", s.jtiKeyRedacted(), err)
	}
	if ok {
		return true, nil
	}
	// Not set: used before, unless this is go-redis retrying our own write.
	cur, err := s.client.Get(ctx, key).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return false, wrap("GET", s.jtiKeyRedacted(), err)
	}
	return cur == op, nil
}

// ---- sessions ----

func (s *Store) PutSession(ctx context.Context, hash, userKey string, ttl time.Duration) error {
	key := s.sessionKey(hash)
	if ttl < time.Millisecond {
		if err := s.client.Del(ctx, key).Err(); err != nil {
			return wrap("DEL", s.sessionKeyRedacted(), err)
		}
		return nil
	}
	if err := s.client.Set(ctx, key, userKey, ttl).Err(); err != nil {
		return wrap("SET", s.sessionKeyRedacted(), err)
	}
	return nil
}

func (s *Store) GetSession(ctx context.Context, hash string) (string, error) {
	v, err := s.client.Get(ctx, s.sessionKey(hash)).Result()
	if errors.Is(err, goredis.Nil) {
		return "", pushauth.ErrNotFound
	}
	if err != nil {
		return "", wrap("GET", s.sessionKeyRedacted(), err)
	}
	return v, nil
}

func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	if err := s.client.Del(ctx, s.sessionKey(hash)).Err(); err != nil {
		return wrap("DEL", s.sessionKeyRedacted(), err)
	}
	return nil
}

// ---- watch ----

// Watch timings; variables so tests may shorten them.
var (
	watchReceiveTimeout = 5 * time.Second         // a read this long without traffic sends a PING
	watchMaxBackoff     = time.Second             // longest pause between reconnection attempts
	watchConfirmTimeout = 2 * time.Second         // how long Watch waits for the first subscription
	watchStaleAfter     = 2 * watchReceiveTimeout // unanswered PING: rebuild the subscription
)

type watch struct {
	s       *Store
	fn      func(string, *pushauth.Challenge)
	ctx     context.Context
	cancel  context.CancelFunc
	stopped atomic.Bool
	done    chan struct{}

	mu sync.Mutex
	ps *goredis.PubSub

	// subscriptions counts confirmed SUBSCRIBEs (1 after the first, +1 per
	// re-subscription after an outage); for tests.
	subscriptions atomic.Int64
}

// Watch subscribes to <prefix>resolved on a dedicated connection and calls
// fn, from one goroutine, with every challenge id published there and the
// final record published with it (nil when there was none or it does not
// decode: the engine then re-reads). It
// waits up to two seconds for the subscription to be confirmed; when Redis
// is unreachable it still returns and keeps trying to subscribe in the
// background.
func (s *Store) Watch(fn func(challengeID string, final *pushauth.Challenge)) (func(), error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("redis: store is closed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{s: s, fn: fn, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	s.watches[w] = struct{}{}
	s.mu.Unlock()

	w.subscribe()
	// Wait for the confirmation so a resolution right after Watch returns
	// is delivered.
	deadline := time.Now().Add(watchConfirmTimeout)
	for w.subscriptions.Load() == 0 && time.Now().Before(deadline) {
		if err := w.receiveOnce(time.Until(deadline)); err != nil {
			break
		}
	}
	go w.loop()
	return w.stop, nil
}

// subscribe opens a new subscription unless the watch is stopped; stop
// takes the same lock, so no subscription outlives it.
func (w *watch) subscribe() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped.Load() {
		return
	}
	w.ps = w.s.client.Subscribe(w.ctx, w.s.channel)
}

func (w *watch) pubsub() *goredis.PubSub {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ps
}

// receiveOnce reads one message and handles it.
func (w *watch) receiveOnce(timeout time.Duration) error {
	msg, err := w.pubsub().ReceiveTimeout(w.ctx, timeout)
	if err != nil {
		return err
	}
	switch m := msg.(type) {
	case *goredis.Subscription:
		if m.Kind == "subscribe" {
			w.subscriptions.Add(1)
		}
	case *goredis.Message:
		if !w.stopped.Load() {
			w.fn(w.s.parseResolved(m.Payload))
		}
	}
	return nil
}

// maxPublishedRecord is the largest final record the scripts publish with
// its id; larger ones (a stored request with a big body) go as the id alone
// so every instance is not sent the body.
const maxPublishedRecord = 16 << 10

// parseResolved splits a <prefix>resolved message into the challenge id and
// its final record: "<id>\n<record JSON>", or "<id>" alone (older
// instances, oversized records). The record is presented as readers see
// it: an approval of a challenge from before a failover is no approval.
func (s *Store) parseResolved(payload string) (string, *pushauth.Challenge) {
	id, raw, ok := strings.Cut(payload, "\n")
	if !ok {
		return id, nil
	}
	rec, err := s.readChallenge(id, []byte(raw))
	if err != nil {
		return id, nil
	}
	rec.ChallengeSecrets = pushauth.ChallengeSecrets{}
	return id, s.present(rec) // the engine checks it is this id's final record
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

func (w *watch) loop() {
	defer close(w.done)
	backoff := 50 * time.Millisecond
	lastTraffic := time.Now()
	for w.ctx.Err() == nil {
		err := w.receiveOnce(watchReceiveTimeout)
		switch {
		case err == nil:
			backoff = 50 * time.Millisecond
			lastTraffic = time.Now()
		case w.ctx.Err() != nil:
			return
		case isTimeout(err):
			if time.Since(lastTraffic) >= watchStaleAfter {
				// PINGs went unanswered: the connection is dead without
				// having been closed. Start over on a fresh one.
				w.rebuild()
				lastTraffic = time.Now()
				continue
			}
			// Any reply (the PONG) counts as traffic. A failed PING makes
			// go-redis reconnect and re-subscribe on the next read.
			_ = w.pubsub().Ping(w.ctx)
		default:
			// Connection lost: go-redis reconnects and re-subscribes on the
			// next read; pause so a down Redis is not hammered.
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, watchMaxBackoff)
		}
	}
}

func (w *watch) rebuild() {
	_ = w.pubsub().Close()
	w.subscribe()
}

func (w *watch) stop() {
	if w.stopped.Swap(true) {
		return
	}
	w.cancel()
	w.mu.Lock()
	_ = w.ps.Close()
	w.mu.Unlock()
	w.s.mu.Lock()
	delete(w.s.watches, w)
	w.s.mu.Unlock()
}

// Close stops every watch and closes the connections. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closeErr
	}
	s.closed = true
	ws := make([]*watch, 0, len(s.watches))
	for w := range s.watches {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
	if s.epochCancel != nil {
		s.epochCancel()
		<-s.epochDone
	}
	err := s.client.Close()
	s.mu.Lock()
	s.closeErr = err
	s.mu.Unlock()
	return err
}
