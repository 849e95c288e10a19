package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
)

// Requests under dual control (pushauth.AdminRequests), one slot for all:
//
//	<p>{adminreq}:<id>    string  the request's JSON (no secret)          until ExpiresAt + AdminRequestRetention
//	<p>{adminreq}:index   zset    request ids by time requested (ms)      members whose record is gone are dropped on create
//
// Creating and deciding are scripts, acknowledged by MinReplicas when set:
// a failover that lost "done" would let a change run twice.

func (s *Store) requestsTag() string         { return s.prefix + "{adminreq}:" }
func (s *Store) requestKey(id string) string { return s.requestsTag() + id }
func (s *Store) requestIndex() string        { return s.requestsTag() + "index" }

// createRequestScript stores a request. KEYS[1] record, KEYS[2] index;
// ARGV: JSON, TTL ms, score, max, record key prefix. Returns 1, 0 (the id
// exists) or -1 (too many kept).
var createRequestScript = goredis.NewScript(`
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', ARGV[5] .. id) == 0 then redis.call('ZREM', KEYS[2], id) end
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return -1 end
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], string.sub(KEYS[1], string.len(ARGV[5]) + 1))
return 1
`)

// updateRequestScript replaces a request whose status is still ARGV[1].
// KEYS[1] record; ARGV: from, JSON. Returns {1} or {0, current JSON}, or
// {-1} when the record is gone.
var updateRequestScript = goredis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then return {-1} end
if cjson.decode(raw).status ~= ARGV[1] then return {0, raw} end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return {1}
`)

func (s *Store) CreateAdminRequest(ctx context.Context, r *pushauth.AdminRequest) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	k := s.requestKey(r.ID)
	ttl := s.ttlUntil(r.ExpiresAt.Add(pushauth.AdminRequestRetention))
	cmd, ackErr := s.run(ctx, true, createRequestScript, []string{k, s.requestIndex()},
		b, ttl.Milliseconds(), r.RequestedAt.UnixMilli(), pushauth.MaxAdminRequests, s.requestsTag())
	n, err := cmd.Int()
	switch {
	case err != nil:
		return wrap("EVALSHA create request", k, err)
	case n == -1:
		return pushauth.ErrTooManyAdminRequests
	case n == 0:
		return fmt.Errorf("redis: request %s: %w", r.ID, pushauth.ErrConflict)
	}
	return ackErr
}

func (s *Store) GetAdminRequest(ctx context.Context, id string) (*pushauth.AdminRequest, error) {
	k := s.requestKey(id)
	b, err := s.get(ctx, k)
	if err != nil {
		return nil, err
	}
	var r pushauth.AdminRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("redis: decoding %s: %w", k, err)
	}
	return &r, nil
}

func (s *Store) ListAdminRequests(ctx context.Context) ([]*pushauth.AdminRequest, error) {
	ids, err := s.client.ZRevRange(ctx, s.requestIndex(), 0, pushauth.MaxAdminRequests-1).Result()
	if err != nil {
		return nil, wrap("ZREVRANGE", s.requestIndex(), err)
	}
	out := make([]*pushauth.AdminRequest, 0, len(ids))
	for _, id := range ids {
		r, err := s.GetAdminRequest(ctx, id)
		if errors.Is(err, pushauth.ErrNotFound) {
			continue // aged out
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b *pushauth.AdminRequest) int { return b.RequestedAt.Compare(a.RequestedAt) })
	return out, nil
}

func (s *Store) UpdateAdminRequest(ctx context.Context, r *pushauth.AdminRequest, from pushauth.AdminRequestStatus) (*pushauth.AdminRequest, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	k := s.requestKey(r.ID)
	cmd, ackErr := s.run(ctx, true, updateRequestScript, []string{k}, string(from), b)
	res, err := cmd.Slice()
	if err != nil {
		return nil, wrap("EVALSHA update request", k, err)
	}
	switch code, _ := res[0].(int64); code {
	case -1:
		return nil, s.notFound(ctx, pushauth.ErrNotFound)
	case 0:
		raw, _ := res[1].(string)
		var cur pushauth.AdminRequest
		if err := json.Unmarshal([]byte(raw), &cur); err != nil {
			return nil, fmt.Errorf("redis: decoding %s: %w", k, err)
		}
		return &cur, pushauth.ErrConflict
	}
	return r, ackErr
}
