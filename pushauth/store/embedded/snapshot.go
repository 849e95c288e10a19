package embedded

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
)

// Snapshot copies the store, as of one read transaction taken after every
// queued write is committed, into an unlinked file next to the data file:
// the gateway goes on writing meanwhile, and a slow download never holds
// the read transaction (which would keep the file from growing).
func (s *Store) Snapshot(ctx context.Context) (*os.File, string, error) {
	st, err := s.state()
	if err != nil {
		return nil, "", err
	}
	if err := st.w.flush(ctx); err != nil {
		return nil, "", err
	}
	f, err := os.CreateTemp(filepath.Dir(s.opts.Path), ".backup-*")
	if err != nil {
		return nil, "", fmt.Errorf("embedded store: snapshot: %w", err)
	}
	_ = os.Remove(f.Name())
	var desc string
	err = st.db.View(func(tx *bolt.Tx) error {
		info, err := describe(tx)
		if err != nil {
			return err
		}
		desc = fmt.Sprintf("store %s, generation %d, %d bytes", info.StoreID, info.Generation, tx.Size())
		_, err = tx.WriteTo(f)
		return err
	})
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return nil, "", fmt.Errorf("embedded store: snapshot: %w", err)
	}
	return f, desc, nil
}

// FileInfo describes a store file (a backup, or the store of a stopped
// gateway).
type FileInfo struct {
	StoreID     string    `json:"store_id"`
	CreatedAt   time.Time `json:"created_at"`
	Generation  uint64    `json:"generation"`
	Credentials int       `json:"credentials"`
	Users       int       `json:"users"`
	Bound       int       `json:"bound"`
	AuditEvents int       `json:"audit_events"`
	// ActivationCodes and Notifications (not yet delivered) the file
	// holds.
	ActivationCodes int `json:"activation_codes"`
	Notifications   int `json:"notifications"`
	// LastEvent is the time of the newest audit event: about when the copy
	// was taken.
	LastEvent time.Time `json:"last_event,omitzero"`
}

func describe(tx *bolt.Tx) (*FileInfo, error) {
	b := tx.Bucket(bucketMeta)
	if b == nil || string(b.Get(metaFormat)) != format {
		return nil, fmt.Errorf("not an onepush embedded store (no %q format record)", format)
	}
	for _, name := range formatBuckets {
		if tx.Bucket(name) == nil {
			return nil, fmt.Errorf("no %q bucket", name)
		}
	}
	info := &FileInfo{StoreID: string(b.Get(metaStoreID))}
	_ = info.CreatedAt.UnmarshalText(b.Get(metaCreatedAt))
	if v := b.Get(metaGeneration); len(v) == 8 {
		info.Generation = binary.BigEndian.Uint64(v)
	}
	info.Credentials = tx.Bucket(bucketCredentials).Stats().KeyN
	err := tx.Bucket(bucketUsers).ForEach(func(_, v []byte) error {
		var u pushauth.User
		if err := json.Unmarshal(v, &u); err != nil {
			return err
		}
		info.Users++
		if u.CredentialID != "" {
			info.Bound++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if b := tx.Bucket(bucketActivation); b != nil { // none before the activation codes
		info.ActivationCodes = b.Stats().KeyN
	}
	if b := tx.Bucket(bucketOutbox); b != nil {
		info.Notifications = b.Stats().KeyN
	}
	audit := tx.Bucket(bucketAudit)
	info.AuditEvents = audit.Stats().KeyN
	if _, v := audit.Cursor().Last(); v != nil {
		var ev struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(v, &ev) == nil {
			info.LastEvent = ev.Time
		}
	}
	return info, nil
}

// Inspect opens a store file read-only, checks its structure (bbolt's
// consistency check) and describes it. The file must not be in use.
func Inspect(path string) (*FileInfo, error) {
	db, err := openDB(path, true)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var info *FileInfo
	err = db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the checker runs until it closes the channel
			if first == nil {
				first = fmt.Errorf("consistency check: %w", err)
			}
		}
		if first != nil {
			return first
		}
		var err error
		info, err = describe(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("embedded store %s: %w", path, err)
	}
	return info, nil
}
