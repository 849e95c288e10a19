package redis

// The epoch guards against a Redis that lost its data (restarted without
// persistence, FLUSHALL, failover to an empty replica). Without it every
// user would look not enrolled, and a rule with `not_enrolled: allow`
// would let them in on the password alone: the gateway would fail open.
//
// <prefix>epoch holds a random value, without TTL, created once by the
// first New on an empty Redis. New remembers it (and, with
// Options.EpochFile, records it on local disk, so a restarted instance
// notices a Redis that came back empty). While running, GetUser and
// GetCredential verify it whenever they would answer ErrNotFound, and a
// background check verifies it once a second; a missing or different
// epoch turns those answers into ErrWiped. The store never recreates the
// epoch at runtime: an operator who accepts the data loss restarts the
// instances (after deleting their epoch files).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ErrWiped is wrapped by the errors GetUser and GetCredential return when
// the Redis data this store started with is gone (the epoch key is missing
// or holds another value). It is not pushauth.ErrNotFound, so the gate
// answers 503 instead of treating users as not enrolled.
var ErrWiped = errors.New("redis data was wiped: every user would look not enrolled")

// epochCheckInterval is how often the background check reads the epoch;
// a variable so tests may shorten it.
var epochCheckInterval = time.Second

// maxEpochLen bounds what New accepts from Redis or the epoch file.
const maxEpochLen = 128

func (s *Store) epochKey() string { return s.prefix + "epoch" }

func newEpoch() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("redis: generating epoch: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func validEpoch(v string) bool {
	return v != "" && len(v) <= maxEpochLen && !strings.ContainsAny(v, " \t\r\n")
}

// where names the Redis and prefix for error messages.
func where(addrs []string, prefix string, db int) string {
	s := strings.Join(addrs, ",") + " (prefix " + fmt.Sprintf("%q", prefix)
	if db != 0 {
		s += fmt.Sprintf(", db %d", db)
	}
	return s + ")"
}

// setupEpoch reads the epoch from Redis (creating it on an empty Redis
// unless the epoch file says this instance used another one before) and
// records it in the epoch file.
func (s *Store) setupEpoch(ctx context.Context, opts Options) error {
	at := where(opts.Addrs, s.prefix, opts.DB)
	key := s.epochKey()
	var recorded string
	if opts.EpochFile != "" {
		b, err := os.ReadFile(opts.EpochFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("redis: reading epoch file %s: %w", opts.EpochFile, err)
		default:
			recorded = strings.TrimSpace(string(b))
			if !validEpoch(recorded) {
				return fmt.Errorf("redis: epoch file %s is empty or malformed: refusing to start; if the data in redis at %s is the data this instance used, delete %s to start", opts.EpochFile, at, opts.EpochFile)
			}
		}
	}
	cur, err := s.client.Get(ctx, key).Result()
	switch {
	case errors.Is(err, goredis.Nil):
		if recorded != "" {
			return fmt.Errorf("redis at %s holds no onepush data (no %s key) but this instance used epoch %s before: refusing to start, since every user would look not enrolled; if the data loss is known, delete %s to start fresh", at, key, recorded, opts.EpochFile)
		}
		// A fresh deployment: the first instance creates the epoch, the
		// others (racing) read the winner's.
		fresh, err := newEpoch()
		if err != nil {
			return err
		}
		ok, err := s.client.SetNX(ctx, key, fresh, 0).Result()
		if err != nil {
			return wrap("SET NX", key, err)
		}
		if ok {
			cur = fresh
		} else if cur, err = s.client.Get(ctx, key).Result(); err != nil {
			return wrap("GET", key, err)
		}
	case err != nil:
		return wrap("GET", key, err)
	}
	if !validEpoch(cur) {
		return fmt.Errorf("redis: %s at %s holds a malformed epoch (%d bytes): refusing to start", key, at, len(cur))
	}
	if recorded != "" && recorded != cur {
		return fmt.Errorf("redis at %s holds onepush epoch %s but this instance used epoch %s before: refusing to start, since its users' records are not in this data and every user would look not enrolled; if the data loss is known, delete %s to start fresh", at, cur, recorded, opts.EpochFile)
	}
	if opts.EpochFile != "" && recorded != cur {
		if err := writeEpochFile(opts.EpochFile, cur); err != nil {
			return err
		}
	}
	s.epoch = cur
	return nil
}

// writeEpochFile writes the file atomically (temporary file, rename), so
// a crash never leaves a half-written epoch.
func writeEpochFile(path, epoch string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("redis: creating the directory of epoch file %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, ".epoch-*")
	if err != nil {
		return fmt.Errorf("redis: writing epoch file %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.WriteString(epoch + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("redis: writing epoch file %s: %w", path, err)
	}
	return nil
}

// checkEpoch reads the epoch key. It returns an error wrapping ErrWiped
// when the key is missing or holds another value, another error when Redis
// cannot be read, and nil when the data is the data New found. Its verdict
// is remembered for the success paths of GetUser and GetCredential.
func (s *Store) checkEpoch(ctx context.Context) error {
	key := s.epochKey()
	v, err := s.client.Get(ctx, key).Result()
	switch {
	case errors.Is(err, goredis.Nil):
		s.wiped.Store(true)
		return fmt.Errorf("redis: %s is gone (this store started with epoch %s): %w", key, s.epoch, ErrWiped)
	case err != nil:
		return wrap("GET", key, err)
	case v != s.epoch:
		s.wiped.Store(true)
		return fmt.Errorf("redis: %s changed (this store started with epoch %s): %w", key, s.epoch, ErrWiped)
	}
	s.wiped.Store(false)
	return nil
}

// notFound is what GetUser and GetCredential answer for a missing record:
// ErrNotFound only while the epoch shows the data is intact.
func (s *Store) notFound(ctx context.Context, nf error) error {
	if err := s.checkEpoch(ctx); err != nil {
		return err
	}
	return nf
}

// wipedErr is the error of a found record while the background check
// last saw a wiped Redis: records written since the wipe are not trusted.
func (s *Store) wipedErr() error {
	if s.wiped.Load() {
		return fmt.Errorf("redis: %s is gone or changed (this store started with epoch %s): %w", s.epochKey(), s.epoch, ErrWiped)
	}
	return nil
}

// epochLoop verifies the epoch, and reads the primary's replication ID
// (failover.go), every epochCheckInterval until ctx ends.
func (s *Store) epochLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(epochCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, epochCheckInterval)
			_ = s.checkEpoch(cctx) // an unreachable Redis leaves the verdict as is
			s.checkPrimary(cctx)
			cancel()
		}
	}
}
