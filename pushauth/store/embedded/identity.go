package embedded

// What proves which store a gateway uses, and that it had one at all.
//
// Inside the file, the meta bucket holds a random store id, the creation
// time, a generation counted up by every commit, and a key check (a value
// sealed with the store's key). Outside the data directory, by default in
// Caddy's config directory, the identity file records the store id and the
// generation this gateway last saw (at every start and clean stop). So:
//
//   - a missing data file with an identity record is a loss, never a new
//     installation, and Init refuses to paper over it;
//   - a file with another store id, or one that this gateway's key does
//     not open, was replaced;
//   - a file older than the recorded generation is a copy put back by
//     hand: only `caddy onepush store restore` rolls back, saying what it
//     undoes.
//
// A whole data directory lost with nothing else (a container without a
// volume) still stops the gateway: the file is missing, and only Init
// creates one.

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth/seal"
)

var (
	metaFormat    = []byte("format")
	metaStoreID   = []byte("store_id")
	metaCreatedAt = []byte("created_at")
	metaKeyCheck  = []byte("key_check")
)

// format is the layout version of the file.
const format = "onepush-embedded-1"

var keyCheckAD = []byte("meta/key_check")

// identity is the record kept outside the data directory.
type identity struct {
	StoreID    string    `json:"store_id"`
	Path       string    `json:"path"`
	CreatedAt  time.Time `json:"created_at"`
	Generation uint64    `json:"generation"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// readIdentity returns nil without error when there is no record.
func readIdentity(path string) (*identity, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("embedded store: reading identity file %s: %w", path, err)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil || id.StoreID == "" {
		return nil, fmt.Errorf("embedded store: identity file %s is malformed: refusing to start; if the store file is the right one, delete %s and start again", path, path)
	}
	return &id, nil
}

func recordIdentity(opts Options, storeID string, created time.Time, generation uint64) error {
	if opts.IdentityFile == "" {
		return nil
	}
	b, err := json.MarshalIndent(identity{StoreID: storeID, Path: opts.Path, CreatedAt: created.UTC(), Generation: generation, UpdatedAt: opts.now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(opts.IdentityFile), 0o700); err != nil {
		return fmt.Errorf("embedded store: creating the directory of identity file %s: %w", opts.IdentityFile, err)
	}
	if err := renameio.WriteFile(opts.IdentityFile, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("embedded store: writing identity file %s: %w", opts.IdentityFile, err)
	}
	return nil
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// sealer is the configured Sealer, or the one of the key file.
func (o Options) sealer() (*seal.Sealer, error) {
	if o.Sealer != nil {
		return o.Sealer, nil
	}
	b, err := os.ReadFile(o.KeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no encryption_key is configured and the key file %s is missing, so the security-code secrets in %s cannot be opened: put the key file back from your backup, or configure encryption_key with the key the store was sealed with", ErrKey, o.KeyFile, o.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded store: reading key file %s: %w", o.KeyFile, err)
	}
	s, err := seal.ParseKeys(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("embedded store: key file %s: %w", o.KeyFile, err)
	}
	return s, nil
}

// meta is what the meta bucket says about the file.
type meta struct {
	storeID    string
	createdAt  time.Time
	generation uint64
	keyCheck   []byte
}

func readMeta(db *bolt.DB, path string) (*meta, error) {
	var m meta
	err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b == nil || string(b.Get(metaFormat)) != format {
			return fmt.Errorf("%w: %s is not an onepush embedded store (no %q format record): refusing to start; put the right file back or restore a backup with `caddy onepush store restore`", ErrReplaced, path, format)
		}
		for _, name := range formatBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: %s has no %q bucket: refusing to start", ErrReplaced, path, name)
			}
		}
		m.storeID = string(b.Get(metaStoreID))
		if err := m.createdAt.UnmarshalText(b.Get(metaCreatedAt)); err != nil {
			return fmt.Errorf("embedded store: %s: created_at: %w", path, err)
		}
		if v := b.Get(metaGeneration); len(v) == 8 {
			m.generation = binary.BigEndian.Uint64(v)
		}
		m.keyCheck = clone(b.Get(metaKeyCheck))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// verify checks the file against the identity record and the key.
func (m *meta) verify(opts Options, id *identity, sealer *seal.Sealer) error {
	if id != nil && id.StoreID != m.storeID {
		return fmt.Errorf("%w: %s holds store %s, but this gateway uses store %s (recorded in %s): refusing to start; put the right file back, or restore a backup of store %s with `caddy onepush store restore`",
			ErrReplaced, opts.Path, m.storeID, id.StoreID, opts.IdentityFile, id.StoreID)
	}
	if id != nil && m.generation < id.Generation {
		return fmt.Errorf("%w: %s is older (generation %d) than the store this gateway last used (generation %d, recorded in %s): it was put back by hand, which would silently undo bindings and revocations; put the current file back, or roll back on purpose with `caddy onepush store restore BACKUP --accept-rollback`",
			ErrReplaced, opts.Path, m.generation, id.Generation, opts.IdentityFile)
	}
	if _, err := sealer.Open(m.keyCheck, keyCheckAD); err != nil {
		where := "encryption_key"
		if opts.Sealer == nil {
			where = "the key file " + opts.KeyFile
		}
		return fmt.Errorf("%w: %s (store %s) was sealed with a key that %s does not hold (the file is another installation's, or the key changed): refusing to start; configure the key it was sealed with (a rotated key goes in previous_encryption_keys)",
			ErrKey, opts.Path, m.storeID, where)
	}
	return nil
}

// Info describes a store Init created.
type Info struct {
	StoreID   string
	CreatedAt time.Time
	Path      string
	// KeyFile is the generated key's file ("" when encryption_key seals).
	KeyFile string
}

// Init creates an empty store file. It refuses when the file exists, and
// when the identity record shows this gateway used a store there before
// (a loss to restore from a backup, not a new installation): an operator
// who accepts that loss deletes the identity file first. Without a
// configured Sealer it creates the key file (or reuses one left there).
func Init(opts Options) (*Info, error) {
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("embedded store: path %q: %w", opts.Path, err)
	}
	opts.Path = abs
	if _, err := os.Stat(abs); err == nil {
		return nil, fmt.Errorf("%w: %s already exists: a store is created once; back it up with `caddy onepush store backup`", ErrExists, abs)
	}
	id, err := readIdentity(opts.IdentityFile)
	if err != nil {
		return nil, err
	}
	if id != nil {
		return nil, fmt.Errorf("%w: this gateway used store %s at %s (created %s, recorded in %s), and that file is gone: restore the latest backup with `caddy onepush store restore BACKUP --accept-rollback`; to start over with every user not enrolled, delete %s first",
			ErrExists, id.StoreID, id.Path, id.CreatedAt.Format(time.RFC3339), opts.IdentityFile, opts.IdentityFile)
	}
	info := &Info{Path: abs, CreatedAt: opts.now().UTC()}
	sealer := opts.Sealer
	if sealer == nil {
		if opts.KeyFile == "" {
			return nil, fmt.Errorf("embedded store %s: a sealing key (encryption_key) or a key file is required", abs)
		}
		if sealer, err = ensureKeyFile(opts.KeyFile); err != nil {
			return nil, err
		}
		info.KeyFile = opts.KeyFile
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	info.StoreID = hex.EncodeToString(raw[:])
	check, err := sealer.Seal([]byte("onepush embedded store "+info.StoreID), keyCheckAD)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: creating the directory of %s: %w", abs, err)
	}
	// O_EXCL: two inits racing create one store.
	db, err := bolt.Open(abs, 0o600, &bolt.Options{Timeout: lockWait, OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		return os.OpenFile(name, flag|os.O_EXCL, perm)
	}})
	if err != nil {
		return nil, fmt.Errorf("embedded store: creating %s: %w", abs, err)
	}
	created, _ := info.CreatedAt.MarshalText()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range buckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketMeta)
		for k, v := range map[string][]byte{string(metaFormat): []byte(format), string(metaStoreID): []byte(info.StoreID),
			string(metaCreatedAt): created, string(metaKeyCheck): check} {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return bumpGeneration(tx)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(abs)
		return nil, fmt.Errorf("embedded store: creating %s: %w", abs, err)
	}
	if err := recordIdentity(opts, info.StoreID, info.CreatedAt, 1); err != nil {
		return nil, err
	}
	return info, nil
}

// ensureKeyFile reads the key file, creating it with a fresh key when
// missing.
func ensureKeyFile(path string) (*seal.Sealer, error) {
	if b, err := os.ReadFile(path); err == nil {
		s, err := seal.ParseKeys(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("embedded store: key file %s: %w", path, err)
		}
		return s, nil
	}
	key, err := seal.NewKey()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: creating the directory of key file %s: %w", path, err)
	}
	if err := renameio.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("embedded store: writing key file %s: %w", path, err)
	}
	return seal.ParseKeys(key)
}

// reseal rewrites every sealed record (credentials, used-code markers,
// activation codes, the key check) with the current key after a key rotation, in one
// transaction, before the store serves.
func reseal(db *bolt.DB, sealer *seal.Sealer, log *slog.Logger) error {
	n := 0
	err := db.Update(func(tx *bolt.Tx) error {
		creds := tx.Bucket(bucketCredentials)
		var ids [][]byte
		if err := creds.ForEach(func(k, _ []byte) error { ids = append(ids, clone(k)); return nil }); err != nil {
			return err
		}
		for _, k := range ids {
			v := creds.Get(k)
			if sealer.Current(v) {
				continue
			}
			plain, err := sealer.Open(v, credentialAD(string(k)))
			if err != nil {
				return fmt.Errorf("credential %q: %w", k, err)
			}
			out, err := sealer.Seal(plain, credentialAD(string(k)))
			if err != nil {
				return err
			}
			if err := creds.Put(k, out); err != nil {
				return err
			}
			n++
		}
		markers := tx.Bucket(bucketMarkers)
		type kv struct{ k, v []byte }
		var stale []kv
		if err := markers.ForEach(func(k, v []byte) error {
			if len(v) > 0 && !sealer.Current(v) {
				stale = append(stale, kv{clone(k), clone(v)})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, r := range stale {
			_, id, _ := splitTimedKey(r.k)
			plain, err := sealer.Open(r.v, markerAD(id))
			if err != nil {
				return fmt.Errorf("used-code marker: %w", err)
			}
			out, err := sealer.Seal(plain, markerAD(id))
			if err != nil {
				return err
			}
			if err := markers.Put(r.k, out); err != nil {
				return err
			}
		}
		codes := tx.Bucket(bucketActivation)
		stale = stale[:0]
		if err := codes.ForEach(func(k, v []byte) error {
			if len(v) > 8 && !sealer.Current(v[8:]) {
				stale = append(stale, kv{clone(k), clone(v)})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, r := range stale {
			plain, err := sealer.Open(r.v[8:], activationAD(string(r.k)))
			if err != nil {
				return fmt.Errorf("activation code of %q: %w", r.k, err)
			}
			out, err := sealer.Seal(plain, activationAD(string(r.k)))
			if err != nil {
				return err
			}
			if err := codes.Put(r.k, append(r.v[:8:8], out...)); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		plain, err := sealer.Open(m.Get(metaKeyCheck), keyCheckAD)
		if err != nil {
			return err
		}
		check, err := sealer.Seal(plain, keyCheckAD)
		if err != nil {
			return err
		}
		if err := m.Put(metaKeyCheck, check); err != nil {
			return err
		}
		return bumpGeneration(tx)
	})
	if err != nil {
		return fmt.Errorf("embedded store: resealing with the current encryption_key: %w", err)
	}
	log.Info("embedded store: resealed with the current encryption_key; the previous keys may now be dropped", "credentials", n)
	return nil
}
