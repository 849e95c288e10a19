package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// resealBatch is how many keys one SCAN step asks for.
const resealBatch = 1000

// Reseal seals, under the current key, every record an earlier version
// wrote in clear and every record sealed under a previous key: credentials
// and challenges of this prefix, on every primary of a Cluster. It runs
// beside live instances: a record that changes while it is being resealed
// is left as the change wrote it (sealed under a key of that instance).
//
// Then each primary rewrites its persistence file (rewritePersistence):
// its append-only file still holds the commands that wrote the records in
// clear, or under the key that was rotated out, until it is rewritten.
// Replicas keep theirs (and backups are copies): the operator rewrites
// those. It returns how many records it read and how many it rewrote.
func (s *Store) Reseal(ctx context.Context) (scanned, resealed int, err error) {
	var mu sync.Mutex // ForEachMaster visits the shards of a Cluster at once
	each := func(ctx context.Context, node *goredis.Client) error {
		n, r, err := s.resealNode(ctx, node)
		mu.Lock()
		scanned, resealed = scanned+n, resealed+r
		mu.Unlock()
		if err != nil {
			return err
		}
		return rewritePersistence(ctx, node)
	}
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, each)
	case *goredis.Client:
		err = each(ctx, c)
	default:
		err = fmt.Errorf("redis: reseal: unexpected client %T", s.client)
	}
	return scanned, resealed, err
}

// resealNode reseals the records on one server.
func (s *Store) resealNode(ctx context.Context, c *goredis.Client) (scanned, resealed int, err error) {
	var cursor uint64
	match := globEscape(s.prefix) + "*"
	for {
		keys, next, err := c.ScanType(ctx, cursor, match, resealBatch, "string").Result()
		if err != nil {
			return scanned, resealed, fmt.Errorf("redis: SCAN %s: %w", match, err)
		}
		for _, key := range keys {
			kind := s.recordKind(key)
			if kind == "" {
				continue
			}
			raw, err := c.Get(ctx, key).Bytes()
			if errors.Is(err, goredis.Nil) {
				continue // gone since the SCAN
			}
			if err != nil {
				return scanned, resealed, wrap("GET", key, err)
			}
			scanned++
			done, err := s.resealRecord(ctx, kind, key, raw)
			if err != nil {
				return scanned, resealed, err
			}
			if done {
				resealed++
			}
		}
		if cursor = next; cursor == 0 {
			return scanned, resealed, nil
		}
	}
}

// recordKind tells the records that can hold secrets by their key:
// "credential", "challenge" (its record, where an earlier version kept the
// stored request), "secrets" (a challenge's sealed secrets), or "".
func (s *Store) recordKind(key string) string {
	rest, ok := strings.CutPrefix(key, s.prefix)
	switch {
	case !ok:
		return ""
	case strings.HasPrefix(rest, "cred:"):
		return "credential"
	case strings.HasPrefix(rest, "{u:"):
		// {u:<user>}:ch:<id> or :sec:<id>; a user key may itself contain
		// those, a challenge id (base64url) cannot contain ':'.
		for kind, sep := range map[string]string{"challenge": "}:ch:", "secrets": "}:sec:"} {
			if i := strings.LastIndex(rest, sep); i > 0 && !strings.Contains(rest[i+len(sep):], ":") {
				return kind
			}
		}
	}
	return ""
}

// resealRecord rewrites one record under the current key when it needs
// it, and reports whether it did.
func (s *Store) resealRecord(ctx context.Context, kind, key string, raw []byte) (bool, error) {
	switch kind {
	case "credential", "secrets":
		if s.sealer.Current(raw) {
			return false, nil
		}
		var fresh []byte
		if kind == "credential" {
			c, err := s.openCredentialOnly(key, raw)
			if err != nil {
				return false, err
			}
			if fresh, err = s.sealCredential(key, c); err != nil {
				return false, err
			}
		} else {
			plain, err := s.sealer.Open(raw, []byte(key))
			if err != nil {
				return false, fmt.Errorf("redis: opening %s: %w", key, err)
			}
			if fresh, err = s.sealer.Seal(plain, []byte(key)); err != nil {
				return false, fmt.Errorf("redis: sealing %s: %w", key, err)
			}
		}
		n, err := casScript.Run(ctx, s.client, []string{key}, raw, fresh).Int()
		if err != nil {
			return false, wrap("EVALSHA reseal", key, err)
		}
		return n == 1, nil
	case "challenge":
		rec, err := s.readChallenge(key, raw)
		if err != nil {
			return false, err
		}
		if rec.Held == nil {
			return false, nil // nothing in clear; its secrets key is resealed on its own
		}
		i := strings.LastIndex(key, "}:ch:")
		sk := key[:i] + "}:sec:" + key[i+len("}:ch:"):]
		return s.resealChallenge(ctx, key, sk, raw, nil, rec.ChallengeSecrets)
	}
	return false, nil
}

// globEscape quotes the characters SCAN MATCH gives a meaning.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

const (
	// rewriteTimeout bounds the wait for one server's rewrite of its
	// persistence file (a large dataset takes minutes).
	rewriteTimeout = 10 * time.Minute
	// rewritePoll is how often INFO persistence is read meanwhile.
	rewritePoll = 100 * time.Millisecond
)

// rewritePersistence has one server rewrite its persistence file from the
// dataset as it is now and waits until that is done: BGREWRITEAOF when
// it keeps an append-only file, else BGSAVE (its RDB file). A rewrite
// already running started from an older dataset, so it waits for that
// one and starts its own. It fails when the rewrite fails or takes longer
// than rewriteTimeout.
func rewritePersistence(ctx context.Context, c *goredis.Client) error {
	ctx, cancel := context.WithTimeout(ctx, rewriteTimeout)
	defer cancel()
	info := func() (string, error) {
		v, err := c.Info(ctx, "persistence").Result()
		if err != nil {
			return "", fmt.Errorf("redis: INFO persistence on %s: %w", c.Options().Addr, err)
		}
		return v, nil
	}
	v, err := info()
	if err != nil {
		return err
	}
	// What to run, what shows one running (set before the command
	// answers: it forks, or schedules, at once), and how the last one ended.
	cmd, busy, status := "BGSAVE", []string{"rdb_bgsave_in_progress", "aof_rewrite_in_progress"}, "rdb_last_bgsave_status"
	if infoField(v, "aof_enabled") == "1" {
		cmd, busy, status = "BGREWRITEAOF", []string{"aof_rewrite_in_progress", "aof_rewrite_scheduled"}, "aof_last_bgrewrite_status"
	}
	running := func(v string) bool {
		return slices.ContainsFunc(busy, func(f string) bool { return infoField(v, f) == "1" })
	}
	pause := func() error {
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis: %s on %s: waiting for the rewrite: %w", cmd, c.Options().Addr, ctx.Err())
		case <-time.After(rewritePoll):
			return nil
		}
	}
	for {
		if !running(v) {
			err := c.Do(ctx, cmd).Err()
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "in progress") {
				return fmt.Errorf("redis: %s on %s: %w", cmd, c.Options().Addr, err)
			}
			// Another rewrite started in between: wait for it, then ours.
		}
		if err := pause(); err != nil {
			return err
		}
		if v, err = info(); err != nil {
			return err
		}
	}
	for {
		if err := pause(); err != nil {
			return err
		}
		if v, err = info(); err != nil {
			return err
		}
		if running(v) {
			continue
		}
		if st := infoField(v, status); st != "ok" {
			return fmt.Errorf("redis: %s on %s failed (%s:%s): the file still holds the records as they were before the reseal", cmd, c.Options().Addr, status, st)
		}
		return nil
	}
}
