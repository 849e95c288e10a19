package embedded

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// durability is how long a used-once marker (UseJTI) must outlive the
// process, chosen by the marker's prefix, which the engine sets:
//
//   - "otp/…" (security codes) and every prefix this store does not know:
//     synced — on disk before UseJTI answers, so a code used before a crash
//     is refused after it. These are typed by people, never on the path of
//     a held request.
//   - "jti/…" (device-token IDs) and "push/…" (the per-user push budget):
//     batched — committed with the next transaction, within Linger. A
//     decision token is on the release path of a held request, and the
//     challenge it names does not survive a restart anyway; what a crash
//     can lose is the last Linger of them.
//   - "replay/…" (an interstitial challenge's one replay): in memory only;
//     the challenge it guards is gone after a restart.
type durability int

const (
	synced durability = iota
	batched
	inMemory
)

func durabilityOf(key string) durability {
	switch {
	case strings.HasPrefix(key, "jti/"), strings.HasPrefix(key, "push/"):
		return batched
	case strings.HasPrefix(key, "replay/"):
		return inMemory
	}
	return synced
}

// markerID is how a marker is looked up, in memory and in the file: a
// used security code is still a code, so neither holds it in clear. The
// file keeps the marker itself sealed beside it, for a move to another
// store (Export).
func markerID(key string) string {
	h := sha256.Sum256([]byte("onepush-marker\x00" + key))
	return string(h[:])
}

func markerAD(id string) []byte { return append([]byte("marker/"), id...) }

// UseJTI records a marker as used until the given time; false means it
// was used before and has not expired.
func (s *Store) UseJTI(ctx context.Context, key string, until time.Time) (bool, error) {
	st, err := s.state()
	if err != nil {
		return false, err
	}
	id := markerID(key)
	now := s.now()
	s.markers.mu.Lock()
	if prev, ok := s.markers.m[id]; ok && !now.After(prev.until) {
		s.markers.mu.Unlock()
		return false, nil
	}
	s.markers.m[id] = timed{until: until}
	s.markers.mu.Unlock()
	// Sealed by the writer, off the path of the request.
	put := func(tx *bolt.Tx) error {
		sealed, err := st.sealer.Seal([]byte(key), markerAD(id))
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMarkers).Put(timedKey(until, id), sealed)
	}
	switch durabilityOf(key) {
	case inMemory:
	case batched:
		if err := st.w.later(put); err != nil {
			// Still refused while this process runs; only a restart could
			// forget it.
			s.log.Warn("embedded store: a used marker was not queued for the disk", "kind", key[:strings.IndexByte(key, '/')], "error", err)
		}
	default:
		// The marker stays set in memory when the write fails: the code is
		// refused (fail closed) rather than accepted twice.
		if err := st.w.do(ctx, put); err != nil {
			return false, fmt.Errorf("embedded store: recording a used code: %w", err)
		}
	}
	return true, nil
}
