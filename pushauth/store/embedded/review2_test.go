package embedded_test

// Review 2 (issue #15): attacks on the embedded store. See the report of
// review-2.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/embedded"
)

// review2Child is the gateway of TestOlderCopyIsRefusedAfterAnUncleanStop
// in a process of its own: it opens the store (the identity file records
// the generation it starts at), takes a backup as `caddy onepush store
// backup` would, then the bank deregisters alice's stolen phone and locks
// bob (both durable, on disk before they answer); it says so and waits to
// be killed.
func TestReview2Child(t *testing.T) {
	dir := os.Getenv("REVIEW2_EMBEDDED_CHILD")
	if dir == "" {
		t.Skip("child process of TestOlderCopyIsRefusedAfterAnUncleanStop")
	}
	o := childLayout(dir)
	s, err := embedded.Open(o)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	// The backup, as `caddy onepush store backup` writes it (into dir, not
	// a TempDir: this process is killed and cleans nothing up).
	f, _, err := s.Snapshot(context.Background())
	if err != nil {
		fmt.Println("snapshot:", err)
		os.Exit(1)
	}
	b, err := io.ReadAll(f)
	_ = f.Close()
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "backup-0900.db"), b, 0o600)
	}
	if err != nil {
		fmt.Println("backup:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	if err := s.PutUser(ctx, &pushauth.User{Key: "1001/alice", State: pushauth.UserDeregistered,
		PreviousCredentialID: "OPALICEPHONE", UpdatedAt: time.Now().UTC()}); err != nil {
		fmt.Println("deregister:", err)
		os.Exit(1)
	}
	if _, locked, err := s.AddFailure(ctx, "1001/dave", 5, true, time.Now()); err != nil || !locked {
		fmt.Println("lock:", locked, err)
		os.Exit(1)
	}
	fmt.Println("written")
	time.Sleep(time.Minute)
	os.Exit(3)
}

// TestOlderCopyIsRefusedAfterAnUncleanStop: the identity file records the
// generation only at start and at a clean stop. After a crash (SIGKILL, OOM,
// power loss) it still holds the generation of the last start, so any copy
// of the file taken since that start — a backup made an hour before a
// theft — put back by hand is taken for the current file: the gateway
// starts without a word and the revocation made after the backup (alice's
// stolen phone) and a lock are undone. The threat model claims an older
// copy put back by hand is refused; only `store restore` should roll back.
func TestOlderCopyIsRefusedAfterAnUncleanStop(t *testing.T) {
	crashAfterRevocation := func(t *testing.T) embedded.Options {
		dir := t.TempDir()
		o := childLayout(dir)
		s := initAndOpen(t, o)
		newWorld().write(t, s) // alice bound to OPALICEPHONE
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		runReview2Child(t, dir)
		return o
	}

	t.Run("control: the crash itself lost nothing", func(t *testing.T) {
		o := crashAfterRevocation(t)
		s := mustOpen(t, o)
		if u, err := s.GetUser(ctxT(t), "1001/alice"); err != nil || u.Enrolled() {
			t.Fatalf("alice after the crash = %+v, %v; want deregistered", u, err)
		}
	})

	t.Run("the backup from before the theft put back by hand", func(t *testing.T) {
		o := crashAfterRevocation(t)
		// The operator (or anyone who can write the data directory) puts the
		// backup taken before the theft back by hand instead of `store restore`.
		copyFile(t, filepath.Join(filepath.Dir(filepath.Dir(o.Path)), "backup-0900.db"), o.Path)
		s, err := embedded.Open(o)
		if errors.Is(err, embedded.ErrReplaced) {
			return // refused: the defence holds
		}
		if err != nil {
			t.Fatalf("Open on the older copy: %v", err)
		}
		defer s.Close()
		u, _ := s.GetUser(ctxT(t), "1001/alice")
		d, _ := s.GetUser(ctxT(t), "1001/dave")
		t.Errorf("an older copy put back by hand after an unclean stop was accepted silently: alice %+v (her stolen phone bound again), dave %+v (his lock gone)", u, d)
	})
}

// runReview2Child runs TestReview2Child on dir and SIGKILLs it once it has
// written.
func runReview2Child(t *testing.T, dir string) {
	t.Helper()
	killChildOnceWritten(t, "^TestReview2Child$", "REVIEW2_EMBEDDED_CHILD="+dir)
}

// pausingStore stops the engine right after its read of one user's record
// (the read of a read-modify-write), so the test can run what another
// request or instance does in that window.
type pausingStore struct {
	*embedded.Store
	user       string
	armed      atomic.Bool
	read, goOn chan struct{}
}

func (p *pausingStore) GetUser(ctx context.Context, key string) (*pushauth.User, error) {
	u, err := p.Store.GetUser(ctx, key)
	if key == p.user && p.armed.CompareAndSwap(true, false) {
		p.read <- struct{}{}
		<-p.goOn
	}
	return u, err
}

// TestAdminChangeDoesNotUndoALock: the engine's admin changes, enrolment
// and uninstall write the whole user record they read (updateUser →
// PutUser), under a lock of this process only, while failures are counted
// by the store's own atomic step (AddFailure), which takes no part in that
// lock. A lock taken between the read and the write is overwritten: here
// the bank suspends alice ("password only until …", which a locked user
// may not be given) while someone types wrong security codes for her; the
// five failures lock her, and the suspension written a moment later turns
// the lock into password-only access with her failure count cleared.
func TestAdminChangeDoesNotUndoALock(t *testing.T) {
	o := layout(t)
	s := initAndOpen(t, o)
	ctx := ctxT(t)
	cred := &pushauth.Credential{ID: "OPALICEPHONE", OTPSecret: "KVKFKRCPNZQUYMLXOVYDSQKJKZDTSRLD", CreatedAt: time.Now()}
	if err := s.PutCredential(ctx, cred); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUser(ctx, &pushauth.User{Key: "1001/alice", CredentialID: cred.ID, State: pushauth.UserActive}); err != nil {
		t.Fatal(err)
	}
	ps := &pausingStore{Store: s, user: "1001/alice", read: make(chan struct{}), goOn: make(chan struct{})}
	eng, err := pushauth.NewEngine(pushauth.Config{Store: ps, Audit: s.AuditLog(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })

	ps.armed.Store(true)
	type result struct {
		u   *pushauth.User
		err error
	}
	done := make(chan result, 1)
	go func() {
		u, err := eng.Suspend(ctx, "1001/alice", time.Now().Add(24*time.Hour), "clerk")
		done <- result{u, err}
	}()
	<-ps.read
	var locked bool
	for range 5 {
		_, l, err := s.AddFailure(ctx, "1001/alice", 5, false, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		locked = locked || l
	}
	if !locked {
		t.Fatal("control: five failures did not lock alice")
	}
	close(ps.goOn)
	r := <-done
	u, err := s.GetUser(ctx, "1001/alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("suspend: %v; alice now %s with %d failures", r.err, u.State, u.Failures)
	if u.State != pushauth.UserLocked {
		t.Errorf("the lock taken by five failures was overwritten by an admin change that read the record before it: alice is %s with %d failures (suspend answered %v)", u.State, u.Failures, r.err)
	}
}
