// Package embedded is the store of a gateway that runs alone: one bbolt
// file, by default under Caddy's data directory, that keeps what must
// outlive the process — credentials (their security-code secrets sealed;
// unbound ones until their expiry), bindings, user states and deadlines,
// failure counts and locks, activation codes (sealed hashes), the
// notification outbox, learned bank sessions, used security codes and
// device-token IDs, and the audit trail.
//
// Challenges and the waiters of held requests stay in memory: a restart
// ends every held request anyway, and a challenge that no longer exists
// cannot be approved, so no approval or code given before a restart is
// usable after it.
//
// The file is never created as a side effect of starting: Init (the
// `caddy onepush store init` command) creates it, and Start refuses a file
// that is missing or was replaced, since an empty store would make every
// user look not enrolled. What proves that a store existed lives outside
// the data directory, in an identity file (see identity.go).
//
// Writes go through one writer goroutine that commits whatever is queued
// in one transaction (group commit, writer.go). A binding, a state change,
// a failure counted, an activation code issued, tried or used, a
// notification queued, claimed, retried or acknowledged, a used security
// code or a logout waits for its commit; what the path of
// a held request writes — audit events of challenges, used device-token
// IDs and push slots, the session learned from the bank's answer — is
// committed with the next transaction or within Options.Linger, so that
// path never waits for the disk; an approval resets the failure count
// only when there is one to reset. Reads come from memory: records with a
// lifetime live there (expiry.go), users and credentials are cached
// (cache.go); activation codes and the outbox, read off the path of any
// held request, are read from the file.
package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// Options configure a Store.
type Options struct {
	// Path is the data file.
	Path string
	// IdentityFile records which store this gateway uses (its id and how
	// far it got), outside the data directory, so that a lost or replaced
	// data file is told apart from a new installation. Empty: no record
	// (tests).
	IdentityFile string
	// Sealer seals credential records (they hold security-code secrets).
	// Nil: the key in KeyFile, which Init creates.
	Sealer *seal.Sealer
	// KeyFile holds the generated sealing key of a store that has no
	// configured Sealer. It belongs outside the data directory too: a copy
	// of the data file without it holds no usable secret.
	KeyFile string
	// AutoInit lets Start create a missing file when nothing shows that a
	// store existed before (no identity record): for the demo and tests.
	AutoInit bool
	// AuditRetention and AuditMaxEvents bound the audit trail. Defaults
	// 720h and 100000.
	AuditRetention time.Duration
	AuditMaxEvents int
	// Linger is how long a batched write (an audit event of a challenge, a
	// used device-token ID) may wait for a commit. Default 20ms.
	Linger time.Duration
	// Repudiation is the text of the notifications the store queues itself
	// (a restore's announcements): the notify block's. Empty:
	// pushauth.DefaultRepudiation.
	Repudiation string
	Logger      *slog.Logger
	Now         func() time.Time
}

// Errors Start and Init wrap; each message names the file and what to do.
var (
	ErrMissing  = errors.New("store file is missing")
	ErrReplaced = errors.New("store file was replaced")
	ErrKey      = errors.New("store file cannot be opened with this gateway's key")
	ErrLocked   = errors.New("store file is in use")
	ErrExists   = errors.New("a store exists")
	// ErrNotStarted is returned by every durable operation before Start
	// (and after Close): the gate answers it with 503, never as "not
	// enrolled".
	ErrNotStarted = errors.New("embedded store is not open")
)

// The buckets of the file. formatBuckets are those of the format's first
// version: a file without one of them is not a store. A feature that needs
// a durable record adds its bucket to buckets; Start creates it in a store
// that predates it.
var (
	bucketMeta        = []byte("meta")
	bucketCredentials = []byte("credentials")
	bucketUsers       = []byte("users")
	bucketCredUsers   = []byte("credential_users") // credential id \x00 user key -> nil
	bucketSessions    = []byte("sessions")         // expiry | session hash -> user key (see expiry.go)
	bucketMarkers     = []byte("markers")          // expiry | marker id -> sealed marker
	bucketAudit       = []byte("audit")            // sequence -> event JSON

	formatBuckets = [][]byte{bucketMeta, bucketCredentials, bucketUsers, bucketCredUsers, bucketSessions, bucketMarkers, bucketAudit}

	// Later features' buckets.
	bucketCredExpiry = []byte("credential_expiry") // expiry | credential id -> nil (unbound credentials, see credentials.go)
	bucketActivation = []byte("activation_codes")  // user key -> expiry | sealed code record (activation.go)
	bucketOutbox     = []byte("outbox")            // message id -> message JSON (outbox.go)
	bucketOutboxDue  = []byte("outbox_due")        // due | message id -> nil
	bucketRequests   = []byte("admin_requests")    // request id -> request JSON (adminrequests.go)

	bucketPasskeys = []byte("passkeys") // user key \x00 credential id -> passkey JSON (passkeys.go)

	buckets = slices.Concat(formatBuckets, [][]byte{bucketCredExpiry, bucketActivation, bucketOutbox, bucketOutboxDue, bucketPasskeys, bucketRequests})
)

// Store is the embedded pushauth.Store. New checks the files; Start opens
// them (Caddy calls it from the app's Start, so `caddy validate` never
// takes the file's lock); Close commits what is queued and releases the
// file.
type Store struct {
	opts Options
	now  func() time.Time
	log  *slog.Logger
	// challenges keeps challenges and notifies waiters, in memory.
	challenges *memory.Store
	// markers and sessions are the records with a lifetime, looked up
	// here; the file keeps them for the next start.
	markers  *timedSet
	sessions *timedSet
	// users and credentials cache decoded records (see cache.go).
	users       *recordCache[pushauth.User]
	credentials *recordCache[pushauth.Credential]

	startMu sync.Mutex
	st      *state // nil until Start and after Close
	closed  bool
	audit   *AuditLog
}

// state is what Start opened.
type state struct {
	db     *bolt.DB
	sealer *seal.Sealer
	w      *writer
	file   os.FileInfo // the data file Start opened, to notice a replacement
	stop   chan struct{}
	swept  chan struct{}
}

// read is a copy of the value at key in bucket, or ErrNotFound.
func (st *state) read(bucket []byte, key string) ([]byte, error) {
	var v []byte
	if err := st.db.View(func(tx *bolt.Tx) error {
		v = clone(tx.Bucket(bucket).Get([]byte(key)))
		return nil
	}); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, pushauth.ErrNotFound
	}
	return v, nil
}

// New checks opts and the files without opening the data file: a missing
// file is refused here already (unless AutoInit may create it).
func New(opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("embedded store: a data file path is required")
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("embedded store: path %q: %w", opts.Path, err)
	}
	opts.Path = abs
	if opts.Sealer == nil && opts.KeyFile == "" {
		return nil, fmt.Errorf("embedded store %s: a sealing key (encryption_key) or a key file is required", abs)
	}
	if opts.AuditRetention <= 0 {
		opts.AuditRetention = 30 * 24 * time.Hour
	}
	if opts.AuditMaxEvents <= 0 {
		opts.AuditMaxEvents = 100000
	}
	if opts.Linger <= 0 {
		opts.Linger = 20 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := checkFiles(opts); err != nil {
		return nil, err
	}
	s := &Store{
		opts:        opts,
		now:         opts.Now,
		log:         opts.Logger,
		challenges:  memory.New(opts.Now),
		markers:     newTimedSet(),
		sessions:    newTimedSet(),
		users:       newRecordCache[pushauth.User](),
		credentials: newRecordCache[pushauth.Credential](),
	}
	s.audit = &AuditLog{s: s}
	return s, nil
}

// Open is New and Start.
func Open(opts Options) (*Store, error) {
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// checkFiles refuses a missing data file, naming it and what to do.
func checkFiles(opts Options) error {
	_, err := os.Stat(opts.Path)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("embedded store: %w", err)
	}
	id, ierr := readIdentity(opts.IdentityFile)
	if ierr != nil {
		return ierr
	}
	if id != nil {
		return fmt.Errorf("%w: %s is gone, but this gateway used store %s there (created %s, generation %d, recorded in %s): refusing to start, since every user would look not enrolled; restore the latest backup with `caddy onepush store restore BACKUP --accept-rollback`",
			ErrMissing, opts.Path, id.StoreID, id.CreatedAt.UTC().Format(time.RFC3339), id.Generation, opts.IdentityFile)
	}
	if opts.AutoInit {
		return nil
	}
	return fmt.Errorf("%w: %s does not exist: refusing to start on an empty store, since every user would look not enrolled; for a new installation create it with `caddy onepush store init`, after a loss restore a backup with `caddy onepush store restore BACKUP --accept-rollback`",
		ErrMissing, opts.Path)
}

// openFiles are the data files open in this process: bbolt's lock would
// make a second open wait, and a reload that changes the store's settings
// would wait for itself.
var openFiles = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// lockWait is how long Start waits for another process to release the file.
const lockWait = 2 * time.Second

// Start opens the data file (creating it first under AutoInit when nothing
// shows a store existed), verifies it is the store this gateway used, with
// a key that opens it, and starts the writer. It does nothing when the
// store is open already (a config reload that kept it).
func (s *Store) Start() error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.closed {
		return ErrNotStarted
	}
	if s.st != nil {
		return nil
	}
	opts := s.opts
	if _, err := os.Stat(opts.Path); errors.Is(err, fs.ErrNotExist) {
		if err := checkFiles(opts); err != nil {
			return err
		}
		info, err := Init(opts)
		if err != nil {
			return err
		}
		s.log.Warn("embedded store: created a new, empty store file (auto_init): every user starts not enrolled", "path", opts.Path, "store_id", info.StoreID)
	}
	openFiles.Lock()
	if openFiles.m[opts.Path] {
		openFiles.Unlock()
		return fmt.Errorf("%w: %s is open in this process with other settings; changing the embedded store's settings needs a restart of Caddy", ErrLocked, opts.Path)
	}
	openFiles.m[opts.Path] = true
	openFiles.Unlock()
	st, err := s.open()
	if err != nil {
		openFiles.Lock()
		delete(openFiles.m, opts.Path)
		openFiles.Unlock()
		return err
	}
	s.st = st
	go s.sweepLoop(st)
	return nil
}

func (s *Store) open() (*state, error) {
	opts := s.opts
	sealer, err := opts.sealer()
	if err != nil {
		return nil, err
	}
	db, err := openDB(opts.Path, false)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(opts.Path)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	st := &state{db: db, sealer: sealer, file: fi, stop: make(chan struct{}), swept: make(chan struct{})}
	fail := func(err error) (*state, error) {
		_ = db.Close()
		return nil, err
	}
	m, err := readMeta(db, opts.Path)
	if err != nil {
		return fail(err)
	}
	id, err := readIdentity(opts.IdentityFile)
	if err != nil {
		return fail(err)
	}
	if err := m.verify(opts, id, sealer); err != nil {
		return fail(err)
	}
	if err := addBuckets(db); err != nil {
		return fail(err)
	}
	if err := countOutbox(db); err != nil {
		return fail(err)
	}
	if !sealer.Current(m.keyCheck) {
		if err := reseal(db, sealer, s.log); err != nil {
			return fail(err)
		}
	}
	now := s.now()
	if err := s.markers.load(db, bucketMarkers, now, func([]byte) string { return "" }); err != nil {
		return fail(err)
	}
	if err := s.sessions.load(db, bucketSessions, now, func(v []byte) string { return string(v) }); err != nil {
		return fail(err)
	}
	if id == nil {
		s.log.Warn("embedded store: no identity record for this store file (first start after moving the file or losing Caddy's config directory): recording it now",
			"path", opts.Path, "store_id", m.storeID, "identity_file", opts.IdentityFile)
	}
	if err := recordIdentity(opts, m.storeID, m.createdAt, m.generation); err != nil {
		return fail(err)
	}
	// After every commit a caller waits for, the identity record learns
	// the generation, before the caller is answered: a copy of the file
	// taken before that change is older than the record even after a
	// crash (the clean stop is not there to record it). Batched writes
	// (the held-request path) do not touch it.
	durable := func(gen uint64) {
		if err := recordIdentity(opts, m.storeID, m.createdAt, gen); err != nil {
			s.log.Error("embedded store: recording the generation after a durable change; a copy of the file put back after a crash may not be recognised as older", "generation", gen, "error", err)
		}
	}
	st.w = newWriter(db, opts.Linger, s.log, func() error { return s.stillOurs(st) }, durable)
	return st, nil
}

// addBuckets creates the buckets of features newer than the file.
func addBuckets(db *bolt.DB) error {
	var missing [][]byte
	_ = db.View(func(tx *bolt.Tx) error {
		for _, name := range buckets {
			if tx.Bucket(name) == nil {
				missing = append(missing, name)
			}
		}
		return nil
	})
	if len(missing) == 0 {
		return nil
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range missing {
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("embedded store: adding bucket %q: %w", name, err)
			}
		}
		return bumpGeneration(tx)
	})
}

// openDB opens an existing bbolt file (never creating one), waiting
// lockWait for another process to release it.
func openDB(path string, readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      lockWait,
		ReadOnly:     readOnly,
		FreelistType: bolt.FreelistMapType,
		NoStatistics: true,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			return os.OpenFile(name, flag&^os.O_CREATE, perm)
		},
	})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("%w: %s is locked by another process (a running Caddy, or a `caddy onepush store` command); only one process may use it", ErrLocked, path)
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s does not exist", ErrMissing, path)
	case err != nil:
		return nil, fmt.Errorf("embedded store: opening %s: %w", path, err)
	}
	return db, nil
}

// stillOurs reports an error when the data file was deleted or replaced
// under the running store: what it commits now would be lost at the next
// start, so it commits nothing and the gate answers 503.
func (s *Store) stillOurs(st *state) error {
	fi, err := os.Stat(s.opts.Path)
	if err != nil || !os.SameFile(fi, st.file) {
		return fmt.Errorf("%w: %s was deleted or replaced while the gateway ran: refusing to write (a restart will refuse the file too); restore a backup with `caddy onepush store restore`", ErrReplaced, s.opts.Path)
	}
	return nil
}

func (s *Store) state() (*state, error) {
	s.startMu.Lock()
	st := s.st
	s.startMu.Unlock()
	if st == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotStarted, s.opts.Path)
	}
	return st, nil
}

// Close commits every queued write, records the generation it reached and
// releases the file. Challenges die with it.
func (s *Store) Close() error {
	s.startMu.Lock()
	st := s.st
	s.st, s.closed = nil, true
	s.startMu.Unlock()
	_ = s.challenges.Close()
	if st == nil {
		return nil
	}
	close(st.stop)
	<-st.swept
	st.w.close()
	var err error
	if m, merr := readMeta(st.db, s.opts.Path); merr == nil {
		err = recordIdentity(s.opts, m.storeID, m.createdAt, m.generation)
	}
	if cerr := st.db.Close(); err == nil {
		err = cerr
	}
	openFiles.Lock()
	delete(openFiles.m, s.opts.Path)
	openFiles.Unlock()
	return err
}

// sweepLoop drops expired sessions, markers, unbound credentials and
// activation codes, and audit events past their retention: at Start (what
// expired while the gateway was stopped), then once a minute.
func (s *Store) sweepLoop(st *state) {
	defer close(st.swept)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		s.sweepNow(st)
		select {
		case <-st.stop:
			return
		case <-t.C:
		}
	}
}

// sweepNow sweeps the records in memory and queues the sweep of the file
// for the next commit.
func (s *Store) sweepNow(st *state) {
	now := s.now()
	s.markers.sweep(now)
	s.sessions.sweep(now)
	if err := st.w.later(func(tx *bolt.Tx) error { return s.sweep(tx, st.sealer, now) }); err != nil {
		s.log.Warn("embedded store: queueing the sweep", "error", err)
	}
}

// Credentials: sealed whole, with the record's key as associated data, so
// a copy of the file or of a backup holds no security-code secret.

func credentialAD(id string) []byte { return []byte("credential/" + id) }

// stateAndJSON is the open store's state and v as JSON: the first two
// steps of every write of a record.
func (s *Store) stateAndJSON(v any) (*state, []byte, error) {
	st, err := s.state()
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(v)
	return st, b, err
}

func (s *Store) PutCredential(ctx context.Context, c *pushauth.Credential) error {
	st, plain, err := s.stateAndJSON(c)
	if err != nil {
		return err
	}
	sealed, err := st.sealer.Seal(plain, credentialAD(c.ID))
	if err != nil {
		return err
	}
	id, expires := c.ID, c.ExpiresAt
	return writeThrough(ctx, st, s.credentials, id, cached[pushauth.Credential]{v: *c}, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketCredentials).Put([]byte(id), sealed); err != nil {
			return err
		}
		return indexCredentialExpiry(tx, id, expires)
	})
}

// writeThrough shows a write in the cache as it is queued and waits for
// its commit; a write that fails leaves the cache to the file.
func writeThrough[T any](ctx context.Context, st *state, cache *recordCache[T], key string, e cached[T], apply func(tx *bolt.Tx) error) error {
	cache.order.Lock()
	ver := cache.begin(key, e)
	done, err := st.w.submit(ctx, apply)
	cache.order.Unlock()
	if err != nil {
		cache.end(key, ver, false, nil)
		return err
	}
	return settle(ctx, cache, key, ver, done, func() *T { return nil })
}

// writeComputed queues a read-modify-write of one record, computed by
// apply inside the writer's transaction (so it sees every write queued
// before it, and nothing comes between the read and the write), and waits
// for its commit. Until then the record reads from the file, which holds
// everything acknowledged; afterwards the cache holds what apply returned.
func writeComputed[T any](ctx context.Context, st *state, cache *recordCache[T], key string, apply func(tx *bolt.Tx) (*T, error)) (*T, error) {
	var out *T // set by the writer, read once done has answered
	cache.order.Lock()
	ver := cache.begin(key, cached[T]{pending: true})
	done, err := st.w.submit(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = apply(tx)
		return err
	})
	cache.order.Unlock()
	if err != nil {
		cache.end(key, ver, false, nil)
		return nil, err
	}
	if err := settle(ctx, cache, key, ver, done, func() *T { return out }); err != nil {
		return nil, err
	}
	return out, nil
}

// settle waits for a cached write's commit and settles the cache. A caller
// that stops waiting leaves the settling to a goroutine: the write is still
// queued, and the cache must not be filled from the file before it lands.
func settle[T any](ctx context.Context, cache *recordCache[T], key string, ver uint64, done <-chan error, computed func() *T) error {
	end := func(err error) {
		var v *T
		if err == nil {
			v = computed()
		}
		cache.end(key, ver, err == nil, v)
	}
	select {
	case err := <-done:
		end(err)
		return err
	case <-ctx.Done():
		go func() { end(<-done) }()
		return fmt.Errorf("embedded store: waiting for a commit: %w", ctx.Err())
	}
}

func (s *Store) GetCredential(_ context.Context, id string) (*pushauth.Credential, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	c, err := cachedGet(st, s.credentials, bucketCredentials, id, func(v []byte) (*pushauth.Credential, error) {
		return openCredential(st.sealer, id, v)
	})
	if err == nil && credentialExpired(c, s.now()) {
		return nil, pushauth.ErrNotFound // the sweep deletes it
	}
	return c, err
}

// cachedGet reads a record through its cache.
func cachedGet[T any](st *state, cache *recordCache[T], bucket []byte, key string, decode func([]byte) (*T, error)) (*T, error) {
	e, version, ok := cache.get(key)
	switch {
	case ok && e.absent:
		return nil, pushauth.ErrNotFound
	case ok:
		return &e.v, nil
	}
	raw, err := st.read(bucket, key)
	if err != nil {
		return nil, err
	}
	rec, err := decode(raw)
	if err != nil {
		return nil, err
	}
	cache.fill(key, *rec, version)
	return rec, nil
}

func openCredential(sealer *seal.Sealer, id string, sealed []byte) (*pushauth.Credential, error) {
	plain, err := sealer.Open(sealed, credentialAD(id))
	if err != nil {
		return nil, fmt.Errorf("embedded store: credential %q: %w", id, err)
	}
	var c pushauth.Credential
	if err := json.Unmarshal(plain, &c); err != nil {
		return nil, fmt.Errorf("embedded store: credential %q: %w", id, err)
	}
	return &c, nil
}

func (s *Store) DeleteCredential(ctx context.Context, id string) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	return writeThrough(ctx, st, s.credentials, id, cached[pushauth.Credential]{absent: true}, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCredentials).Delete([]byte(id))
	})
}

// Users, with the credential → users index kept in the same transaction.

func credUserKey(credentialID, userKey string) []byte {
	return []byte(credentialID + "\x00" + userKey)
}

func (s *Store) PutUser(ctx context.Context, u *pushauth.User) error {
	st, rec, err := s.stateAndJSON(u)
	if err != nil {
		return err
	}
	key, cred := u.Key, u.CredentialID
	return writeThrough(ctx, st, s.users, key, cached[pushauth.User]{v: *u}, func(tx *bolt.Tx) error {
		return putUser(tx, key, cred, rec)
	})
}

// CompareAndPutUser compares and writes inside one writer transaction,
// the way AddFailure counts: a failure counted or a lock taken since old
// was read is seen, and the change is refused (ErrUserChanged) instead of
// overwriting it. It is on disk before it answers.
func (s *Store) CompareAndPutUser(ctx context.Context, old, u *pushauth.User) error {
	st, rec, err := s.stateAndJSON(u)
	if err != nil {
		return err
	}
	key, cred, v := u.Key, u.CredentialID, *u
	_, err = writeComputed(ctx, st, s.users, key, func(tx *bolt.Tx) (*pushauth.User, error) {
		cur, err := userIn(tx, key)
		if err != nil {
			return nil, err
		}
		if !pushauth.SameUser(cur, old) {
			return nil, fmt.Errorf("embedded store: user %q: %w", key, pushauth.ErrUserChanged)
		}
		return &v, putUser(tx, key, cred, rec)
	})
	return err
}

// putUser writes a user's record, keeping the credential → users index.
func putUser(tx *bolt.Tx, key, cred string, rec []byte) error {
	users, idx := tx.Bucket(bucketUsers), tx.Bucket(bucketCredUsers)
	if old := users.Get([]byte(key)); old != nil {
		var prev pushauth.User
		if err := json.Unmarshal(old, &prev); err != nil {
			return fmt.Errorf("embedded store: user %q: %w", key, err)
		}
		if prev.CredentialID != "" && prev.CredentialID != cred {
			if err := idx.Delete(credUserKey(prev.CredentialID, key)); err != nil {
				return err
			}
		}
	}
	if cred != "" {
		if err := idx.Put(credUserKey(cred, key), nil); err != nil {
			return err
		}
	}
	return users.Put([]byte(key), rec)
}

// userIn reads a user's record in tx; nil when there is none.
func userIn(tx *bolt.Tx, key string) (*pushauth.User, error) {
	v := tx.Bucket(bucketUsers).Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	var u pushauth.User
	if err := json.Unmarshal(v, &u); err != nil {
		return nil, fmt.Errorf("embedded store: user %q: %w", key, err)
	}
	return &u, nil
}

func (s *Store) GetUser(_ context.Context, key string) (*pushauth.User, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	return cachedGet(st, s.users, bucketUsers, key, func(v []byte) (*pushauth.User, error) {
		var u pushauth.User
		if err := json.Unmarshal(v, &u); err != nil {
			return nil, fmt.Errorf("embedded store: user %q: %w", key, err)
		}
		return &u, nil
	})
}

func (s *Store) UsersOfCredential(_ context.Context, credentialID string) ([]string, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	var keys []string
	prefix := credUserKey(credentialID, "")
	err = st.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketCredUsers).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, string(k[len(prefix):]))
		}
		return nil
	})
	return keys, err
}

// Challenges live in memory (see the package comment).

func (s *Store) CreateChallenge(ctx context.Context, c *pushauth.Challenge, retainUntil time.Time) ([]string, error) {
	return s.challenges.CreateChallenge(ctx, c, retainUntil)
}

func (s *Store) GetChallenge(ctx context.Context, id string) (*pushauth.Challenge, error) {
	return s.challenges.GetChallenge(ctx, id)
}

func (s *Store) Resolve(ctx context.Context, id string, to pushauth.Status, fraud bool, at time.Time) (*pushauth.Challenge, error) {
	return s.challenges.Resolve(ctx, id, to, fraud, at)
}

func (s *Store) PendingForCredential(ctx context.Context, credentialID string) ([]*pushauth.Challenge, error) {
	return s.challenges.PendingForCredential(ctx, credentialID)
}

func (s *Store) SetPushResult(ctx context.Context, id, result string) error {
	return s.challenges.SetPushResult(ctx, id, result)
}

func (s *Store) Watch(fn func(string, *pushauth.Challenge)) (func(), error) {
	return s.challenges.Watch(fn)
}

// ReliableWatch reports that every resolution reaches the watchers
// in-process, as with the memory store: held requests need no re-reads.
func (s *Store) ReliableWatch() bool { return true }

// Sessions: SHA-256 of the bank's cookie -> user, until the session's TTL.
//
// A session is learned from the bank's answer to a login, on the path of
// every login: it is committed with the next transaction (within Linger),
// never waited for. A crash in that window forgets the session, so that
// user's transfers are refused (never forwarded unattributed) until they
// log in again. Forgetting a session (a logout) is on disk before
// DeleteSession returns.
func (s *Store) PutSession(ctx context.Context, hash, userKey string, ttl time.Duration) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	rec := timed{until: s.now().Add(ttl), value: userKey}
	s.sessions.mu.Lock()
	defer s.sessions.mu.Unlock()
	old, had := s.sessions.m[hash]
	err = st.w.later(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		if had {
			if err := b.Delete(timedKey(old.until, hash)); err != nil {
				return err
			}
		}
		return b.Put(timedKey(rec.until, hash), []byte(userKey))
	})
	if err != nil {
		return err // not learned: the user's transfers are refused
	}
	s.sessions.m[hash] = rec
	return nil
}

func (s *Store) GetSession(_ context.Context, hash string) (string, error) {
	if _, err := s.state(); err != nil {
		return "", err
	}
	s.sessions.mu.Lock()
	r, ok := s.sessions.m[hash]
	s.sessions.mu.Unlock()
	if !ok || s.now().After(r.until) {
		return "", pushauth.ErrNotFound
	}
	return r.value, nil
}

func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	s.sessions.mu.Lock()
	old, had := s.sessions.m[hash]
	if !had {
		s.sessions.mu.Unlock()
		return nil
	}
	// Forgotten at once: a logout is never undone by a slow disk.
	delete(s.sessions.m, hash)
	done, err := st.w.submit(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Delete(timedKey(old.until, hash))
	})
	s.sessions.mu.Unlock()
	if err != nil {
		return err
	}
	return wait(ctx, done)
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// Interface guards
var (
	_ pushauth.Store       = (*Store)(nil)
	_ pushauth.Snapshotter = (*Store)(nil)
)
