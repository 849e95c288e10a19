package redis

import (
	"context"
	"encoding/json"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
)

// Activation codes (pushauth.ActivationCodes):
//
//	<p>{u:<user key>}:actcode        string  the outstanding code's JSON (salted hash, never the code)  until it expires
//	<p>{u:<user key>}:actcode:taken  string  op token of the call that took it (retry idempotency)      1 minute

func (s *Store) activationKey(user string) string { return s.userTag(user) + ":actcode" }

// countActivationScript adds a failure to the code ARGV[1].
// KEYS[1] code. Returns the new count, or -1 when ARGV[1] is not the code.
var countActivationScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then return -1 end
local c = cjson.decode(raw)
if c.id ~= ARGV[1] then return -1 end
c.failures = (tonumber(c.failures) or 0) + 1
redis.call('SET', KEYS[1], cjson.encode(c), 'KEEPTTL')
return c.failures
`)

// takeActivationScript removes the code ARGV[1] once; a go-redis retry of
// the call that took it (same op ARGV[2]) is told it did.
// KEYS[1] code, KEYS[2] taken marker. Returns 1 taken, 0 not.
var takeActivationScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw).id == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', 60000)
  return 1
end
if redis.call('GET', KEYS[2]) == ARGV[2] then return 1 end
return 0
`)

func (s *Store) PutActivationCode(ctx context.Context, c *pushauth.ActivationCode) error {
	k := s.activationKey(c.User)
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("redis: encoding activation code: %w", err)
	}
	return s.set(ctx, k, b, s.ttlUntil(c.ExpiresAt))
}

func (s *Store) GetActivationCode(ctx context.Context, user string) (*pushauth.ActivationCode, error) {
	k := s.activationKey(user)
	b, err := s.get(ctx, k)
	if err != nil {
		return nil, err
	}
	var c pushauth.ActivationCode
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("redis: decoding %s: %w", k, err)
	}
	if !s.now().Before(c.ExpiresAt) {
		return nil, pushauth.ErrNotFound
	}
	return &c, nil
}

// CountActivationFailure counts a wrong code in one script. With
// MinReplicas set, a count the replicas do not acknowledge fails the call
// (ErrNotReplicated; the primary keeps it): a failover must not hand back
// wrong tries.
func (s *Store) CountActivationFailure(ctx context.Context, user, id string) (int, error) {
	k := s.activationKey(user)
	cmd, ackErr := s.run(ctx, s.minReplicas > 0, countActivationScript, []string{k}, id)
	n, err := cmd.Int()
	if err != nil {
		return 0, wrap("EVALSHA count", k, err)
	}
	if n < 0 {
		return 0, pushauth.ErrNotFound
	}
	if ackErr != nil {
		return 0, fmt.Errorf("redis: counting a wrong activation code in %s: %w", k, ackErr)
	}
	return n, nil
}

// TakeActivationCode takes the code in one script. With MinReplicas set,
// a take the replicas do not acknowledge fails the call (ErrNotReplicated)
// and binds nothing: the code stays taken on the primary (never given
// back as unused), since a failover that lost the take would let it bind
// twice.
func (s *Store) TakeActivationCode(ctx context.Context, user, id string) (bool, error) {
	k := s.activationKey(user)
	cmd, ackErr := s.run(ctx, s.minReplicas > 0, takeActivationScript, []string{k, k + ":taken"}, id, newOp())
	n, err := cmd.Int()
	if err != nil {
		return false, wrap("EVALSHA take", k, err)
	}
	if n == 1 && ackErr != nil {
		return false, fmt.Errorf("redis: taking the activation code in %s: %w", k, ackErr)
	}
	return n == 1, nil
}
