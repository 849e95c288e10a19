package redis

// Replication is asynchronous: a write the primary acknowledged can be
// lost when Sentinel promotes a replica that had not received it yet. For
// the writes whose loss would allow a replay or undo a lock (single-use
// markers, approvals, failure counts and locks), the store asks
// MinReplicas replicas to acknowledge with WAIT, sent on the same
// connection right behind the script in one pipeline (WAIT counts the
// writes of its own connection), and fails the operation when they do not
// within ReplicaTimeout. That narrows the window in which a failover can
// lose such a write to the replication of one write; it does not close it
// (a replica that acknowledged can still fail, and WAIT does not make the
// replica sync to disk). What a failover may still have lost, failover.go
// refuses to act on.
//
// An approval is the one write others act on the moment they read it (a
// held request is released by it), so it counts only once acknowledged:
// resolveScript writes it with "_ack" set, which every reader takes for
// still pending; ackScript then makes it final and publishes it, or, when
// the replicas did not acknowledge, takes it back to pending.

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ErrNotReplicated is wrapped by the error of an operation whose write
// fewer than MinReplicas replicas acknowledged in time. The operation
// did not take effect for anyone (an approval was taken back), or it
// fails closed (a marker stays used on the primary).
var ErrNotReplicated = errors.New("redis: the write was not acknowledged by enough replicas")

// DefaultReplicaTimeout is how long the store waits for MinReplicas when
// Options.ReplicaTimeout is 0.
const DefaultReplicaTimeout = 500 * time.Millisecond

// ackScript finishes an approval resolveScript kept waiting for its
// replicas (_ack = its op).
//
// KEYS[1] challenge record, KEYS[2] user pending pointer. ARGV[1] id,
// ARGV[2] op token, ARGV[3] channel, ARGV[4] largest record to publish,
// ARGV[5] "1" commit (final, unpointed, published) or "0" take back (pending
// again). Returns {"ok"|"aborted"|"conflict", json} or {"nf"}.
var ackScript = goredis.NewScript(luaLib + `
local raw = redis.call('GET', KEYS[1])
if not raw then
  return {'nf'}
end
local c = cjson.decode(raw)
if c._ack ~= ARGV[2] then
  if ARGV[5] == '1' and c._ack == nil and c._op == ARGV[2] and c.status ~= 'pending' then
    return {'ok', pub(c)} -- this very call, retried after a lost reply
  end
  return {'conflict', pub(c)}
end
c._ack = nil
if ARGV[5] ~= '1' then
  c.status = 'pending'
  c.decided_at = '0001-01-01T00:00:00Z'
  c.fraud = nil
  c._op = nil
  redis.call('SET', KEYS[1], cjson.encode(c), 'KEEPTTL')
  return {'aborted', pub(c)}
end
return {'ok', settle(KEYS[1], KEYS[2], ARGV[1], c, ARGV[3], ARGV[4])}
`)

// run runs script. When acked (and MinReplicas is set), WAIT follows it in
// one pipeline on the connection of the node that holds keys[0], and
// ackErr says whether MinReplicas acknowledged within ReplicaTimeout; the
// script's own reply and error are in the returned command either way.
func (s *Store) run(ctx context.Context, acked bool, script *goredis.Script, keys []string, args ...any) (cmd *goredis.Cmd, ackErr error) {
	if !acked || s.minReplicas == 0 {
		return script.Run(ctx, s.client, keys, args...), nil
	}
	node, err := s.nodeFor(ctx, keys[0])
	if err != nil {
		cmd := goredis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd, nil
	}
	for attempt := 0; ; attempt++ {
		pipe := node.Pipeline()
		cmd = script.EvalSha(ctx, pipe, keys, args...)
		wait := pipe.Do(ctx, "WAIT", s.minReplicas, s.replicaTimeout.Milliseconds())
		_, _ = pipe.Exec(ctx)
		if attempt == 0 && goredis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			if err := script.Load(ctx, node).Err(); err != nil {
				cmd.SetErr(err)
				return cmd, nil
			}
			continue
		}
		if cmd.Err() != nil {
			return cmd, nil
		}
		n, err := wait.Int()
		switch {
		case err != nil:
			return cmd, fmt.Errorf("%w: WAIT %d %s: %w", ErrNotReplicated, s.minReplicas, s.replicaTimeout, err)
		case n < s.minReplicas:
			return cmd, fmt.Errorf("%w: %d of %d replicas acknowledged within %s", ErrNotReplicated, n, s.minReplicas, s.replicaTimeout)
		}
		return cmd, nil
	}
}

// nodeFor is the client whose connections reach the primary holding key:
// the store's client, or on Cluster the key's shard.
func (s *Store) nodeFor(ctx context.Context, key string) (goredis.UniversalClient, error) {
	cc, ok := s.client.(*goredis.ClusterClient)
	if !ok {
		return s.client, nil
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("redis: finding the primary of a key's slot: %w", err)
	}
	return node, nil
}
