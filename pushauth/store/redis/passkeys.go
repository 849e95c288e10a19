package redis

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
)

// Passkeys (pushauth.PasskeyStore): one hash per user,
//
//	<p>{u:<user>}:passkeys  field base64url(credential id) -> passkey JSON
//
// in the user's hash slot. Public keys and counters only, no secret.
// Adding and using are scripts, replica-acknowledged like failure counts
// when MinReplicas is set: a counter accepted before a failover must not be
// accepted again after it.

func (s *Store) passkeysKey(user string) string { return s.userTag(user) + ":passkeys" }

// addPasskeyScript: KEYS[1] the user's passkeys; ARGV[1] field, ARGV[2]
// JSON. Returns 0 when the field exists.
var addPasskeyScript = goredis.NewScript(`
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
`)

// usePasskeyScript checks and moves the counter in one step. KEYS[1] the
// user's passkeys; ARGV[1] field, ARGV[2] asserted counter, ARGV[3]
// last_used. Returns the new JSON, -1 unknown, -2 counter did not grow.
var usePasskeyScript = goredis.NewScript(`
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return -1
end
local p = cjson.decode(raw)
local stored = tonumber(p.sign_count) or 0
local n = tonumber(ARGV[2])
if not ((stored == 0 and n == 0) or n > stored) then
  return -2
end
p.sign_count = n
p.last_used = ARGV[3]
local out = cjson.encode(p)
redis.call('HSET', KEYS[1], ARGV[1], out)
return out
`)

func passkeyField(id []byte) string { return base64.RawURLEncoding.EncodeToString(id) }

func (s *Store) AddPasskey(ctx context.Context, p *pushauth.Passkey) error {
	k := s.passkeysKey(p.UserKey)
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("redis: encoding passkey: %w", err)
	}
	cmd, ackErr := s.run(ctx, s.minReplicas > 0, addPasskeyScript, []string{k}, passkeyField(p.ID), b)
	n, err := cmd.Int()
	if err != nil {
		return wrap("EVALSHA add passkey", k, err)
	}
	if n == 0 {
		return fmt.Errorf("redis: passkey of %q: %w", p.UserKey, pushauth.ErrExists)
	}
	return ackErr
}

func (s *Store) Passkeys(ctx context.Context, userKey string) ([]*pushauth.Passkey, error) {
	k := s.passkeysKey(userKey)
	vals, err := s.client.HVals(ctx, k).Result()
	if err != nil {
		return nil, wrap("HVALS", k, err)
	}
	out := make([]*pushauth.Passkey, 0, len(vals))
	for _, v := range vals {
		p, err := decodePasskey(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	slices.SortStableFunc(out, func(a, b *pushauth.Passkey) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func decodePasskey(k, v string) (*pushauth.Passkey, error) {
	var p pushauth.Passkey
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		return nil, fmt.Errorf("redis: decoding %s: %w", k, err)
	}
	return &p, nil
}

func (s *Store) UsePasskey(ctx context.Context, userKey string, id []byte, count uint32, at time.Time) (*pushauth.Passkey, error) {
	k := s.passkeysKey(userKey)
	stamp, err := json.Marshal(at)
	if err != nil {
		return nil, err
	}
	var last string
	_ = json.Unmarshal(stamp, &last)
	cmd, ackErr := s.run(ctx, s.minReplicas > 0, usePasskeyScript, []string{k}, passkeyField(id), count, last)
	if err := cmd.Err(); err != nil {
		return nil, wrap("EVALSHA use passkey", k, err)
	}
	switch v := cmd.Val().(type) {
	case int64:
		if v == -1 {
			return nil, pushauth.ErrNotFound
		}
		return nil, fmt.Errorf("redis: passkey of %q: asserted %d: %w", userKey, count, pushauth.ErrSignCount)
	case string:
		p, err := decodePasskey(k, v)
		if err != nil {
			return nil, err
		}
		return p, ackErr
	}
	return nil, fmt.Errorf("redis: use passkey %s: unexpected answer %T", k, cmd.Val())
}

// delPasskeyScript: KEYS[1] the user's passkeys; ARGV[1] field. Returns
// how many were removed (0 or 1).
var delPasskeyScript = goredis.NewScript(`
return redis.call('HDEL', KEYS[1], ARGV[1])
`)

// DeletePasskey is a revocation: with MinReplicas it counts only once the
// replicas acknowledged it, so a failover cannot bring the passkey back
// (ErrNotReplicated otherwise; the primary has removed it, and a retry
// answers ErrNotFound).
func (s *Store) DeletePasskey(ctx context.Context, userKey string, id []byte) error {
	k := s.passkeysKey(userKey)
	cmd, ackErr := s.run(ctx, s.minReplicas > 0, delPasskeyScript, []string{k}, passkeyField(id))
	n, err := cmd.Int64()
	if err != nil {
		return wrap("EVALSHA del passkey", k, err)
	}
	if n == 0 {
		return pushauth.ErrNotFound
	}
	if ackErr != nil {
		return fmt.Errorf("redis: revoking a passkey of %q: %w", userKey, ackErr)
	}
	return nil
}
