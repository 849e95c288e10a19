package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
)

// addFailureScript counts one failure on a user's record and takes the
// lock, in one step, so failures arriving at several instances at once are
// all counted (pushauth.FailureCounter).
//
// KEYS[1] user record. ARGV[1] user key, ARGV[2] limit, ARGV[3] "1" to lock
// at once, ARGV[4] updated_at. Returns {1 when this call locked, user JSON}.
var addFailureScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[1])
local u
if raw then
  u = cjson.decode(raw)
else
  u = {key = ARGV[1], state = 'active'}
end
u.failures = (tonumber(u.failures) or 0) + 1
local locked = 0
if u.state ~= 'locked' and (u.failures >= tonumber(ARGV[2]) or ARGV[3] == '1') then
  u.state = 'locked'
  locked = 1
end
u.updated_at = ARGV[4]
local out = cjson.encode(u)
redis.call('SET', KEYS[1], out)
return {locked, out}
`)

// resetFailuresScript clears the count of a user who is not locked.
// KEYS[1] user record; ARGV[1] updated_at. Returns 1 when it changed.
var resetFailuresScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local u = cjson.decode(raw)
if (tonumber(u.failures) or 0) == 0 or u.state == 'locked' then
  return 0
end
u.failures = nil
u.updated_at = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(u))
return 1
`)

// AddFailure counts a failure in one script; with MinReplicas set, a count
// or lock the replicas do not acknowledge fails the call
// (ErrNotReplicated), though the primary keeps it.
func (s *Store) AddFailure(ctx context.Context, key string, limit int, lockNow bool, at time.Time) (*pushauth.User, bool, error) {
	atJSON, err := timeJSON(at)
	if err != nil {
		return nil, false, fmt.Errorf("redis: encoding time: %w", err)
	}
	now := "0"
	if lockNow {
		now = "1"
	}
	rk := s.userKey(key)
	cmd, ackErr := s.run(ctx, s.minReplicas > 0, addFailureScript, []string{rk}, key, limit, now, atJSON)
	res, err := cmd.Slice()
	if err != nil {
		return nil, false, wrap("EVALSHA add_failure", rk, err)
	}
	if ackErr != nil {
		return nil, false, ackErr
	}
	if len(res) != 2 {
		return nil, false, fmt.Errorf("redis: EVALSHA add_failure %s: %d values in the reply, want 2", rk, len(res))
	}
	locked, _ := res[0].(int64)
	raw, _ := res[1].(string)
	var u pushauth.User
	if err := json.Unmarshal([]byte(raw), &u); err != nil {
		return nil, false, fmt.Errorf("redis: decoding %s: %w", rk, err)
	}
	return &u, locked == 1, nil
}

// ResetFailures clears an unlocked count in one script. It is not
// acknowledged by replicas: losing it keeps a count, it unlocks nothing.
func (s *Store) ResetFailures(ctx context.Context, key string, at time.Time) error {
	atJSON, err := timeJSON(at)
	if err != nil {
		return fmt.Errorf("redis: encoding time: %w", err)
	}
	rk := s.userKey(key)
	if err := resetFailuresScript.Run(ctx, s.client, []string{rk}, atJSON).Err(); err != nil {
		return wrap("EVALSHA reset_failures", rk, err)
	}
	return nil
}
