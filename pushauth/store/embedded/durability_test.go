package embedded_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
	"github.com/onepush/onepush/pushauth/store/embedded"
	"github.com/onepush/onepush/pushauth/store/memory"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func initAndOpen(t testing.TB, o embedded.Options) *embedded.Store {
	t.Helper()
	if _, err := embedded.Init(o); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return mustOpen(t, o)
}

func mustOpen(t testing.TB, o embedded.Options) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// lingeringStore is a new store that holds batched writes back for an
// hour: only a durable write carries them to disk.
func lingeringStore(t testing.TB) (*embedded.Store, embedded.Options) {
	t.Helper()
	o := layout(t)
	o.Linger = time.Hour
	return initAndOpen(t, o), o
}

// openWithWorld creates the store of o and writes a world in it.
func openWithWorld(t testing.TB, o embedded.Options) (*embedded.Store, world) {
	t.Helper()
	s := initAndOpen(t, o)
	w := newWorld()
	w.write(t, s)
	return s, w
}

// writeWorld creates the store of o, writes a world in it and closes it:
// a file as a gateway left it.
func writeWorld(t testing.TB, o embedded.Options) world {
	t.Helper()
	s, w := openWithWorld(t, o)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return w
}

// reopen closes s and opens the store of o again: a clean restart.
func reopen(t testing.TB, s *embedded.Store, o embedded.Options) *embedded.Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return mustOpen(t, o)
}

// checkBatched checks that the writes a store batches (w's used token
// marker and learned session) are in s; lost says what went wrong.
func (w world) checkBatched(t testing.TB, s *embedded.Store, lost string) {
	t.Helper()
	ctx := context.Background()
	if ok, _ := s.UseJTI(ctx, w.jti, time.Now().Add(time.Hour)); ok {
		t.Fatalf("the decision token's jti %s", lost)
	}
	if u, err := s.GetSession(ctx, w.session); err != nil || u != "1001/alice" {
		t.Fatalf("the learned session %s: %q, %v", lost, u, err)
	}
}

// world is what a gateway keeps: alice bound and active, bob locked after
// failures, carol suspended until a deadline, a learned session and a
// pending-login mark, used codes and tokens, audit events of both kinds;
// and the records of binding: an app registered and not bound yet, one
// bound since, carol's activation code with a wrong try counted, alice's
// used one, frank's two failures and grace locked by a fraud report
// (counted by AddFailure), an announcement waiting for the bank's
// notification system (claimed once, its lease running) and one it took.
type world struct {
	cred     pushauth.Credential
	users    []pushauth.User
	session  string
	mark     string // hash of a pending-login mark
	until    time.Time
	otp, jti string
	push     string
	replay   string
	events   []pushauth.AuditEvent

	unbound, boundLater pushauth.Credential
	code, usedCode      pushauth.ActivationCode
	failing, reported   string
	queued, delivered   pushauth.Notification
	// announced is how many messages a restore added, due at once.
	announced int
}

// markValue is a pending-login mark: "<nonce>\x00<user key>".
const markValue = "n0nce\x00" + "1001/alice"

// lease is how long the world's claim of its queued message holds it.
const lease = 30 * time.Second

func newWorld() world {
	// A child process writes the world and the parent checks it, each
	// computing its own: a deadline to the second differed whenever the
	// two straddled a second; to the day they agree.
	until := time.Now().Add(72 * time.Hour).UTC().Truncate(24 * time.Hour)
	cred := pushauth.Credential{ID: "OPALICEPHONE", PublicKey: []byte{0x30, 0x59, 1, 2, 3}, Platform: "apns",
		PushToken: "tok-ä", OTPSecret: "KVKFKRCPNZQUYMLXOVYDSQKJKZDTSRLD", CreatedAt: time.Now().UTC()}
	return world{
		cred: cred,
		users: []pushauth.User{
			{Key: "1001/alice", CredentialID: cred.ID, State: pushauth.UserActive, UpdatedAt: time.Now().UTC()},
			{Key: "1001/bob", CredentialID: cred.ID, State: pushauth.UserLocked, Failures: 5, UpdatedAt: time.Now().UTC()},
			{Key: "2002/carol", CredentialID: cred.ID, State: pushauth.UserSuspended, Until: until, UpdatedAt: time.Now().UTC()},
		},
		session: pushauth.SessionHash("bank-session-of-alice"),
		until:   until,
		otp:     "otp/" + cred.ID + "/492039",
		jti:     "jti/" + cred.ID + "/token-1",
		push:    "push/1001/alice/1700000000/0",
		replay:  "replay/challenge-1",
		events: []pushauth.AuditEvent{
			{Time: time.Now().UTC(), Type: pushauth.AuditEnrolment, User: "1001/alice", Credential: cred.ID, Outcome: "bound", Actor: "browser"},
			{Time: time.Now().UTC(), Type: pushauth.AuditDecided, User: "1001/alice", Challenge: "c1", Outcome: "approved", Actor: "phone"},
			{Time: time.Now().UTC(), Type: pushauth.AuditStateChange, User: "1001/bob", Outcome: "locked", Actor: "gateway"},
		},
		mark: pushauth.SessionHash("login-pending-of-alice"),

		unbound:    pushauth.Credential{ID: "OPUNBOUND", PublicKey: []byte{0x30, 9}, Platform: "fcm", OTPSecret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Hour).UTC()},
		boundLater: pushauth.Credential{ID: "OPBOUNDLATER", PublicKey: []byte{0x30, 8}, Platform: "fcm", OTPSecret: "MFRGGZDFMZTWQ2LKMFRGGZDFMZTWQ2LK", CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Hour).UTC()},
		code: pushauth.ActivationCode{ID: "act-carol", User: "2002/carol", Kind: pushauth.ActivationRecovery, Salt: []byte("salt-of-carol-16"),
			Hash: bytes.Repeat([]byte{0xc4}, 32), IssuedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(14 * 24 * time.Hour).UTC(), IssuedBy: "clerk"},
		usedCode: pushauth.ActivationCode{ID: "act-alice", User: "1001/alice", Kind: pushauth.ActivationBinding, Salt: []byte("salt-of-alice-16"),
			Hash: bytes.Repeat([]byte{0xa1}, 32), IssuedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(10 * time.Minute).UTC(), IssuedBy: "clerk"},
		failing:   "5005/frank",
		reported:  "6006/grace",
		queued:    notification("evt_0001queued", pushauth.EventPhoneReplaced, "2002/carol"),
		delivered: notification("evt_0002delivered", pushauth.EventPhoneBound, "1001/alice"),
	}
}

func notification(id, typ, user string) pushauth.Notification {
	now := time.Now().UTC()
	return pushauth.Notification{ID: id, Type: typ, User: user, Time: now,
		Body: []byte(`{"id":"` + id + `","type":"` + typ + `","user":"` + user + `","note":"ü \u2028"}`)}
}

func (w world) write(t testing.TB, s *embedded.Store) {
	t.Helper()
	ctx := ctxT(t)
	if err := s.PutCredential(ctx, &w.cred); err != nil {
		t.Fatal(err)
	}
	for _, u := range w.users {
		if err := s.PutUser(ctx, &u); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutSession(ctx, w.session, "1001/alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(ctx, w.mark, markValue, time.Hour); err != nil {
		t.Fatal(err)
	}
	w.writeBinding(t, s)
	for _, m := range []string{w.otp, w.jti, w.push, w.replay} {
		if ok, err := s.UseJTI(ctx, m, time.Now().Add(time.Hour)); err != nil || !ok {
			t.Fatalf("UseJTI(%s) = %v, %v", m, ok, err)
		}
	}
	for _, ev := range w.events {
		if err := s.AuditLog().Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
}

// writeBinding writes the records of binding a phone.
func (w world) writeBinding(t testing.TB, s *embedded.Store) {
	t.Helper()
	ctx := ctxT(t)
	for _, c := range []pushauth.Credential{w.unbound, w.boundLater} {
		if err := s.PutCredential(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	bound := w.boundLater
	bound.ExpiresAt = time.Time{}
	if err := s.PutCredential(ctx, &bound); err != nil {
		t.Fatal(err)
	}
	for _, c := range []pushauth.ActivationCode{w.code, w.usedCode} {
		if err := s.PutActivationCode(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.CountActivationFailure(ctx, w.code.User, w.code.ID); err != nil || n != 1 {
		t.Fatalf("CountActivationFailure = %d, %v", n, err)
	}
	if ok, err := s.TakeActivationCode(ctx, w.usedCode.User, w.usedCode.ID); err != nil || !ok {
		t.Fatalf("TakeActivationCode = %v, %v", ok, err)
	}
	for range 2 {
		if _, _, err := s.AddFailure(ctx, w.failing, 5, false, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if u, locked, err := s.AddFailure(ctx, w.reported, 5, true, time.Now()); err != nil || !locked || u.State != pushauth.UserLocked {
		t.Fatalf("AddFailure (fraud) = %+v, %v, %v", u, locked, err)
	}
	for _, n := range []pushauth.Notification{w.queued, w.delivered} {
		if err := s.EnqueueNotification(ctx, &n); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ClaimNotifications(ctx, time.Now(), 10, lease)
	if err != nil || len(got) != 2 {
		t.Fatalf("ClaimNotifications = %d messages, %v", len(got), err)
	}
	if err := s.AckNotification(ctx, w.delivered.ID); err != nil {
		t.Fatal(err)
	}
}

// check verifies what must have lasted.
func (w world) check(t testing.TB, s *embedded.Store) {
	t.Helper()
	ctx := ctxT(t)
	got, err := s.GetCredential(ctx, w.cred.ID)
	if err != nil || got.OTPSecret != w.cred.OTPSecret || got.PushToken != w.cred.PushToken || !bytes.Equal(got.PublicKey, w.cred.PublicKey) {
		t.Fatalf("credential after restart = %+v, %v", got, err)
	}
	for _, want := range w.users {
		u, err := s.GetUser(ctx, want.Key)
		if err != nil || u.CredentialID != want.CredentialID || u.State != want.State || u.Failures != want.Failures || !u.Until.Equal(want.Until) {
			t.Fatalf("user %s after restart = %+v, %v; want %+v", want.Key, u, err, want)
		}
	}
	keys, err := s.UsersOfCredential(ctx, w.cred.ID)
	slices.Sort(keys)
	if err != nil || !slices.Equal(keys, []string{"1001/alice", "1001/bob", "2002/carol"}) {
		t.Fatalf("users of the phone after restart = %q, %v", keys, err)
	}
	if u, err := s.GetSession(ctx, w.session); err != nil || u != "1001/alice" {
		t.Fatalf("learned session after restart = %q, %v", u, err)
	}
	if v, err := s.GetSession(ctx, w.mark); err != nil || v != markValue {
		t.Fatalf("pending-login mark after restart = %q, %v; want %q", v, err, markValue)
	}
	for _, m := range []string{w.otp, w.jti, w.push} {
		if ok, err := s.UseJTI(ctx, m, time.Now().Add(time.Hour)); err != nil || ok {
			t.Fatalf("UseJTI(%s) after restart = %v, %v; want refused: it was used before", m, ok, err)
		}
	}
	w.checkBinding(t, s)
	evs, err := s.AuditLog().Query(ctx, pushauth.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type+" "+ev.User)
	}
	for _, ev := range w.events {
		if !slices.Contains(types, ev.Type+" "+ev.User) {
			t.Fatalf("audit after restart = %q, missing %s of %s", types, ev.Type, ev.User)
		}
	}
}

// checkBinding verifies that the records of binding lasted.
func (w world) checkBinding(t testing.TB, s *embedded.Store) {
	t.Helper()
	ctx := ctxT(t)
	// (The killed child wrote its own world, a moment earlier.)
	near := func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Minute }
	if c, err := s.GetCredential(ctx, w.unbound.ID); err != nil || !near(c.ExpiresAt, w.unbound.ExpiresAt) {
		t.Fatalf("unbound credential after restart = %+v, %v; want it, expiring at %s", c, err, w.unbound.ExpiresAt)
	}
	if c, err := s.GetCredential(ctx, w.boundLater.ID); err != nil || !c.ExpiresAt.IsZero() {
		t.Fatalf("credential bound before the restart = %+v, %v; want it, without expiry", c, err)
	}
	c, err := s.GetActivationCode(ctx, w.code.User)
	if err != nil || c.ID != w.code.ID || c.Failures != 1 || !bytes.Equal(c.Hash, w.code.Hash) || !bytes.Equal(c.Salt, w.code.Salt) || !near(c.ExpiresAt, w.code.ExpiresAt) {
		t.Fatalf("carol's activation code after restart = %+v, %v; want %s with its wrong try counted", c, err, w.code.ID)
	}
	if _, err := s.GetActivationCode(ctx, w.usedCode.User); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("alice's used activation code after restart: %v, want ErrNotFound", err)
	}
	if ok, err := s.TakeActivationCode(ctx, w.usedCode.User, w.usedCode.ID); err != nil || ok {
		t.Fatalf("taking alice's used activation code after restart = %v, %v; want refused", ok, err)
	}
	if u, err := s.GetUser(ctx, w.failing); err != nil || u.Failures != 2 || u.State != pushauth.UserActive {
		t.Fatalf("frank after restart = %+v, %v; want active with 2 failures", u, err)
	}
	if u, err := s.GetUser(ctx, w.reported); err != nil || u.Failures != 1 || u.State != pushauth.UserLocked {
		t.Fatalf("grace after restart = %+v, %v; want locked", u, err)
	}
	if n, err := s.NotificationBacklog(ctx); err != nil || n != 1+w.announced {
		t.Fatalf("outbox after restart: %d messages, %v; want the one not delivered (and %d announcements)", n, err, w.announced)
	}
	got, err := s.ClaimNotifications(ctx, time.Now(), 10, lease)
	if err != nil || len(got) != w.announced {
		t.Fatalf("claim within the lease taken before the restart = %d messages, %v; want %d", len(got), err, w.announced)
	}
	for _, m := range got {
		if err := s.AckNotification(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.ClaimNotifications(ctx, time.Now().Add(lease+time.Second), 10, lease)
	if err != nil || len(got) != 1 || got[0].ID != w.queued.ID || got[0].Attempts != 2 || !bytes.Equal(got[0].Body, w.queued.Body) || got[0].Type != w.queued.Type {
		t.Fatalf("claim after the lease = %+v, %v; want %s, attempt 2, its exact body", got, err, w.queued.ID)
	}
}

func TestCloseAndReopenKeepsWhatMustLast(t *testing.T) {
	o := layout(t)
	s, w := openWithWorld(t, o)
	ch := &pushauth.Challenge{ID: "held-before-restart", UserKey: "1001/alice", CredentialID: w.cred.ID, Status: pushauth.StatusPending,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute)}
	if _, err := s.CreateChallenge(ctxT(t), ch, ch.ExpiresAt.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = mustOpen(t, o)
	w.check(t, s)
	// A restart cancels every challenge: an approval sent after it finds
	// nothing to approve.
	if _, err := s.Resolve(ctxT(t), ch.ID, pushauth.StatusApproved, false, time.Now()); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("approving a challenge from before the restart: %v, want ErrNotFound", err)
	}
	// The replay marker of an interstitial challenge dies with it.
	if ok, err := s.UseJTI(ctxT(t), w.replay, time.Now().Add(time.Hour)); err != nil || !ok {
		t.Fatalf("replay marker after restart = %v, %v; it guards a challenge that no longer exists", ok, err)
	}
}

// The child process of TestKilledProcessKeepsDurableWrites: it writes the
// world and says so, then waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("EMBEDDED_KILL_CHILD"); dir != "" {
		o := childLayout(dir)
		o.Linger = time.Hour // nothing batched reaches the disk unless a durable write carries it
		s, err := embedded.Open(o)
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		newWorld().write(&childT{}, s)
		fmt.Println("written")
		time.Sleep(time.Minute)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func childLayout(dir string) embedded.Options {
	return embedded.Options{
		Path:         filepath.Join(dir, "data", "store.db"),
		IdentityFile: filepath.Join(dir, "config", "embedded.json"),
		KeyFile:      filepath.Join(dir, "config", "embedded.key"),
	}
}

// childT lets world.write run outside a test.
type childT struct{ testing.TB }

func (childT) Helper()                   {}
func (childT) Cleanup(func())            {}
func (childT) Fatal(args ...any)         { fmt.Println(args...); os.Exit(2) }
func (childT) Fatalf(f string, a ...any) { fmt.Printf(f+"\n", a...); os.Exit(2) }

// killChildOnceWritten runs this test binary again with -test.run=run and
// env added, waits for the child to print "written" (its writes returned),
// and SIGKILLs it there.
func killChildOnceWritten(t *testing.T, run, env string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+run)
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l := <-line:
		if l != "written" {
			_ = cmd.Process.Kill()
			t.Fatalf("child: %s", l)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("child did not write within 60s")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// A gateway killed with SIGKILL right after its writes returned: every
// write that returned is on disk — including the batched audit events and
// token markers queued before the last durable write, which carried them.
func TestKilledProcessKeepsDurableWrites(t *testing.T) {
	dir := t.TempDir()
	o := childLayout(dir)
	if _, err := embedded.Init(o); err != nil {
		t.Fatal(err)
	}
	// The world's last write is an audit event of a lock (durable): it
	// carries the batched ones queued before it.
	killChildOnceWritten(t, "^$", "EMBEDDED_KILL_CHILD="+dir)

	s := mustOpen(t, o)
	newWorld().check(t, s)
}

func TestNoSilentFirstStart(t *testing.T) {
	o := layout(t)
	_, err := embedded.New(o)
	if !errors.Is(err, embedded.ErrMissing) || !strings.Contains(err.Error(), o.Path) || !strings.Contains(err.Error(), "caddy onepush store init") {
		t.Fatalf("New on a missing file = %v; want ErrMissing naming %s and the init command", err, o.Path)
	}
	if _, err := os.Stat(o.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refusing created %s: %v", o.Path, err)
	}

	// The demo's and tests' flag: created on the very first start only.
	auto := o
	auto.AutoInit = true
	s := mustOpen(t, auto)
	newWorld().write(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.Init(o); !errors.Is(err, embedded.ErrExists) {
		t.Fatalf("Init over an existing store = %v, want ErrExists", err)
	}

	for _, lose := range []struct {
		name string
		path func(embedded.Options) string
	}{
		{"the data file", func(o embedded.Options) string { return o.Path }},
		{"the whole data directory", func(o embedded.Options) string { return filepath.Dir(filepath.Dir(o.Path)) }},
	} {
		t.Run("losing "+lose.name, func(t *testing.T) {
			o := layout(t)
			s := initAndOpen(t, o)
			newWorld().write(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(lose.path(o)); err != nil {
				t.Fatal(err)
			}
			for _, opts := range []embedded.Options{o, func() embedded.Options { a := o; a.AutoInit = true; return a }()} {
				_, err := embedded.Open(opts)
				if !errors.Is(err, embedded.ErrMissing) || !strings.Contains(err.Error(), o.Path) || !strings.Contains(err.Error(), "restore") {
					t.Fatalf("Open (auto_init %v) after losing %s = %v; want ErrMissing naming %s and the restore command", opts.AutoInit, lose.name, err, o.Path)
				}
			}
			if _, err := embedded.Init(o); !errors.Is(err, embedded.ErrExists) || !strings.Contains(err.Error(), o.IdentityFile) {
				t.Fatalf("Init after losing %s = %v; want a refusal naming the identity file", lose.name, err)
			}
			if _, err := os.Stat(o.Path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refusal created %s", o.Path)
			}
		})
	}
}

func TestReplacedFileIsRefused(t *testing.T) {
	t.Run("another installation's file", func(t *testing.T) {
		o, other := layout(t), layout(t)
		s := initAndOpen(t, o)
		newWorld().write(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		so := initAndOpen(t, other)
		if err := so.Close(); err != nil {
			t.Fatal(err)
		}
		copyFile(t, other.Path, o.Path)
		_, err := embedded.Open(o)
		if !errors.Is(err, embedded.ErrReplaced) || !strings.Contains(err.Error(), o.Path) {
			t.Fatalf("Open on another store's file = %v, want ErrReplaced naming %s", err, o.Path)
		}
	})

	t.Run("an older copy put back by hand", func(t *testing.T) {
		o := layout(t)
		s := initAndOpen(t, o)
		old := snapshotTo(t, s)
		// alice binds her phone after the copy was taken.
		newWorld().write(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		copyFile(t, old, o.Path)
		_, err := embedded.Open(o)
		if !errors.Is(err, embedded.ErrReplaced) || !strings.Contains(err.Error(), "older") || !strings.Contains(err.Error(), "--accept-rollback") {
			t.Fatalf("Open on an older copy = %v, want ErrReplaced saying it is older", err)
		}
	})

	t.Run("a key that does not open it", func(t *testing.T) {
		o := layout(t)
		s := initAndOpen(t, o)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		key, _ := seal.NewKey()
		if err := os.WriteFile(o.KeyFile, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := embedded.Open(o); !errors.Is(err, embedded.ErrKey) || !strings.Contains(err.Error(), o.KeyFile) {
			t.Fatalf("Open with another key = %v, want ErrKey naming the key file", err)
		}
		if err := os.Remove(o.KeyFile); err != nil {
			t.Fatal(err)
		}
		if _, err := embedded.Open(o); !errors.Is(err, embedded.ErrKey) || !strings.Contains(err.Error(), o.KeyFile) {
			t.Fatalf("Open without the key file = %v, want ErrKey naming it", err)
		}
	})

	t.Run("deleted under the running store", func(t *testing.T) {
		o := layout(t)
		s, w := openWithWorld(t, o)
		if err := os.Remove(o.Path); err != nil {
			t.Fatal(err)
		}
		// A binding now would vanish at the next start: refused.
		err := s.PutUser(ctxT(t), &pushauth.User{Key: "3003/dave", CredentialID: w.cred.ID, State: pushauth.UserActive})
		if !errors.Is(err, embedded.ErrReplaced) {
			t.Fatalf("PutUser after the file was deleted = %v, want ErrReplaced", err)
		}
		// What it holds still answers: alice stays challenged.
		if u, err := s.GetUser(ctxT(t), "1001/alice"); err != nil || !u.Enrolled() {
			t.Fatalf("alice after the file was deleted = %+v, %v", u, err)
		}
	})

	t.Run("identity record lost, file and key intact", func(t *testing.T) {
		o := layout(t)
		w := writeWorld(t, o)
		if err := os.Remove(o.IdentityFile); err != nil {
			t.Fatal(err)
		}
		s := mustOpen(t, o)
		w.check(t, s)
		if _, err := os.Stat(o.IdentityFile); err != nil {
			t.Fatalf("identity file not recorded again: %v", err)
		}
	})
}

// Neither the file nor a backup holds a security-code secret or a used
// code in clear.
func TestSecretsAreSealedInTheFile(t *testing.T) {
	o := layout(t)
	s, w := openWithWorld(t, o)
	backup := snapshotTo(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{o.Path, backup} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// An activation code's hash and salt would let a copy be searched
		// offline for the code: they are sealed too (JSON would hold them
		// in base64).
		code := []string{string(w.code.Hash), string(w.code.Salt),
			base64.StdEncoding.EncodeToString(w.code.Hash), base64.StdEncoding.EncodeToString(w.code.Salt)}
		for _, secret := range append([]string{w.cred.OTPSecret, w.otp, "492039", w.cred.PushToken, w.unbound.OTPSecret}, code...) {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("%s holds %q in clear", filepath.Base(file), secret)
			}
		}
		// The record is there, sealed: the test would pass on an empty file
		// otherwise.
		if !bytes.Contains(raw, []byte(w.cred.ID)) || !bytes.Contains(raw, []byte("onepush-sealed-v1:")) {
			t.Errorf("%s does not hold the sealed credential %s", filepath.Base(file), w.cred.ID)
		}
	}
}

// The path of a held request — read the user, verify a token, take a push
// slot, create, decide and audit the challenge, learn the bank's session
// on the way back — never waits for a commit; the next durable write
// carries what it queued.
func TestHeldRequestPathWaitsForNoCommit(t *testing.T) {
	s, o := lingeringStore(t)
	w := newWorld()
	ctx := ctxT(t)
	if err := s.PutCredential(ctx, &w.cred); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUser(ctx, &w.users[0]); err != nil {
		t.Fatal(err)
	}
	before := s.Commits()
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			if _, err := s.GetUser(ctx, "1001/alice"); err != nil {
				return err
			}
			if _, err := s.GetCredential(ctx, w.cred.ID); err != nil {
				return err
			}
			if ok, err := s.UseJTI(ctx, w.push, time.Now().Add(2*time.Minute)); err != nil || !ok {
				return fmt.Errorf("push slot: %v %v", ok, err)
			}
			c := &pushauth.Challenge{ID: "c1", UserKey: "1001/alice", CredentialID: w.cred.ID, Status: pushauth.StatusPending, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute)}
			if _, err := s.CreateChallenge(ctx, c, c.ExpiresAt); err != nil {
				return err
			}
			if err := s.AuditLog().Append(ctx, pushauth.AuditEvent{Time: time.Now(), Type: pushauth.AuditCreated, User: "1001/alice", Challenge: "c1"}); err != nil {
				return err
			}
			if ok, err := s.UseJTI(ctx, w.jti, time.Now().Add(2*time.Minute)); err != nil || !ok {
				return fmt.Errorf("decision token: %v %v", ok, err)
			}
			if _, err := s.Resolve(ctx, "c1", pushauth.StatusApproved, false, time.Now()); err != nil {
				return err
			}
			if err := s.AuditLog().Append(ctx, pushauth.AuditEvent{Time: time.Now(), Type: pushauth.AuditDecided, User: "1001/alice", Challenge: "c1", Outcome: "approved"}); err != nil {
				return err
			}
			// The bank's answer sets its session: learned on the way back.
			return s.PutSession(ctx, w.session, "1001/alice", time.Hour)
		}()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held-request path waited for the disk")
	}
	if n := s.Commits() - before; n != 0 {
		t.Fatalf("the held-request path committed %d transactions, want 0", n)
	}
	// The next durable write (bob locked) is one commit, which carries the
	// batched writes.
	if err := s.PutUser(ctx, &w.users[1]); err != nil {
		t.Fatal(err)
	}
	if n := s.Commits() - before; n != 1 {
		t.Fatalf("locking bob committed %d transactions, want 1", n)
	}
	s = reopen(t, s, o)
	w.checkBatched(t, s, "was not carried to disk by the next commit")
	evs, err := s.AuditLog().Query(ctx, pushauth.AuditQuery{User: "1001/alice"})
	if err != nil || len(evs) != 2 || evs[0].Type != pushauth.AuditCreated || evs[1].Type != pushauth.AuditDecided {
		t.Fatalf("audit after restart = %+v, %v; want created then decided", evs, err)
	}
}

func TestKeyRotationReseals(t *testing.T) {
	oldKey, _ := seal.NewKey()
	newKey, _ := seal.NewKey()
	sealer := func(keys ...string) *seal.Sealer {
		s, err := seal.ParseKeys(keys[0], keys[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	o := layout(t)
	o.Sealer = sealer(oldKey)
	w := writeWorld(t, o)
	if _, err := os.Stat(o.KeyFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a key file was written although encryption_key seals: %v", err)
	}
	o.Sealer = sealer(newKey)
	if _, err := embedded.Open(o); !errors.Is(err, embedded.ErrKey) {
		t.Fatalf("Open with a new key alone = %v, want ErrKey", err)
	}
	o.Sealer = sealer(newKey, oldKey)
	s := mustOpen(t, o)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o.Sealer = sealer(newKey) // the old key dropped after the restart resealed
	s = mustOpen(t, o)
	w.check(t, s)
}

func TestAuditTrailBounds(t *testing.T) {
	o := layout(t)
	o.AuditMaxEvents = 5
	s := initAndOpen(t, o)
	ctx := ctxT(t)
	t0 := time.Now().UTC()
	for i := range 8 {
		typ := pushauth.AuditDecided
		if i%2 == 1 {
			typ = pushauth.AuditAdmin
		}
		if err := s.AuditLog().Append(ctx, pushauth.AuditEvent{Time: t0.Add(time.Duration(i) * time.Second), Type: typ, User: fmt.Sprintf("u%d", i%3), Detail: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.AuditLog().Query(ctx, pushauth.AuditQuery{})
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Detail)
	}
	if err != nil || !slices.Equal(got, []string{"3", "4", "5", "6", "7"}) {
		t.Fatalf("kept events = %q, %v; want the newest 5, oldest first", got, err)
	}
	evs, _ = s.AuditLog().Query(ctx, pushauth.AuditQuery{User: "u1", Type: pushauth.AuditAdmin})
	if len(evs) != 1 || evs[0].Detail != "7" {
		t.Fatalf("u1's admin events = %+v, want event 7", evs)
	}
	evs, _ = s.AuditLog().Query(ctx, pushauth.AuditQuery{Since: t0.Add(5 * time.Second), Limit: 2})
	if len(evs) != 2 || evs[0].Detail != "6" || evs[1].Detail != "7" {
		t.Fatalf("newest 2 since +5s = %+v", evs)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshotTo writes a backup of s (as GET /store/backup serves it) to a
// new file and returns its path.
func snapshotTo(t testing.TB, s *embedded.Store) string {
	t.Helper()
	f, _, err := s.Snapshot(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	to := filepath.Join(t.TempDir(), "backup.db")
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := out.ReadFrom(f); err != nil {
		t.Fatal(err)
	}
	return to
}

// Export moves everything that must last into another store (Redis, in
// `caddy onepush store migrate`): the world checks out there, used codes
// included, even after a key rotation resealed the file.
func TestExportCopiesWhatMustLast(t *testing.T) {
	oldKey, _ := seal.NewKey()
	newKey, _ := seal.NewKey()
	o := layout(t)
	o.Sealer, _ = seal.ParseKeys(oldKey)
	w := writeWorld(t, o)
	o.Sealer, _ = seal.ParseKeys(newKey, oldKey)
	s := mustOpen(t, o)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o.Sealer, _ = seal.ParseKeys(newKey)
	s = mustOpen(t, o)

	dst := memory.New(nil)
	defer dst.Close()
	audit := memory.NewAuditLog(0, 0, nil)
	n, err := s.Export(ctxT(t), dst, audit)
	if err != nil {
		t.Fatal(err)
	}
	if n.Credentials != 3 || n.Users != 5 || n.Sessions != 2 || n.Markers != 3 || n.AuditEvents != len(w.events) ||
		n.ActivationCodes != 1 || n.Notifications != 1 {
		t.Fatalf("exported %+v", n)
	}
	ctx := ctxT(t)
	if c, err := dst.GetCredential(ctx, w.cred.ID); err != nil || c.OTPSecret != w.cred.OTPSecret {
		t.Fatalf("credential in the destination = %+v, %v", c, err)
	}
	for _, want := range w.users {
		if u, err := dst.GetUser(ctx, want.Key); err != nil || u.State != want.State || u.CredentialID != want.CredentialID || !u.Until.Equal(want.Until) {
			t.Fatalf("user %s in the destination = %+v, %v", want.Key, u, err)
		}
	}
	if u, err := dst.GetSession(ctx, w.session); err != nil || u != "1001/alice" {
		t.Fatalf("session in the destination = %q, %v", u, err)
	}
	for _, m := range []string{w.otp, w.jti, w.push} {
		if ok, err := dst.UseJTI(ctx, m, time.Now().Add(time.Hour)); err != nil || ok {
			t.Fatalf("UseJTI(%s) in the destination = %v, %v; want refused", m, ok, err)
		}
	}
	if evs, _ := audit.Query(ctx, pushauth.AuditQuery{}); len(evs) != len(w.events) || evs[0].Type != w.events[0].Type {
		t.Fatalf("audit in the destination = %+v", evs)
	}
	// What binding needs: the registration in progress keeps its expiry,
	// carol's code its wrong try, alice's used code stays used, frank's
	// failures and grace's lock are there, and the announcement the bank
	// has not taken yet is delivered from the destination.
	if c, err := dst.GetCredential(ctx, w.unbound.ID); err != nil || !c.ExpiresAt.Equal(w.unbound.ExpiresAt) {
		t.Fatalf("unbound credential in the destination = %+v, %v", c, err)
	}
	if c, err := dst.GetActivationCode(ctx, w.code.User); err != nil || c.ID != w.code.ID || c.Failures != 1 || !bytes.Equal(c.Hash, w.code.Hash) {
		t.Fatalf("carol's activation code in the destination = %+v, %v", c, err)
	}
	if _, err := dst.GetActivationCode(ctx, w.usedCode.User); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("alice's used activation code in the destination: %v, want ErrNotFound", err)
	}
	if u, err := dst.GetUser(ctx, w.failing); err != nil || u.Failures != 2 {
		t.Fatalf("frank in the destination = %+v, %v", u, err)
	}
	if u, err := dst.GetUser(ctx, w.reported); err != nil || u.State != pushauth.UserLocked {
		t.Fatalf("grace in the destination = %+v, %v", u, err)
	}
	msgs, err := dst.ClaimNotifications(ctx, time.Now(), 10, time.Minute)
	if err != nil || len(msgs) != 1 || msgs[0].ID != w.queued.ID || !bytes.Equal(msgs[0].Body, w.queued.Body) || msgs[0].Attempts != 2 {
		t.Fatalf("outbox in the destination = %+v, %v; want %s only, on its second attempt", msgs, err, w.queued.ID)
	}
	// A second migration into the same destination is refused.
	if _, err := s.Export(ctx, dst, audit); !errors.Is(err, embedded.ErrExists) {
		t.Fatalf("export into a store holding the users = %v, want ErrExists", err)
	}
}

// A write the file refuses fails alone: the writes committed with it in
// one transaction are still committed.
func TestOneFailingWriteDoesNotFailItsBatch(t *testing.T) {
	s, o := lingeringStore(t)
	ctx := ctxT(t)
	w := newWorld()
	// Batched: they wait for the next commit.
	if ok, err := s.UseJTI(ctx, w.jti, time.Now().Add(time.Hour)); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := s.PutSession(ctx, w.session, "1001/alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	// bbolt refuses keys over 32 KiB.
	huge := strings.Repeat("x", 40<<10)
	if err := s.PutUser(ctx, &pushauth.User{Key: huge, State: pushauth.UserActive}); err == nil {
		t.Fatal("a user with a 40 KiB key was stored")
	}
	if _, err := s.GetUser(ctx, huge); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("the refused user reads back as %v, want ErrNotFound", err)
	}
	if err := s.PutUser(ctx, &w.users[0]); err != nil {
		t.Fatalf("a good write after the refused one: %v", err)
	}
	s = reopen(t, s, o)
	w.checkBatched(t, s, "batched with the refused write was lost")
	if _, err := s.GetUser(ctx, "1001/alice"); err != nil {
		t.Fatal(err)
	}
}

// A store created by this version opens under a later one that keeps one
// more kind of record: the bucket is added, nothing is refused or lost.
func TestAStoreGainsTheBucketsOfLaterFeatures(t *testing.T) {
	o := layout(t)
	w := writeWorld(t, o)
	defer embedded.AddBucket("outbox")()
	s := mustOpen(t, o)
	if !s.HasBucket("outbox") {
		t.Fatal("the later feature's bucket was not added")
	}
	w.check(t, s)
}

// A restore says what it undoes, refuses a store in use and one of another
// installation, and leaves the rollback in the audit trail.
func TestRestorePlansRefusesAndRecords(t *testing.T) {
	o := layout(t)
	s, w := openWithWorld(t, o)
	backup := snapshotTo(t, s)
	ctx := ctxT(t)
	// After the backup: dave bound, alice's phone removed, carol locked,
	// another app registered.
	for _, u := range []pushauth.User{
		{Key: "3003/dave", CredentialID: w.cred.ID, State: pushauth.UserActive},
		{Key: "1001/alice", State: pushauth.UserDeregistered},
		{Key: "2002/carol", CredentialID: w.cred.ID, State: pushauth.UserLocked},
	} {
		if err := s.PutUser(ctx, &u); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutCredential(ctx, &pushauth.Credential{ID: "OPNEWPHONE", Platform: "fcm"}); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.PlanRestore(o, backup); !errors.Is(err, embedded.ErrLocked) {
		t.Fatalf("PlanRestore into a running store = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(o.Path)
	plan, err := embedded.PlanRestore(o, backup)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range plan.Changes {
		got = append(got, c.Kind+" "+c.User+c.Credential)
	}
	want := []string{"revocation 1001/alice" + w.cred.ID, "state 2002/carol" + w.cred.ID, "binding 3003/dave" + w.cred.ID, "credential OPNEWPHONE"}
	if !slices.Equal(got, want) {
		t.Fatalf("plan = %q, want %q", got, want)
	}
	if after, _ := os.ReadFile(o.Path); !bytes.Equal(before, after) {
		t.Fatal("planning changed the store file")
	}
	other := layout(t)
	other.KeyFile = o.KeyFile // same key: only the store id tells them apart
	if so := initAndOpen(t, other); so.Close() != nil {
		t.Fatal("close")
	}
	if _, err := embedded.PlanRestore(other, backup); !errors.Is(err, embedded.ErrReplaced) {
		t.Fatalf("restoring another installation's backup = %v, want ErrReplaced", err)
	}

	rb, err := embedded.Restore(o, backup, "ops-tester")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(rb.Replaced); err != nil {
		t.Fatalf("the replaced file is not kept: %v", err)
	}
	s = mustOpen(t, o)
	w.announced = 2 // alice's phone bound again, dave's binding undone
	w.check(t, s)
	if _, err := s.GetUser(ctx, "3003/dave"); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("dave, bound after the backup, after the restore: %v", err)
	}
	evs, err := s.AuditLog().Query(ctx, pushauth.AuditQuery{Type: pushauth.AuditAdmin})
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, ev := range evs {
		outcomes = append(outcomes, ev.Outcome+" "+ev.User+" "+ev.Actor)
	}
	for _, want := range []string{"store.restored  ops-tester", "store.rollback 1001/alice ops-tester", "store.rollback 3003/dave ops-tester"} {
		if !slices.Contains(outcomes, want) {
			t.Errorf("audit after the restore lacks %q: %q", want, outcomes)
		}
	}
}

// Every change to a record of binding — an announcement queued, claimed,
// retried or acknowledged, an activation code issued, tried or used, a
// failure counted or reset, a registration or binding — is on disk when
// the call returns (one commit each, with batching held off for an hour):
// a crash right after the answer keeps it. What changes nothing writes
// nothing: the deliverer's claim when nothing is due, an acknowledgement
// of a message another delivery acknowledged, and the approval of a user
// without failures, which is on the release path of every held request.
func TestBindingRecordsAreOnDiskBeforeTheyAnswer(t *testing.T) {
	s, _ := lingeringStore(t)
	w := newWorld()
	ctx := ctxT(t)
	if err := s.PutUser(ctx, &w.users[0]); err != nil {
		t.Fatal(err)
	}
	commits := func(what string, want int64, f func() error) {
		t.Helper()
		before := s.Commits()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := s.Commits() - before; n != want {
			t.Errorf("%s committed %d transactions before it returned, want %d", what, n, want)
		}
	}
	var claimed []*pushauth.Notification
	for _, step := range []struct {
		what string
		want int64
		f    func() error
	}{
		{"registering an app", 1, func() error { return s.PutCredential(ctx, &w.unbound) }},
		{"queueing an announcement", 1, func() error { return s.EnqueueNotification(ctx, &w.queued) }},
		{"claiming it", 1, func() error {
			var err error
			claimed, err = s.ClaimNotifications(ctx, time.Now(), 10, lease)
			if err == nil && len(claimed) != 1 {
				err = fmt.Errorf("claimed %d", len(claimed))
			}
			return err
		}},
		{"a claim when nothing is due", 0, func() error {
			got, err := s.ClaimNotifications(ctx, time.Now(), 10, lease)
			if err == nil && len(got) != 0 {
				err = fmt.Errorf("claimed %d", len(got))
			}
			return err
		}},
		{"a failed delivery rescheduled", 1, func() error {
			return s.RetryNotification(ctx, w.queued.ID, claimed[0].Lease, time.Now().Add(time.Hour), "status 503")
		}},
		{"acknowledging it", 1, func() error { return s.AckNotification(ctx, w.queued.ID) }},
		{"acknowledging it again", 0, func() error { return s.AckNotification(ctx, w.queued.ID) }},
		{"issuing an activation code", 1, func() error { return s.PutActivationCode(ctx, &w.code) }},
		{"counting a wrong one", 1, func() error { _, err := s.CountActivationFailure(ctx, w.code.User, w.code.ID); return err }},
		{"using the code", 1, func() error {
			ok, err := s.TakeActivationCode(ctx, w.code.User, w.code.ID)
			if err == nil && !ok {
				err = errors.New("not taken")
			}
			return err
		}},
		{"an approval without failures", 0, func() error { return s.ResetFailures(ctx, "1001/alice", time.Now()) }},
		{"a denial counted", 1, func() error { _, _, err := s.AddFailure(ctx, "1001/alice", 5, false, time.Now()); return err }},
		{"an approval resetting it", 1, func() error { return s.ResetFailures(ctx, "1001/alice", time.Now()) }},
		{"a fraud report locking", 1, func() error { _, _, err := s.AddFailure(ctx, "1001/alice", 5, true, time.Now()); return err }},
		{"an approval of a locked user", 0, func() error { return s.ResetFailures(ctx, "1001/alice", time.Now()) }},
	} {
		commits(step.what, step.want, step.f)
	}
}

// An app registered and never bound is gone after its time, also when the
// gateway was stopped then: it reads as unknown after the restart, and the
// sweep at Start deletes it from the file. One bound before its time is
// kept.
func TestUnboundCredentialsExpireAcrossARestart(t *testing.T) {
	o := layout(t)
	s := initAndOpen(t, o)
	ctx := ctxT(t)
	expires := time.Now().Add(300 * time.Millisecond)
	unbound := pushauth.Credential{ID: "OPNEVERBOUND", Platform: "fcm", OTPSecret: "JBSWY3DPEHPK3PXP", CreatedAt: time.Now(), ExpiresAt: expires}
	bound := pushauth.Credential{ID: "OPBOUND", Platform: "fcm", OTPSecret: "JBSWY3DPEHPK3PXQ", CreatedAt: time.Now(), ExpiresAt: expires}
	for _, c := range []pushauth.Credential{unbound, bound} {
		if err := s.PutCredential(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	bound.ExpiresAt = time.Time{}
	if err := s.PutCredential(ctx, &bound); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if info, err := embedded.Inspect(o.Path); err != nil || info.Credentials != 2 {
		t.Fatalf("before its time the file holds %+v, %v; want both credentials", info, err)
	}
	time.Sleep(time.Until(expires.Add(200 * time.Millisecond)))

	s = mustOpen(t, o)
	if _, err := s.GetCredential(ctx, unbound.ID); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("the unbound credential after its time, after a restart: %v, want ErrNotFound", err)
	}
	if c, err := s.GetCredential(ctx, bound.ID); err != nil || !c.ExpiresAt.IsZero() {
		t.Fatalf("the bound credential after the restart = %+v, %v", c, err)
	}
	if err := s.Close(); err != nil { // commits the sweep queued at Start
		t.Fatal(err)
	}
	if info, err := embedded.Inspect(o.Path); err != nil || info.Credentials != 1 {
		t.Fatalf("after the sweep the file holds %+v, %v; want the bound credential only", info, err)
	}
}

// A restore rolls bindings back, never what guards against a replay or
// what the customer must still be told: a code used after the backup stays
// used, one issued after it stays valid, a security code used after it
// stays used, failures counted after it still count, announcements queued
// after it are still sent and those delivered since are not sent again;
// and the bindings it changes are announced. After a loss of the file the
// backup's codes are dropped (they may have been used since) and its
// undelivered messages are all sent.
func TestRestoreKeepsWhatGuardsAndWhatMustBeTold(t *testing.T) {
	const repudiation = "Not you? Call 0120-000-111."
	code := func(id, user string) pushauth.ActivationCode {
		return pushauth.ActivationCode{ID: id, User: user, Kind: pushauth.ActivationRecovery, Salt: []byte("salt-" + id),
			Hash: bytes.Repeat([]byte{7}, 32), IssuedAt: time.Now(), ExpiresAt: time.Now().Add(24 * time.Hour)}
	}
	heidi, ivan := code("act-heidi", "7007/heidi"), code("act-ivan", "8008/ivan")
	pre, post := notification("evt_0010pre", pushauth.EventLocked, "1001/bob"), notification("evt_0011post", pushauth.EventSuspended, "2002/carol")
	otp := "otp/" + "OPALICEPHONE" + "/123456"

	// before writes the world and what the backup holds besides: heidi's
	// code, a notification not delivered yet, frank's two failures.
	before := func(t *testing.T, s *embedded.Store) (world, string) {
		ctx := ctxT(t)
		w := newWorld()
		w.write(t, s)
		if err := s.PutActivationCode(ctx, &heidi); err != nil {
			t.Fatal(err)
		}
		if err := s.EnqueueNotification(ctx, &pre); err != nil {
			t.Fatal(err)
		}
		return w, snapshotTo(t, s)
	}

	t.Run("over the current file", func(t *testing.T) {
		o := layout(t)
		o.Repudiation = repudiation
		s := initAndOpen(t, o)
		w, backup := before(t, s)
		ctx := ctxT(t)
		// After the backup: heidi's code used, ivan's issued, two more of
		// frank's failures, a security code used, the pending message
		// delivered and another queued; alice's phone replaced, carol's
		// removed, dave bound.
		if ok, err := s.TakeActivationCode(ctx, heidi.User, heidi.ID); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if err := s.PutActivationCode(ctx, &ivan); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, _, err := s.AddFailure(ctx, w.failing, 5, false, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if ok, err := s.UseJTI(ctx, otp, time.Now().Add(time.Hour)); err != nil || !ok {
			t.Fatal(ok, err)
		}
		msgs, err := s.ClaimNotifications(ctx, time.Now(), 10, lease)
		if err != nil || len(msgs) != 1 || msgs[0].ID != pre.ID {
			t.Fatalf("claim = %+v, %v", msgs, err)
		}
		if err := s.AckNotification(ctx, pre.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.EnqueueNotification(ctx, &post); err != nil {
			t.Fatal(err)
		}
		if err := s.PutCredential(ctx, &pushauth.Credential{ID: "OPNEWPHONE", Platform: "fcm"}); err != nil {
			t.Fatal(err)
		}
		for _, u := range []pushauth.User{
			{Key: "1001/alice", CredentialID: "OPNEWPHONE", State: pushauth.UserActive, PreviousCredentialID: w.cred.ID},
			{Key: "2002/carol", State: pushauth.UserDeregistered, PreviousCredentialID: w.cred.ID},
			{Key: "3003/dave", CredentialID: w.cred.ID, State: pushauth.UserActive},
		} {
			if err := s.PutUser(ctx, &u); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		plan, err := embedded.PlanRestore(o, backup)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range plan.Changes {
			if c.Kind == "activation_code" || c.Kind == "failures" {
				got = append(got, c.Kind+" "+c.User+": "+c.Restored)
			}
		}
		want := []string{"activation_code 7007/heidi: none: not brought back", "activation_code 8008/ivan: kept", "failures 5005/frank: 4 failures kept (the backup has 2)"}
		if !slices.Equal(got, want) {
			t.Fatalf("plan for codes and failures =\n %q\nwant\n %q", got, want)
		}
		if p := plan.Outbox; p != (embedded.OutboxPlan{Kept: 2, QueuedSince: 1, Delivered: 1, Announced: 3}) {
			t.Fatalf("plan for the outbox = %+v; want 2 kept (1 queued since), 1 delivered since, 3 announcements", p)
		}
		if _, err := embedded.Restore(o, backup, "ops-tester"); err != nil {
			t.Fatal(err)
		}

		s = mustOpen(t, o)
		if u, err := s.GetUser(ctx, "1001/alice"); err != nil || u.CredentialID != w.cred.ID {
			t.Fatalf("alice after the restore = %+v, %v; want her phone of the backup", u, err)
		}
		if ok, err := s.TakeActivationCode(ctx, heidi.User, heidi.ID); err != nil || ok {
			t.Fatalf("heidi's code, used after the backup, after the restore: taken = %v, %v; want refused", ok, err)
		}
		if c, err := s.GetActivationCode(ctx, ivan.User); err != nil || c.ID != ivan.ID {
			t.Fatalf("ivan's code, issued after the backup = %+v, %v; want it kept", c, err)
		}
		if u, err := s.GetUser(ctx, w.failing); err != nil || u.Failures != 4 {
			t.Fatalf("frank after the restore = %+v, %v; want the 4 failures counted", u, err)
		}
		if ok, err := s.UseJTI(ctx, otp, time.Now().Add(time.Hour)); err != nil || ok {
			t.Fatalf("the security code used after the backup is accepted after the restore: %v, %v", ok, err)
		}
		due, err := s.ClaimNotifications(ctx, time.Now(), 10, lease)
		if err != nil {
			t.Fatal(err)
		}
		type msg struct{ typ, user, cred, prev, via, repudiation string }
		var sent []msg
		for _, m := range due {
			var b struct {
				ID, Type, User, Via, Repudiation string
				Credential                       string `json:"credential_id"`
				Previous                         string `json:"previous_credential_id"`
			}
			if err := json.Unmarshal(m.Body, &b); err != nil || b.ID != m.ID {
				t.Fatalf("message %s: body %s, %v", m.ID, m.Body, err)
			}
			if m.ID == post.ID {
				b.Repudiation = ""
			}
			sent = append(sent, msg{b.Type, b.User, b.Credential, b.Previous, b.Via, b.Repudiation})
		}
		wantSent := []msg{
			{pushauth.EventPhoneReplaced, "1001/alice", w.cred.ID, "OPNEWPHONE", "restore", repudiation},
			{pushauth.EventPhoneBound, "2002/carol", w.cred.ID, "", "restore", repudiation},
			{pushauth.EventPhoneDeregistered, "3003/dave", w.cred.ID, "", "", repudiation},
			{pushauth.EventSuspended, "2002/carol", "", "", "", ""}, // post, queued after the backup
		}
		slices.SortFunc(sent, func(a, b msg) int { return strings.Compare(a.user+a.typ, b.user+b.typ) })
		slices.SortFunc(wantSent, func(a, b msg) int { return strings.Compare(a.user+a.typ, b.user+b.typ) })
		if !slices.Equal(sent, wantSent) {
			t.Fatalf("due after the restore:\n %+v\nwant\n %+v", sent, wantSent)
		}
		for _, m := range due {
			if m.ID == pre.ID {
				t.Fatal("a message delivered after the backup is sent again")
			}
		}
	})

	t.Run("after the file was lost", func(t *testing.T) {
		o := layout(t)
		s := initAndOpen(t, o)
		_, backup := before(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(o.Path); err != nil {
			t.Fatal(err)
		}
		plan, err := embedded.PlanRestore(o, backup)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Count("activation_code") != 2 || plan.Outbox.Kept != 2 || plan.Outbox.Announced != 0 {
			t.Fatalf("plan after a loss = %+v; want the backup's 2 codes dropped and its 2 messages kept", plan)
		}
		if _, err := embedded.Restore(o, backup, "ops-tester"); err != nil {
			t.Fatal(err)
		}
		s = mustOpen(t, o)
		ctx := ctxT(t)
		if _, err := s.GetActivationCode(ctx, heidi.User); !errors.Is(err, pushauth.ErrNotFound) {
			t.Fatalf("heidi's code after restoring over a lost file: %v, want it dropped", err)
		}
		if n, err := s.NotificationBacklog(ctx); err != nil || n != 2 {
			t.Fatalf("outbox after restoring over a lost file: %d, %v; want the backup's 2", n, err)
		}
	})
}
