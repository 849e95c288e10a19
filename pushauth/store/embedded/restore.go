package embedded

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
)

// Change is one thing a restore undoes, for one user or credential.
type Change struct {
	// Kind is "binding" (a phone bound after the backup loses the
	// binding), "revocation" (a phone removed, or a lock, suspension or
	// deregistration made after the backup, is undone: the phone works
	// again), "state" (another state change is undone) or "credential" (an
	// app registered or removed after the backup).
	Kind       string `json:"kind"`
	User       string `json:"user,omitempty"`
	Credential string `json:"credential,omitempty"`
	// Now is the record as it is, Restored as the backup has it.
	Now      string `json:"now"`
	Restored string `json:"restored"`
}

// Rollback is what restoring a backup does.
type Rollback struct {
	Backup *FileInfo `json:"backup"`
	// Current is nil when the store file is missing (what a restore
	// recovers from).
	Current *FileInfo `json:"current,omitempty"`
	Changes []Change  `json:"changes"`
	// Replaced is where the store file that was there is kept after the
	// restore ("" before, or when there was none).
	Replaced string `json:"replaced,omitempty"`
}

// Count returns how many changes are of kind.
func (r *Rollback) Count(kind string) int {
	n := 0
	for _, c := range r.Changes {
		if c.Kind == kind {
			n++
		}
	}
	return n
}

// PlanRestore says what restoring backup into the store at opts.Path would
// undo, without changing anything. The gateway must be stopped.
func PlanRestore(opts Options, backup string) (*Rollback, error) {
	return restore(opts, backup, "", false)
}

// Restore replaces the store with backup, after the same checks as
// PlanRestore: the gateway is stopped, the backup is a sound store of the
// same installation that this gateway's key opens. It records the
// rollback, and every change it undoes, in the restored audit trail, keeps
// the replaced file next to it, and records the new generation in the
// identity file so the gateway accepts the restored file.
func Restore(opts Options, backup, actor string) (*Rollback, error) {
	return restore(opts, backup, actor, true)
}

type snapshotData struct {
	info  *FileInfo
	users map[string]pushauth.User
	creds map[string]bool
}

func load(tx *bolt.Tx) (*snapshotData, error) {
	info, err := describe(tx)
	if err != nil {
		return nil, err
	}
	d := &snapshotData{info: info, users: map[string]pushauth.User{}, creds: map[string]bool{}}
	if err := tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		var u pushauth.User
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("user %q: %w", k, err)
		}
		d.users[string(k)] = u
		return nil
	}); err != nil {
		return nil, err
	}
	err = tx.Bucket(bucketCredentials).ForEach(func(k, _ []byte) error {
		d.creds[string(k)] = true
		return nil
	})
	return d, err
}

func restore(opts Options, backup, actor string, apply bool) (*Rollback, error) {
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, err
	}
	opts.Path = abs
	if opts.AuditMaxEvents <= 0 {
		opts.AuditMaxEvents = 100000
	}
	sealer, err := opts.sealer()
	if err != nil {
		return nil, err
	}

	bdb, err := openDB(backup, true)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var old *snapshotData
	var keyCheck []byte
	err = bdb.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = fmt.Errorf("consistency check: %w", err)
			}
		}
		if first != nil {
			return first
		}
		if old, err = load(tx); err != nil {
			return err
		}
		keyCheck = clone(tx.Bucket(bucketMeta).Get(metaKeyCheck))
		return nil
	})
	_ = bdb.Close()
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", backup, err)
	}
	if _, err := sealer.Open(keyCheck, keyCheckAD); err != nil {
		return nil, fmt.Errorf("%w: backup %s (store %s) was sealed with a key this gateway does not hold: restoring it would leave every security code unreadable; configure the key it was sealed with", ErrKey, backup, old.info.StoreID)
	}

	// The store's own file, held locked (exclusively) until the restore is
	// done, so no gateway starts on it meanwhile.
	var cur *snapshotData
	var cdb *bolt.DB
	if _, err := os.Stat(abs); err == nil {
		if cdb, err = openDB(abs, false); err != nil {
			if errors.Is(err, ErrLocked) {
				return nil, fmt.Errorf("%w: restore only into a stopped gateway: stop Caddy first", err)
			}
			return nil, err
		}
		defer func() {
			if cdb != nil {
				_ = cdb.Close()
			}
		}()
		if err := cdb.View(func(tx *bolt.Tx) error { cur, err = load(tx); return err }); err != nil {
			return nil, fmt.Errorf("store %s: %w", abs, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	id, err := readIdentity(opts.IdentityFile)
	if err != nil {
		return nil, err
	}
	want := ""
	switch {
	case cur != nil:
		want = cur.info.StoreID
	case id != nil:
		want = id.StoreID
	}
	if want != "" && want != old.info.StoreID {
		return nil, fmt.Errorf("%w: backup %s is of store %s, but this gateway uses store %s: refusing to restore another installation's store", ErrReplaced, backup, old.info.StoreID, want)
	}

	rb := &Rollback{Backup: old.info, Changes: changes(cur, old)}
	if cur != nil {
		rb.Current = cur.info
	}
	if !apply {
		return rb, nil
	}

	generation := old.info.Generation
	if cur != nil {
		generation = max(generation, cur.info.Generation)
	}
	if id != nil {
		generation = max(generation, id.Generation)
	}
	generation++
	tmp, err := copyInto(backup, filepath.Dir(abs))
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp) // gone once renamed
	if err := recordRollback(tmp, rb, actor, generation, opts); err != nil {
		return nil, err
	}
	if cur != nil {
		rb.Replaced = abs + ".replaced-" + opts.now().UTC().Format("20060102T150405Z")
		if err := os.Rename(abs, rb.Replaced); err != nil {
			return nil, fmt.Errorf("embedded store: keeping the replaced file: %w", err)
		}
	}
	if err := os.Rename(tmp, abs); err != nil {
		return nil, fmt.Errorf("embedded store: putting the backup in place: %w", err)
	}
	if d, err := os.Open(filepath.Dir(abs)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	if err := recordIdentity(opts, old.info.StoreID, old.info.CreatedAt, generation); err != nil {
		return nil, err
	}
	return rb, nil
}

// copyInto copies a backup into dir as a temporary file.
func copyInto(src, dir string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, ".restore-*")
	if err != nil {
		return "", fmt.Errorf("embedded store: restore: %w", err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(out.Name())
		return "", fmt.Errorf("embedded store: restore: copying the backup: %w", err)
	}
	return out.Name(), nil
}

// recordRollback writes the restore into the copy's audit trail and sets
// its generation above everything this gateway has seen.
func recordRollback(path string, rb *Rollback, actor string, generation uint64, opts Options) error {
	db, err := openDB(path, false)
	if err != nil {
		return err
	}
	now := opts.now()
	if actor == "" {
		actor = "store restore"
	}
	detail := fmt.Sprintf("restored backup of store %s at generation %d (newest event %s): undid %d bindings, %d revocations, %d other state changes, %d credential changes",
		rb.Backup.StoreID, rb.Backup.Generation, rb.Backup.LastEvent.UTC().Format(time.RFC3339), rb.Count("binding"), rb.Count("revocation"), rb.Count("state"), rb.Count("credential"))
	if rb.Current != nil {
		detail += fmt.Sprintf(" made after it (the store was at generation %d)", rb.Current.Generation)
	} else {
		detail += " (the store file was missing)"
	}
	evs := []pushauth.AuditEvent{{Time: now, Type: pushauth.AuditAdmin, Outcome: "store.restored", Actor: actor, Detail: detail}}
	for _, c := range rb.Changes {
		evs = append(evs, pushauth.AuditEvent{Time: now, Type: pushauth.AuditAdmin, User: c.User, Credential: c.Credential,
			Outcome: "store.rollback", Actor: actor, Detail: c.Kind + " undone: was " + c.Now + ", restored " + c.Restored})
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, ev := range evs {
			rec, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			if err := appendEvent(tx, rec, opts.AuditMaxEvents); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaGeneration, binary.BigEndian.AppendUint64(nil, generation))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("embedded store: recording the rollback in %s: %w", path, err)
	}
	return nil
}

// changes lists what replacing cur by old undoes (cur nil: unknown, none).
func changes(cur, old *snapshotData) []Change {
	if cur == nil {
		return nil
	}
	var keys []string
	for k := range cur.users {
		keys = append(keys, k)
	}
	for k := range old.users {
		if _, ok := cur.users[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []Change
	for _, k := range keys {
		now, hasNow := cur.users[k]
		then, hasThen := old.users[k]
		c := Change{User: k, Now: userText(now, hasNow), Restored: userText(then, hasThen)}
		switch {
		case now.CredentialID != "" && now.CredentialID != then.CredentialID:
			c.Kind, c.Credential = "binding", now.CredentialID
		case then.CredentialID != "" && now.CredentialID != then.CredentialID:
			c.Kind, c.Credential = "revocation", then.CredentialID
		case now.State != then.State || !now.Until.Equal(then.Until):
			c.Kind, c.Credential = "state", now.CredentialID
			if then.State == pushauth.UserActive && now.State != pushauth.UserActive && then.CredentialID != "" {
				c.Kind = "revocation"
			}
		default:
			continue
		}
		out = append(out, c)
	}
	var creds []string
	for id := range cur.creds {
		if !old.creds[id] {
			creds = append(creds, id)
		}
	}
	for id := range old.creds {
		if !cur.creds[id] {
			creds = append(creds, id)
		}
	}
	slices.Sort(creds)
	for _, id := range creds {
		if cur.creds[id] {
			out = append(out, Change{Kind: "credential", Credential: id, Now: "registered", Restored: "unknown (the app must register again)"})
		} else {
			out = append(out, Change{Kind: "credential", Credential: id, Now: "removed", Restored: "registered again"})
		}
	}
	return out
}

func userText(u pushauth.User, ok bool) string {
	if !ok {
		return "no record (not enrolled)"
	}
	s := string(u.State)
	if u.CredentialID != "" {
		s += ", phone " + u.CredentialID
	} else {
		s += ", no phone"
	}
	if !u.Until.IsZero() {
		s += ", until " + u.Until.UTC().Format(time.RFC3339)
	}
	if u.Failures > 0 {
		s += fmt.Sprintf(", %d failures", u.Failures)
	}
	return s
}
