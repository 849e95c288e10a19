package redis

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

func newWithFile(t *testing.T, addr, prefix, file string) (*Store, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := New(ctx, Options{Addrs: []string{addr}, Prefix: prefix, EpochFile: file, Sealer: testSealer(t)})
	if err == nil {
		t.Cleanup(func() { _ = s.Close() })
	}
	return s, err
}

func bindAlice(t *testing.T, s *Store) {
	t.Helper()
	ctx := ctxT(t)
	if err := s.PutCredential(ctx, &pushauth.Credential{ID: "cred1", OTPSecret: "S"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUser(ctx, &pushauth.User{Key: "alice", CredentialID: "cred1", State: pushauth.UserActive}); err != nil {
		t.Fatal(err)
	}
}

// TestWipeWhileRunningFailsClosed: after FLUSHALL a bound user is not
// reported "not found" (which a not_enrolled: allow rule would let in) but
// fails with ErrWiped, for users and credentials alike, and the store does
// not recreate the epoch by itself.
func TestWipeWhileRunningFailsClosed(t *testing.T) {
	addr := redistest.Start(t)
	prefix := uniquePrefix()
	s := open(t, []string{addr}, prefix)
	bindAlice(t, s)
	ctx := ctxT(t)
	if _, err := s.GetUser(ctx, "alice"); err != nil {
		t.Fatalf("GetUser before the wipe: %v", err)
	}
	if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetUser of an unknown user before the wipe: %v, want ErrNotFound", err)
	}

	if err := s.client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"alice", "nobody"} {
		u, err := s.GetUser(ctx, key)
		if err == nil || errors.Is(err, pushauth.ErrNotFound) || !errors.Is(err, ErrWiped) {
			t.Fatalf("GetUser(%s) after FLUSHALL = %+v, %v; want an ErrWiped error, not ErrNotFound", key, u, err)
		}
		if !strings.Contains(err.Error(), prefix+"epoch") {
			t.Errorf("error %q does not name the epoch key", err)
		}
	}
	if _, err := s.GetCredential(ctx, "cred1"); err == nil || errors.Is(err, pushauth.ErrNotFound) || !errors.Is(err, ErrWiped) {
		t.Fatalf("GetCredential after FLUSHALL: %v; want ErrWiped, not ErrNotFound", err)
	}

	// A user bound again after the wipe is not trusted either, once the
	// background check has seen the wipe (it has: the calls above set it).
	bindAlice(t, s)
	if _, err := s.GetUser(ctx, "alice"); !errors.Is(err, ErrWiped) {
		t.Fatalf("GetUser of a user re-bound after the wipe: %v, want ErrWiped", err)
	}
	if n, err := s.client.Exists(ctx, s.epochKey()).Result(); err != nil || n != 0 {
		t.Fatalf("epoch key after the wipe: exists=%d %v; the store must not recreate it", n, err)
	}
}

// TestEpochRestoredRecovers: when the data comes back (a restore holding
// the same epoch), the store answers normally again.
func TestEpochRestoredRecovers(t *testing.T) {
	addr := redistest.Start(t)
	s := open(t, []string{addr}, uniquePrefix())
	ctx := ctxT(t)
	epoch, err := s.client.Get(ctx, s.epochKey()).Result()
	if err != nil || epoch != s.epoch {
		t.Fatalf("epoch key = %q, %v; store remembers %q", epoch, err, s.epoch)
	}
	if err := s.client.Del(ctx, s.epochKey()).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, ErrWiped) {
		t.Fatalf("GetUser with the epoch gone: %v, want ErrWiped", err)
	}
	if err := s.client.Set(ctx, s.epochKey(), "someone-elses-epoch", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, ErrWiped) {
		t.Fatalf("GetUser with another epoch: %v, want ErrWiped", err)
	}
	if err := s.client.Set(ctx, s.epochKey(), epoch, 0).Err(); err != nil {
		t.Fatal(err)
	}
	bindAlice(t, s)
	if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetUser after the epoch was restored: %v, want ErrNotFound", err)
	}
	if _, err := s.GetUser(ctx, "alice"); err != nil {
		t.Fatalf("GetUser(alice) after the epoch was restored: %v", err)
	}
}

// TestBackgroundCheckNoticesWipe: without any not-found answer, the
// periodic check notices the wipe and found records stop being trusted.
func TestBackgroundCheckNoticesWipe(t *testing.T) {
	addr := redistest.Start(t)
	s := open(t, []string{addr}, uniquePrefix())
	bindAlice(t, s)
	ctx := ctxT(t)
	if err := s.client.Del(ctx, s.epochKey()).Err(); err != nil {
		t.Fatal(err)
	}
	// alice's record is still there; only the periodic check (1/s) can
	// tell that the data is not the data the store started with.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.GetUser(ctx, "alice")
		if errors.Is(err, ErrWiped) {
			break
		}
		if err != nil {
			t.Fatalf("GetUser(alice): %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("GetUser(alice) still trusted 5s after the epoch key vanished")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEpochFile: a fresh Redis with no epoch file starts (fresh
// deployment) and records the epoch; the same Redis wiped refuses to start
// with the file, with a message naming the Redis, the old epoch and the
// file to delete; deleting the file starts fresh.
func TestEpochFile(t *testing.T) {
	addr := redistest.Start(t)
	prefix := uniquePrefix()
	file := filepath.Join(t.TempDir(), "sub", "epoch")

	s, err := newWithFile(t, addr, prefix, file)
	if err != nil {
		t.Fatalf("New on a fresh Redis: %v", err)
	}
	b, err := os.ReadFile(file)
	if err != nil || strings.TrimSpace(string(b)) != s.epoch {
		t.Fatalf("epoch file = %q, %v; want %q", b, err, s.epoch)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("epoch file mode: %v %v, want private", fi.Mode(), err)
	}
	bindAlice(t, s)
	old := s.epoch

	// A restart on intact data agrees with the file.
	s2, err := newWithFile(t, addr, prefix, file)
	if err != nil || s2.epoch != old {
		t.Fatalf("New on intact data with the file: %v (epoch %q, want %q)", err, s2.epoch, old)
	}

	ctx := ctxT(t)
	if err := s.client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = newWithFile(t, addr, prefix, file)
	if err == nil {
		t.Fatal("New on a wiped Redis with the epoch file succeeded")
	}
	for _, want := range []string{
		"redis at " + addr, "holds no onepush data", "used epoch " + old,
		"refusing to start", "every user would look not enrolled", "delete " + file + " to start fresh",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if n, _ := s.client.Exists(ctx, s.epochKey()).Result(); n != 0 {
		t.Fatal("a refused New created the epoch key")
	}

	// Another deployment's epoch in Redis: refused the same way.
	if err := s.client.Set(ctx, s.epochKey(), "0123456789abcdef", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = newWithFile(t, addr, prefix, file)
	if err == nil || !strings.Contains(err.Error(), "holds onepush epoch 0123456789abcdef") ||
		!strings.Contains(err.Error(), "used epoch "+old) || !strings.Contains(err.Error(), "delete "+file) {
		t.Fatalf("New with a different epoch in Redis: %v", err)
	}
	if err := s.client.Del(ctx, s.epochKey()).Err(); err != nil {
		t.Fatal(err)
	}

	// Without an epoch file, the wiped Redis is a fresh deployment.
	s3, err := newWithFile(t, addr, prefix, "")
	if err != nil {
		t.Fatalf("New without an epoch file on an empty Redis: %v", err)
	}
	if s3.epoch == old {
		t.Fatal("fresh deployment reused the old epoch")
	}
	if _, err := s3.GetUser(ctx, "alice"); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetUser on the fresh deployment: %v, want ErrNotFound", err)
	}
	// The instance that knew the old data still fails closed.
	if _, err := s.GetUser(ctx, "alice"); !errors.Is(err, ErrWiped) {
		t.Fatalf("old instance after another started fresh: %v, want ErrWiped", err)
	}

	// The operator accepts the loss: deleting the file starts fresh and
	// records the new epoch.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	s4, err := newWithFile(t, addr, prefix, file)
	if err != nil || s4.epoch != s3.epoch {
		t.Fatalf("New after deleting the file: %v (epoch %q, want %q)", err, s4.epoch, s3.epoch)
	}
	if b, _ := os.ReadFile(file); strings.TrimSpace(string(b)) != s3.epoch {
		t.Fatalf("epoch file after the fresh start = %q, want %q", b, s3.epoch)
	}

	// A damaged file is refused rather than overwritten.
	if err := os.WriteFile(file, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newWithFile(t, addr, prefix, file); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("New with an empty epoch file: %v, want a refusal", err)
	}
}
