package embedded

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
)

// What a restore takes from the store it replaces.
//
// A restore rolls bindings, user states and credentials back to the
// backup. What guards against a replay, and what the customer must still
// be told, is never rolled back: when the store's file is there, these
// come from it, not from the backup —
//
//   - the outbox: the messages not delivered yet, those queued after the
//     backup included (an announcement of a binding the restore undoes is
//     still sent); the backup's messages delivered since are not sent
//     again;
//   - activation codes: a code used, voided or replaced after the backup
//     stays unusable; a code issued after it stays valid (a letter with a
//     recovery code may be on its way);
//   - used security codes and device-token IDs;
//   - failure counts: a restore never lowers a user's count, so guesses
//     made after the backup still count toward the lock (the lock itself
//     is rolled back, and listed as a revocation).
//
// The restore also announces, through the outbox, every binding it undoes
// (phone.deregistered) and every phone it makes work again
// (phone.bound, via "restore"): a restore is a change of bindings like
// any other, and the customer hears of it.
//
// When the file is missing (a restore after a loss), nothing after the
// backup is known: the backup's outbox is kept whole (a message delivered
// since may be sent again; receivers de-duplicate by id), and its
// activation codes are dropped, since any of them may have been used
// since: the bank issues new ones.

// Change is one thing a restore undoes, for one user or credential.
type Change struct {
	// Kind is "binding" (a phone bound after the backup loses the
	// binding), "revocation" (a phone removed, or a lock, suspension or
	// deregistration made after the backup, is undone: the phone works
	// again), "state" (another state change is undone), "credential" (an
	// app registered or removed after the backup), "activation_code" (a
	// code issued or used after the backup, which the restore keeps as it
	// is now; or, after a loss, a code of the backup dropped) or
	// "failures" (a failure count higher now than in the backup, which
	// the restore keeps).
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
	// Outbox says what becomes of the notifications.
	Outbox OutboxPlan `json:"outbox"`
	// Replaced is where the store file that was there is kept after the
	// restore ("" before, or when there was none).
	Replaced string `json:"replaced,omitempty"`
}

// OutboxPlan is what a restore does with the notification outbox.
type OutboxPlan struct {
	// Kept is how many messages not yet delivered the restored store
	// delivers: the current file's (the backup's when it is missing).
	Kept int `json:"kept"`
	// QueuedSince is how many of those were queued after the backup.
	QueuedSince int `json:"queued_since"`
	// Delivered is how many of the backup's messages were delivered since
	// and are not sent again.
	Delivered int `json:"delivered"`
	// Announced is how many messages the restore adds, announcing the
	// bindings it undoes and the phones it makes work again.
	Announced int `json:"announced"`
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
// same installation that this gateway's key opens. It carries the
// outbox, activation codes, used codes and failure counts over from the
// store it replaces (see above), queues the announcements of the bindings
// it changes, records the rollback, and every change it undoes, in the
// restored audit trail, keeps the replaced file next to it, and records
// the new generation in the identity file so the gateway accepts the
// restored file. Options.Repudiation is the text the announcements carry.
func Restore(opts Options, backup, actor string) (*Rollback, error) {
	return restore(opts, backup, actor, true)
}

type snapshotData struct {
	info  *FileInfo
	users map[string]pushauth.User
	creds map[string]bool
	codes map[string]*pushauth.ActivationCode // outstanding, by user
	// outbox holds the ids of the messages not yet delivered.
	outbox map[string]bool
}

func load(tx *bolt.Tx, sealer *seal.Sealer, now time.Time) (*snapshotData, error) {
	info, err := describe(tx)
	if err != nil {
		return nil, err
	}
	d := &snapshotData{info: info, users: map[string]pushauth.User{}, creds: map[string]bool{},
		codes: map[string]*pushauth.ActivationCode{}, outbox: map[string]bool{}}
	// A file of a version before the activation codes and the outbox has
	// neither bucket.
	if b := tx.Bucket(bucketActivation); b != nil {
		if err := b.ForEach(func(k, v []byte) error {
			c, expired, err := openActivation(sealer, string(k), v, now)
			if err == nil && !expired {
				d.codes[string(k)] = c
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	if b := tx.Bucket(bucketOutbox); b != nil {
		if err := b.ForEach(func(k, _ []byte) error {
			d.outbox[string(k)] = true
			return nil
		}); err != nil {
			return nil, err
		}
	}
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

	now := opts.now()
	bdb, err := openDB(backup, true)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var old *snapshotData
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
		info, err := describe(tx)
		if err != nil {
			return err
		}
		if _, err := sealer.Open(tx.Bucket(bucketMeta).Get(metaKeyCheck), keyCheckAD); err != nil {
			return fmt.Errorf("%w: backup %s (store %s) was sealed with a key this gateway does not hold: restoring it would leave every security code unreadable; configure the key it was sealed with", ErrKey, backup, info.StoreID)
		}
		old, err = load(tx, sealer, now)
		return err
	})
	_ = bdb.Close()
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", backup, err)
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
		if err := cdb.View(func(tx *bolt.Tx) error { cur, err = load(tx, sealer, now); return err }); err != nil {
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
	announcements := announce(rb.Changes, cur, old)
	rb.Outbox = OutboxPlan{Kept: len(old.outbox), Announced: len(announcements)}
	if cur != nil {
		rb.Current = cur.info
		rb.Outbox.Kept = len(cur.outbox)
		for id := range cur.outbox {
			if !old.outbox[id] {
				rb.Outbox.QueuedSince++
			}
		}
		for id := range old.outbox {
			if !cur.outbox[id] {
				rb.Outbox.Delivered++
			}
		}
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
	if err := recordRollback(tmp, cdb, rb, announcements, actor, generation, opts); err != nil {
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

// recordRollback makes the copy of the backup at path the restored store:
// it carries over from the store it replaces (cur, nil when missing) what
// is never rolled back, queues the announcements, writes the restore into
// the audit trail and sets its generation above everything this gateway
// has seen, in one transaction.
func recordRollback(path string, cur *bolt.DB, rb *Rollback, announcements []pushauth.Announcement, actor string, generation uint64, opts Options) error {
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
		detail += fmt.Sprintf(" made after it (the store was at generation %d); kept from the store it replaced: %d undelivered notifications (%d queued since the backup; %d delivered since not sent again), the activation codes, used codes and failure counts",
			rb.Current.Generation, rb.Outbox.Kept, rb.Outbox.QueuedSince, rb.Outbox.Delivered)
	} else {
		detail += fmt.Sprintf(" (the store file was missing): the backup's %d undelivered notifications are sent, its %d activation codes dropped", rb.Outbox.Kept, rb.Count("activation_code"))
	}
	detail += fmt.Sprintf("; %d announcements of the bindings it changes queued", rb.Outbox.Announced)
	evs := []pushauth.AuditEvent{{Time: now, Type: pushauth.AuditAdmin, Outcome: "store.restored", Actor: actor, Detail: detail}}
	for _, c := range rb.Changes {
		evs = append(evs, pushauth.AuditEvent{Time: now, Type: pushauth.AuditAdmin, User: c.User, Credential: c.Credential,
			Outcome: "store.rollback", Actor: actor, Detail: c.Kind + " undone: was " + c.Now + ", restored " + c.Restored})
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range buckets { // a backup of an earlier version
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if cur != nil {
			if err := cur.View(func(from *bolt.Tx) error { return carryOver(from, tx) }); err != nil {
				return fmt.Errorf("carrying over from the replaced store: %w", err)
			}
		} else if err := emptyBucket(tx, bucketActivation); err != nil {
			return err
		}
		for _, a := range announcements {
			a.Actor = actor
			n, err := a.Notification(now, opts.Repudiation)
			if err != nil {
				return err
			}
			if err := putOutbox(tx, &outboxRecord{Notification: *n, Due: now}, nil); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketOutbox)
		if err := b.SetSequence(uint64(b.Stats().KeyN)); err != nil {
			return err
		}
		for _, ev := range evs {
			if err := appendEvent(tx, ev, opts.AuditMaxEvents); err != nil {
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

// carriedOver are the buckets a restore takes whole from the store it
// replaces.
var carriedOver = [][]byte{bucketOutbox, bucketOutboxDue, bucketActivation, bucketMarkers}

// carryOver copies into the restored store (to) what the store it
// replaces (from) knows better: see the comment at the top of this file.
func carryOver(from, to *bolt.Tx) error {
	for _, name := range carriedOver {
		if err := emptyBucket(to, name); err != nil {
			return err
		}
		src := from.Bucket(name)
		if src == nil {
			continue
		}
		dst := to.Bucket(name)
		if err := src.ForEach(func(k, v []byte) error { return dst.Put(k, v) }); err != nil {
			return err
		}
	}
	// Failure counts never go down.
	users := to.Bucket(bucketUsers)
	return from.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		var now pushauth.User
		if err := json.Unmarshal(v, &now); err != nil {
			return fmt.Errorf("user %q: %w", k, err)
		}
		restored := pushauth.User{Key: string(k), State: pushauth.UserActive, UpdatedAt: now.UpdatedAt}
		if old := users.Get(k); old != nil {
			if err := json.Unmarshal(old, &restored); err != nil {
				return fmt.Errorf("user %q in the backup: %w", k, err)
			}
		}
		if now.Failures <= restored.Failures {
			return nil
		}
		restored.Failures = now.Failures
		rec, err := json.Marshal(restored)
		if err != nil {
			return err
		}
		return putUser(to, restored.Key, restored.CredentialID, rec)
	})
}

// emptyBucket deletes everything in bucket name.
func emptyBucket(tx *bolt.Tx, name []byte) error {
	if tx.Bucket(name) != nil {
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
	}
	_, err := tx.CreateBucket(name)
	return err
}

// announce lists what the restore tells the customers: each binding it
// undoes, and each phone it makes work again, as the engine announces a
// binding (via "restore").
func announce(changes []Change, cur, old *snapshotData) []pushauth.Announcement {
	if cur == nil {
		return nil // nothing after the backup is known
	}
	var out []pushauth.Announcement
	for _, c := range changes {
		now, then := cur.users[c.User], old.users[c.User]
		when := old.info.LastEvent.UTC().Format(time.RFC3339)
		switch {
		case c.Kind == "binding" && then.CredentialID == "":
			out = append(out, pushauth.Announcement{Type: pushauth.EventPhoneDeregistered, User: c.User, Credential: now.CredentialID,
				Detail: "the bank restored its records from a backup of " + when + ": this phone, bound after it, is no longer bound"})
		case c.Kind == "binding":
			out = append(out, pushauth.Announcement{Type: pushauth.EventPhoneReplaced, User: c.User, Credential: then.CredentialID,
				PreviousCredential: now.CredentialID, Via: "restore",
				Detail: "the bank restored its records from a backup of " + when + ": the phone bound then is bound again, in place of the one bound after it"})
		case c.Kind == "revocation":
			out = append(out, pushauth.Announcement{Type: pushauth.EventPhoneBound, User: c.User, Credential: then.CredentialID,
				PreviousCredential: now.CredentialID, Via: "restore",
				Detail: "the bank restored its records from a backup of " + when + ": this phone is bound as it was then, undoing its removal (or a lock, suspension or deregistration) since"})
		}
	}
	return out
}

// changes lists what replacing cur by old undoes (cur nil: unknown, none
// but the activation codes dropped).
func changes(cur, old *snapshotData) []Change {
	if cur == nil {
		return codeChanges(nil, old)
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
	return append(out, codeChanges(cur, old)...)
}

// codeChanges lists the activation codes issued or used after the backup
// (kept as they are now), and higher failure counts (kept); after a loss
// (cur nil), the backup's codes, which the restore drops.
func codeChanges(cur, old *snapshotData) []Change {
	var out []Change
	if cur == nil {
		for _, u := range slices.Sorted(maps.Keys(old.codes)) {
			out = append(out, Change{Kind: "activation_code", User: u, Now: "unknown (the store file is missing)",
				Restored: "dropped: " + codeText(old.codes[u]) + " may have been used since the backup; issue a new one"})
		}
		return out
	}
	users := slices.Sorted(maps.Keys(cur.codes))
	for u := range old.codes {
		if cur.codes[u] == nil {
			users = append(users, u)
		}
	}
	slices.Sort(users)
	for _, u := range users {
		now, then := cur.codes[u], old.codes[u]
		switch {
		case then == nil:
			out = append(out, Change{Kind: "activation_code", User: u, Now: codeText(now) + ", issued after the backup", Restored: "kept"})
		case now == nil:
			out = append(out, Change{Kind: "activation_code", User: u, Now: "none (" + codeText(then) + " used, voided or expired since the backup)", Restored: "none: not brought back"})
		case now.ID != then.ID:
			out = append(out, Change{Kind: "activation_code", User: u, Now: codeText(now) + ", issued after the backup in place of " + then.ID, Restored: "kept"})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cur.users)) {
		now, then := cur.users[k], old.users[k]
		if now.Failures > then.Failures {
			out = append(out, Change{Kind: "failures", User: k, Now: fmt.Sprintf("%d failures", now.Failures),
				Restored: fmt.Sprintf("%d failures kept (the backup has %d)", now.Failures, then.Failures)})
		}
	}
	return out
}

func codeText(c *pushauth.ActivationCode) string {
	s := fmt.Sprintf("%s code %s valid until %s", c.Kind, c.ID, c.ExpiresAt.UTC().Format(time.RFC3339))
	if c.Failures > 0 {
		s += fmt.Sprintf(", %d wrong tries", c.Failures)
	}
	return s
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
