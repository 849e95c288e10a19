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

// takePushScript counts one push on a user's streak in one step, the same
// arithmetic as pushauth.PushStreakLimits.Take, so pushes asked through
// several instances at once are all counted.
//
// KEYS[1] user record. ARGV[1] now (Unix seconds), ARGV[2] free, ARGV[3]
// cap, ARGV[4] first backoff (s), ARGV[5] most backoff (s), ARGV[6] cap
// window (s), ARGV[7] the address asking. Returns -1 for an unknown user,
// 0 when allowed, otherwise the seconds to wait.
var takePushScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then
  return -1
end
local u = cjson.decode(raw)
if type(u.push_home) == 'string' and u.push_home ~= '' and u.push_home == ARGV[7] then
  return 0
end
local t = tonumber(ARGV[1])
local free, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local window = tonumber(ARGV[6])
local n = tonumber(u.push_count) or 0
local since = tonumber(u.push_since) or 0
local last = tonumber(u.push_last) or 0
if n > 0 and t - since >= window then
  n, since, last = 0, 0, 0
end
if n >= cap then
  return since + window - t
end
if n >= free then
  local w = tonumber(ARGV[4])
  local most = tonumber(ARGV[5])
  local i = free
  while i < n and w < most do
    w = w * 2
    i = i + 1
  end
  if w > most then
    w = most
  end
  if t < last + w then
    return last + w - t
  end
end
if n == 0 then
  since = t
end
u.push_count = n + 1
u.push_since = since
u.push_last = t
redis.call('SET', KEYS[1], cjson.encode(u))
return 0
`)

// endPushStreakScript clears a user's streak and sets its home, writing
// only when that changes something. KEYS[1] user record; ARGV[1] home,
// ARGV[2] updated_at.
var endPushStreakScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local u = cjson.decode(raw)
if (tonumber(u.push_count) or 0) == 0 and (tonumber(u.push_since) or 0) == 0 and (tonumber(u.push_last) or 0) == 0 and u.push_home == ARGV[1] then
  return 0
end
u.push_count = nil
u.push_since = nil
u.push_last = nil
u.push_home = ARGV[1]
u.updated_at = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(u))
return 1
`)

// TakePush counts one push in one script (pushauth.PushCounter). Like
// AddFailure, with MinReplicas set a count the replicas do not acknowledge
// fails the call, so the push is not sent.
func (s *Store) TakePush(ctx context.Context, key, addr string, l pushauth.PushStreakLimits, at time.Time) (time.Duration, error) {
	rk := s.userKey(key)
	cmd, ackErr := s.run(ctx, s.minReplicas > 0, takePushScript, []string{rk}, at.Unix(), l.Free, l.Cap,
		int64(l.Backoff/time.Second), int64(pushauth.MaxPushBackoff/time.Second), int64(pushauth.PushCapWindow/time.Second), addr)
	n, err := cmd.Int64()
	if err != nil {
		return 0, wrap("EVALSHA take_push", rk, err)
	}
	if n < 0 {
		return 0, pushauth.ErrNotFound
	}
	if n == 0 && ackErr != nil {
		return 0, ackErr
	}
	return time.Duration(n) * time.Second, nil
}

// EndPushStreak clears the streak after an approval in one script. Like
// ResetFailures it is not acknowledged by replicas: losing it keeps a
// streak, it allows no push.
func (s *Store) EndPushStreak(ctx context.Context, key, home string, at time.Time) error {
	atJSON, err := timeJSON(at)
	if err != nil {
		return fmt.Errorf("redis: encoding time: %w", err)
	}
	rk := s.userKey(key)
	if err := endPushStreakScript.Run(ctx, s.client, []string{rk}, home, atJSON).Err(); err != nil {
		return wrap("EVALSHA end_push_streak", rk, err)
	}
	return nil
}
