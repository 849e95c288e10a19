package embedded

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
)

// ExportInfo counts what Export copied.
type ExportInfo struct {
	Credentials, Users, Sessions, Markers, AuditEvents int
	// ActivationCodes outstanding and Notifications not yet delivered.
	ActivationCodes, Notifications int
}

// Export copies what the store keeps into another store (`caddy onepush
// store migrate`, to Redis): credentials (unbound ones with their expiry,
// expired ones not at all), users with their failure counts and locks,
// outstanding activation codes with their failures, the notifications not
// yet delivered (due at once in the destination, with their attempts so
// far), unexpired sessions and used-code markers with what is left of
// their lifetimes, and the audit trail, oldest first, into audit. Before writing anything it refuses a
// destination that already holds one of the store's users. The store
// must not be serving (the gateway is stopped); it is not changed.
func (s *Store) Export(ctx context.Context, dst pushauth.Store, audit pushauth.AuditLog) (ExportInfo, error) {
	var n ExportInfo
	st, err := s.state()
	if err != nil {
		return n, err
	}
	if err := st.w.flush(ctx); err != nil {
		return n, err
	}
	now := s.now()
	err = st.db.View(func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		if err := users.ForEach(func(k, _ []byte) error {
			_, err := dst.GetUser(ctx, string(k))
			switch {
			case err == nil:
				return fmt.Errorf("%w: the destination already holds user %q: refusing to mix two installations", ErrExists, k)
			case !errors.Is(err, pushauth.ErrNotFound):
				return fmt.Errorf("reading user %q from the destination: %w", k, err)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCredentials).ForEach(func(k, v []byte) error {
			c, err := openCredential(st.sealer, string(k), v)
			if err != nil {
				return err
			}
			if credentialExpired(c, now) {
				return nil
			}
			n.Credentials++
			return dst.PutCredential(ctx, c)
		}); err != nil {
			return err
		}
		if err := users.ForEach(func(k, v []byte) error {
			var u pushauth.User
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("user %q: %w", k, err)
			}
			n.Users++
			return dst.PutUser(ctx, &u)
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketActivation).ForEach(func(k, v []byte) error {
			c, expired, err := openActivation(st.sealer, string(k), v, now)
			if err != nil || expired {
				return err
			}
			n.ActivationCodes++
			return dst.PutActivationCode(ctx, c)
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var r outboxRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("outbox message %q: %w", k, err)
			}
			m := r.Notification
			m.Lease = "" // no claim of this gateway holds it there
			n.Notifications++
			err := dst.EnqueueNotification(ctx, &m)
			if errors.Is(err, pushauth.ErrExists) {
				return fmt.Errorf("%w: the destination already holds outbox message %s: refusing to mix two installations", ErrExists, k)
			}
			return err
		}); err != nil {
			return err
		}
		// Sessions and markers are keyed by expiry: the unexpired ones
		// start at now.
		c := tx.Bucket(bucketSessions).Cursor()
		for k, v := c.Seek(timedKey(now, "")); k != nil; k, v = c.Next() {
			until, hash, ok := splitTimedKey(k)
			if !ok {
				continue
			}
			n.Sessions++
			if err := dst.PutSession(ctx, hash, string(v), until.Sub(now)); err != nil {
				return err
			}
		}
		c = tx.Bucket(bucketMarkers).Cursor()
		for k, v := c.Seek(timedKey(now, "")); k != nil; k, v = c.Next() {
			until, id, ok := splitTimedKey(k)
			if !ok || len(v) == 0 {
				continue
			}
			key, err := st.sealer.Open(v, markerAD(id))
			if err != nil {
				return fmt.Errorf("used-code marker: %w", err)
			}
			n.Markers++
			if _, err := dst.UseJTI(ctx, string(key), until); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			var ev pushauth.AuditEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				s.log.Warn("embedded store: export skips an unreadable audit event", "seq", binary.BigEndian.Uint64(k), "error", err)
				return nil
			}
			n.AuditEvents++
			return audit.Append(ctx, ev)
		})
	})
	if err != nil {
		return n, fmt.Errorf("embedded store %s: export: %w", s.opts.Path, err)
	}
	return n, nil
}
