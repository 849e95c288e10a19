package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
)

// The outbox (pushauth.Outbox):
//
//	<p>{outbox}:due        zset    message ids, score = when due (Unix ms): creation, retry or lease end
//	<p>{outbox}:m:<id>     string  message JSON (with its lease token and attempts)
//
// Every outbox key has the {outbox} hash tag, so the scripts work on
// Cluster. A claim moves a message's score to the end of its lease, so a
// message whose instance died mid-delivery is due again by itself.

func (s *Store) outboxDueKey() string          { return s.prefix + "{outbox}:due" }
func (s *Store) outboxMsgPrefix() string       { return s.prefix + "{outbox}:m:" }
func (s *Store) outboxMsgKey(id string) string { return s.outboxMsgPrefix() + id }

// enqueueScript adds a message unless its id exists; a go-redis retry of
// our own write (same op) is not a duplicate.
// KEYS[1] due zset, KEYS[2] message; ARGV[1] id, ARGV[2] JSON, ARGV[3]
// due (ms), ARGV[4] op. Returns 1 added, 0 exists.
var enqueueScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[2])
if raw then
  if cjson.decode(raw)._op == ARGV[4] then return 1 end
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
`)

// claimScript leases up to ARGV[2] due messages.
// KEYS[1] due zset; ARGV[1] now (ms), ARGV[2] max, ARGV[3] lease (ms),
// ARGV[4] message key prefix, ARGV[5] lease token of this claim.
var claimScript = goredis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[4] .. id
  local raw = redis.call('GET', k)
  if raw then
    local n = cjson.decode(raw)
    n.attempts = (tonumber(n.attempts) or 0) + 1
    n.lease = ARGV[5] .. ':' .. id
    local enc = cjson.encode(n)
    redis.call('SET', k, enc)
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), id)
    table.insert(out, enc)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
`)

// retryScript reschedules a message the caller's claim still holds.
// KEYS[1] due zset, KEYS[2] message; ARGV[1] id, ARGV[2] lease, ARGV[3]
// next (ms), ARGV[4] last error. Returns 1, or 0 when the lease is stale.
var retryScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[2])
if not raw then return 0 end
local n = cjson.decode(raw)
if ARGV[2] == '' or n.lease ~= ARGV[2] then return 0 end
n.lease = nil
n.last_error = ARGV[4]
redis.call('SET', KEYS[2], cjson.encode(n))
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
`)

func (s *Store) EnqueueNotification(ctx context.Context, n *pushauth.Notification) error {
	op := newOp()
	b, err := json.Marshal(struct {
		*pushauth.Notification
		Op string `json:"_op"`
	}{n, op})
	if err != nil {
		return fmt.Errorf("redis: encoding notification: %w", err)
	}
	k := s.outboxMsgKey(n.ID)
	added, err := enqueueScript.Run(ctx, s.client, []string{s.outboxDueKey(), k}, n.ID, b, n.Time.UnixMilli(), op).Int()
	if err != nil {
		return wrap("EVALSHA enqueue", k, err)
	}
	if added == 0 {
		return pushauth.ErrExists
	}
	return nil
}

func (s *Store) ClaimNotifications(ctx context.Context, now time.Time, max int, lease time.Duration) ([]*pushauth.Notification, error) {
	if max <= 0 {
		return nil, nil
	}
	k := s.outboxDueKey()
	raws, err := claimScript.Run(ctx, s.client, []string{k},
		now.UnixMilli(), max, lease.Milliseconds(), s.outboxMsgPrefix(), newOp()).StringSlice()
	if err != nil {
		return nil, wrap("EVALSHA claim", k, err)
	}
	out := make([]*pushauth.Notification, 0, len(raws))
	for _, raw := range raws {
		var n pushauth.Notification
		if err := json.Unmarshal([]byte(raw), &n); err != nil {
			return nil, fmt.Errorf("redis: decoding an outbox message: %w", err)
		}
		out = append(out, &n)
	}
	return out, nil
}

func (s *Store) AckNotification(ctx context.Context, id string) error {
	k := s.outboxMsgKey(id)
	_, err := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZRem(ctx, s.outboxDueKey(), id)
		p.Del(ctx, k)
		return nil
	})
	if err != nil {
		return wrap("ZREM/DEL", k, err)
	}
	return nil
}

func (s *Store) RetryNotification(ctx context.Context, id, lease string, next time.Time, lastErr string) error {
	k := s.outboxMsgKey(id)
	ok, err := retryScript.Run(ctx, s.client, []string{s.outboxDueKey(), k}, id, lease, next.UnixMilli(), lastErr).Int()
	if err != nil {
		return wrap("EVALSHA retry", k, err)
	}
	if ok == 0 {
		return fmt.Errorf("redis: outbox message %s: %w", id, pushauth.ErrConflict)
	}
	return nil
}

func (s *Store) NotificationBacklog(ctx context.Context) (int, error) {
	n, err := s.client.ZCard(ctx, s.outboxDueKey()).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, wrap("ZCARD", s.outboxDueKey(), err)
	}
	return int(n), nil
}
