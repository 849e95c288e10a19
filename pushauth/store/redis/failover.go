package redis

// After a failover the new primary may lack writes the old one
// acknowledged: an approval, a replay marker, a used code or token. The
// store refuses to act on anything such a write could have protected:
//
//   - Every challenge record carries the replication ID of the primary it
//     was created on ("repl", written by createScript from INFO).
//   - Every new connection reads the replication ID of its server before
//     it is used (OnConnect; a data server that does not answer INFO fails
//     the connection). A failover leaves only new connections: the old
//     primary is gone, go-redis drops the connections to it when Sentinel
//     announces the switch, and a demoted primary's READONLY answers close
//     them too. So an instance knows of the new primary before its first
//     command there, and a call prepared for the old primary cannot reach
//     the new one: go-redis retries a failed call for well under a second,
//     a failover takes longer than Sentinel's down-after-milliseconds.
//   - A promoted replica has a new replication ID, so after a failover the
//     script that resolves a challenge (resolveScript, given the current ID
//     by the instance that runs it) cancels a live challenge from before it
//     and refuses to approve it, and readers see such a challenge cancelled
//     even when it was approved (its replay marker may be lost). Nothing
//     can trust the absence of a marker on the new primary without knowing
//     it is new.
//   - Each instance also reads the replication ID once a second (with the
//     epoch check) and from every script that reports it. When it changes,
//     the engine is told (WatchFailover): it cancels the challenges it
//     holds, so their browsers get a page at once, and refuses the security
//     codes that were valid at the failover (LastFailover); the time of the
//     first instance to notice is shared through <p>failover:<replication
//     id>.
//
// On Cluster every shard has its own replication ID; there only the
// scripts' check of each record against its own shard applies.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// failoverMemory is how long <p>failover:<id> is kept: longer than the
// code quarantine the engine derives from it.
const failoverMemory = 10 * time.Minute

// primary is what the store knows of the primary it writes to.
type primary struct {
	off bool // Cluster: see above
	id  atomic.Pointer[string]
	at  atomic.Int64 // Unix ms of the last failover, 0 for none

	mu       sync.Mutex
	watchers map[int]func()
	next     int
	retired  map[string]bool // replaced primaries: a late reply from one changes nothing
}

// current is the replication ID of the primary as last seen ("" on
// Cluster).
func (p *primary) current() string {
	if p.off {
		return ""
	}
	if id := p.id.Load(); id != nil {
		return *id
	}
	return ""
}

// replaced reports whether a record created on the primary with
// replication ID repl predates the current primary.
func (p *primary) replaced(repl string) bool {
	cur := p.current()
	return repl != "" && cur != "" && repl != cur
}

func (s *Store) failoverKey(id string) string { return s.prefix + "failover:" + id }

// setupPrimary records the primary's replication ID at start, and the
// time of a failover another instance saw a moment ago.
func (s *Store) setupPrimary(ctx context.Context) error {
	if _, ok := s.client.(*goredis.ClusterClient); ok {
		s.primary.off = true
		return nil
	}
	id, err := s.readPrimary(ctx)
	if err != nil {
		return err
	}
	s.primary.id.Store(&id)
	if ms, err := s.client.Get(ctx, s.failoverKey(id)).Int64(); err == nil {
		s.primary.at.Store(ms)
	}
	return nil
}

// readPrimary asks the primary for its replication ID.
func (s *Store) readPrimary(ctx context.Context) (string, error) {
	info, err := s.client.Info(ctx, "replication").Result()
	if err != nil {
		return "", fmt.Errorf("redis: INFO replication (the store's ACL user needs +info, also in scripts, and +wait): %w", err)
	}
	if id := parseReplID(info); id != "" {
		return id, nil
	}
	return "", errors.New("redis: INFO replication has no master_replid")
}

// parseReplID finds master_replid in the text of INFO replication.
func parseReplID(info string) string { return infoField(info, "master_replid") }

// infoField is the value of one field of an INFO reply ("" when absent).
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// onConnect reads the replication ID of the server a new connection
// reaches, before the connection is used; without it the connection is not
// used. A connection to a Sentinel has none and is left alone.
func (s *Store) onConnect(ctx context.Context, cn *goredis.Conn) error {
	if s.primary.off {
		return nil
	}
	info, err := cn.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("redis: INFO replication on a new connection: %w", err)
	}
	if id := parseReplID(info); id != "" {
		s.notePrimary(id)
	}
	return nil
}

// checkPrimary reads the replication ID (once a second, with the epoch).
func (s *Store) checkPrimary(ctx context.Context) {
	if s.primary.off {
		return
	}
	if id, err := s.readPrimary(ctx); err == nil {
		s.notePrimary(id)
	}
}

// notePrimary takes in the replication ID a script or INFO reported; a new
// one is a failover.
func (s *Store) notePrimary(id string) {
	p := &s.primary
	if p.off || id == "" {
		return
	}
	if cur := p.id.Load(); cur != nil && *cur == id {
		return
	}
	p.mu.Lock()
	cur := p.id.Load()
	if (cur != nil && *cur == id) || p.retired[id] {
		p.mu.Unlock()
		return
	}
	if p.retired == nil {
		p.retired = map[string]bool{}
	}
	if cur != nil {
		p.retired[*cur] = true
	}
	p.id.Store(&id)
	now := s.now()
	p.at.Store(now.UnixMilli())
	fns := make([]func(), 0, len(p.watchers))
	for _, fn := range p.watchers {
		fns = append(fns, fn)
	}
	p.mu.Unlock()
	go s.shareFailover(id, now)
	for _, fn := range fns {
		fn()
	}
}

// shareFailover records when this failover was first seen, and takes an
// earlier time another instance recorded.
func (s *Store) shareFailover(id string, seen time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	key := s.failoverKey(id)
	if err := s.client.SetNX(ctx, key, seen.UnixMilli(), failoverMemory).Err(); err != nil {
		return
	}
	ms, err := s.client.Get(ctx, key).Int64()
	if err != nil || s.primary.current() != id {
		return
	}
	for {
		cur := s.primary.at.Load()
		if ms >= cur || s.primary.at.CompareAndSwap(cur, ms) {
			return
		}
	}
}

// WatchFailover calls fn, from the goroutine that noticed, each time the
// primary's replication ID changes, until stop is called. fn must not
// block.
func (s *Store) WatchFailover(fn func()) (stop func()) {
	p := &s.primary
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watchers == nil {
		p.watchers = map[int]func(){}
	}
	id := p.next
	p.next++
	p.watchers[id] = fn
	return func() {
		p.mu.Lock()
		delete(p.watchers, id)
		p.mu.Unlock()
	}
}

// LastFailover is when the current primary took over, as first seen by an
// instance sharing this Redis; zero when no failover was seen.
func (s *Store) LastFailover() time.Time {
	ms := s.primary.at.Load()
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// PrimaryID is the replication ID of the primary as last seen ("" on
// Cluster); for tests and diagnostics.
func (s *Store) PrimaryID() string { return s.primary.current() }
