package redis

// Review 2 (issues #14/#15): attacks on the Redis store that need a real
// Sentinel rig. See the report of review-2.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/gate"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// TestRevocationsAndActivationTakesWaitForReplicas: the writes that undo
// a phone's trust (a deregistration or unbinding after a theft, a
// replacement by an activation code) and the take of a single-use
// activation code are plain SET / EVALSHA without WAIT, even with
// min_replicas 1. A Sentinel failover inside the replication window loses
// them while the same window makes AddFailure and UseJTI fail closed:
// after the failover the stolen phone is bound again (its approvals count)
// and the activation code that was used binds a second time.
func TestRevocationsAndActivationTakesWaitForReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("Sentinel rig")
	}
	rig := redistest.StartSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	s := openOnSentinel(t, ctx, rig)

	// Before: alice's phone is bound; carol has a recovery code by post.
	now := time.Now()
	stolen := &pushauth.Credential{ID: "OPSTOLEN0000000000", CreatedAt: now}
	if err := s.PutCredential(ctx, stolen); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUser(ctx, &pushauth.User{Key: "1001/alice", CredentialID: stolen.ID, State: pushauth.UserActive, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	code := &pushauth.ActivationCode{ID: "ac-carol-1", User: "3003/carol", Kind: pushauth.ActivationRecovery,
		Salt: []byte("salt"), Hash: []byte("hash"), IssuedAt: now, ExpiresAt: now.Add(72 * time.Hour)}
	if err := s.PutActivationCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	rig.WaitReplicas(mustMaster(t, rig, ctx), 1, 30*time.Second)

	// The frozen window: what the primary accepts now, a failover loses.
	old := mustMaster(t, rig, ctx)
	replica := rig.StallReplica(ctx)
	// The bank deregisters alice's stolen phone (what Engine.Deregister /
	// Uninstall store): acknowledged.
	revoked := &pushauth.User{Key: "1001/alice", State: pushauth.UserDeregistered, PreviousCredentialID: stolen.ID,
		Until: now.Add(-time.Second), UpdatedAt: time.Now()}
	revokeErr := s.PutUser(ctx, revoked)
	// Carol's recovery code is used (binding her new phone): taken.
	took, takeErr := s.TakeActivationCode(ctx, code.User, code.ID)
	// For comparison, the writes the issue lists fail closed in the same window.
	_, _, failErr := s.AddFailure(ctx, "2002/mallory", 5, false, time.Now())
	t.Logf("frozen window: deregistration err=%v, activation take %v err=%v, AddFailure err=%v", revokeErr, took, takeErr, failErr)
	if !errors.Is(failErr, ErrNotReplicated) {
		t.Fatalf("control: AddFailure with the replica frozen = %v, want ErrNotReplicated", failErr)
	}

	killed := time.Now()
	rig.ServerAt(old).Kill()
	replica.Resume()
	promoted := rig.WaitFailover(old, 60*time.Second)
	t.Logf("failover %s → %s in %s", old, promoted, time.Since(killed).Round(time.Millisecond))

	var u *pushauth.User
	var err error
	for {
		u, err = s.GetUser(ctx, "1001/alice")
		if err == nil || time.Since(killed) > 60*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GetUser after the failover: %v", err)
	}
	// The promoted replica has no replica of its own in this rig, so with
	// min_replicas 1 an acknowledged take fails closed (ErrNotReplicated,
	// binding nothing); only a take reported done counts as "again".
	again, err := s.TakeActivationCode(ctx, code.User, code.ID)
	if err != nil && !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("TakeActivationCode after the failover: %v", err)
	}
	t.Logf("after the failover: alice %+v; the activation code taken again: %v, %v", u, again, err)
	if revokeErr == nil && u.Enrolled() && u.CredentialID == stolen.ID {
		t.Errorf("the deregistration of alice's stolen phone was acknowledged (no error, no WAIT) and lost by the failover: alice is %+v, her stolen phone approves again", u)
	}
	if took && takeErr == nil && again {
		t.Errorf("carol's single-use activation code was taken before the failover (acknowledged) and is taken again after it")
	}
}

func mustMaster(t *testing.T, rig *redistest.Sentinel, ctx context.Context) string {
	t.Helper()
	m, err := rig.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const review2InterstitialPolicy = `version: 1
session: {cookie: S}
rules:
  - name: login
    kind: login
    mode: interstitial
    match: {path: {exact: /login}, fields: [user]}
    user: {template: "{form.user}"}
`

// TestStoreErrorIsNotAWrongSecurityCode: Engine.CheckCode answers false
// for a store error as for a wrong code, and the waiting page then counts
// a failure. With min_replicas 1 and the replica stalled for a few seconds
// (a hiccup, no attacker needed; or anyone who can slow the replica), the
// customer's correct security code is burnt, she is told it was wrong, and
// each retry is counted on the primary although AddFailure reports an
// error: after max_failures she is locked — without the audit event or the
// announcement a lock gets, since AddFailure's error hides it — and stays
// locked once the replica is back.
func TestStoreErrorIsNotAWrongSecurityCode(t *testing.T) {
	primary, replica := primaryWithReplica(t)
	_ = primary
	s := openAcked(t, primary.Addr(), uniquePrefix(), 1)
	audit := memory.NewAuditLog(0, 0, nil)
	eng, _ := pushauthtest.Engine(t, pushauth.Config{Store: s, Audit: audit})
	_, cred, _ := pushauthtest.Phone(t, eng, "alice")
	pol, err := policy.Parse("p.yaml", []byte(review2InterstitialPolicy))
	if err != nil {
		t.Fatal(err)
	}
	pages, err := gate.NewPages("", "/")
	if err != nil {
		t.Fatal(err)
	}
	var bankHits atomic.Int32
	g := &gate.Gate{Engine: eng, Policy: pol, Pages: pages, Log: pushauthtest.Quiet(), WaitPath: "/onepush/wait/"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = g.Route(w, r, func(w http.ResponseWriter, r *http.Request) error { bankHits.Add(1); return nil })
	}))
	t.Cleanup(srv.Close)

	resp, err := http.Post(srv.URL+"/login", "application/x-www-form-urlencoded", strings.NewReader("user=alice"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == gate.WaitCookie {
			ck = c
		}
	}
	if ck == nil {
		t.Fatalf("no waiting page: %d", resp.StatusCode)
	}
	id, _, _ := strings.Cut(ck.Value, ".")

	replica.Pause()
	resumed := false
	defer func() {
		if !resumed {
			replica.Resume()
		}
	}()
	code, err := totp.GenerateCode(cred.OTPSecret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var statuses []int
	for range 5 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/onepush/wait/"+id+"/otp", strings.NewReader(url.Values{"code": {code}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", gate.WaitCookie+"="+ck.Value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	replica.Resume()
	resumed = true
	time.Sleep(500 * time.Millisecond)
	u, err := s.GetUser(ctxT(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("her correct code typed 5 times while the replica stalled: %v; alice now %s with %d failures; bank hits %d", statuses, u.State, u.Failures, bankHits.Load())
	lockEvents := 0
	if evs, err := audit.Query(ctxT(t), pushauth.AuditQuery{User: "alice", Limit: 100}); err == nil {
		for _, ev := range evs {
			if ev.Type == pushauth.AuditStateChange && ev.Outcome == string(pushauth.UserLocked) {
				lockEvents++
			}
		}
		t.Logf("audit events of alice: %d, of them lock events: %d", len(evs), lockEvents)
	}
	if statuses[0] == http.StatusBadRequest || u.Failures > 0 || u.State == pushauth.UserLocked {
		t.Errorf("a store error was taken for a wrong security code: first answer %d (400 = \"wrong code\"; want 503), alice %s with %d failures counted (want 0, not locked), %d lock events audited",
			statuses[0], u.State, u.Failures, lockEvents)
	}
}

// TestResealLeavesNothingInClearOnDisk: `store reseal` (or the first
// touch) seals the records a previous version wrote in clear, in the
// dataset. The append-only file the README recommends still holds the
// commands that wrote them, so after the rolling upgrade "that leaves
// nothing in clear" the AOF (and every copy or backup of it, and each
// replica's) still holds the security-code secrets of every phone and the
// passwords of the stored requests until Redis happens to rewrite it
// (auto-aof-rewrite-min-size 64mb: a small deployment may never). The same
// holds for records sealed under a key that was rotated out because it
// leaked.
func TestResealLeavesNothingInClearOnDisk(t *testing.T) {
	srv := redistest.StartServer(t, "--appendonly", "yes", "--appendfsync", "always", "--aof-use-rdb-preamble", "no")
	addr := srv.Addr()
	s, rc, prefix := openWithClient(t, addr)
	ctx := ctxT(t)
	clearRecords(t, rc, s, "alice", "old1") // what the previous version wrote
	scanned, resealed, err := s.Reseal(ctx)
	if err != nil || resealed < 2 {
		t.Fatalf("Reseal: scanned %d, resealed %d, %v", scanned, resealed, err)
	}
	if leaks := leaksIn(t, rc, prefix); len(leaks) > 0 {
		t.Fatalf("control: the dataset after Reseal: %v", leaks)
	}
	var found []string
	files := 0
	err = filepath.WalkDir(srv.Dir(), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(path, "appendonly") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, l := range redistest.FindSecrets(b, otpSecret, txnSecret, heldCookie) {
			found = append(found, filepath.Base(path)+": "+l)
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("reading the AOF under %s: %d files, %v", srv.Dir(), files, err)
	}
	if len(found) > 0 {
		t.Errorf("after Reseal the dataset is sealed, but the append-only file still holds the previous version's secrets in clear: %v", found)
	}
}
