package pushauth_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/enrol"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// TestFullOutboxRefusesBindings: while nobody takes the outbox's messages
// and it is full, a binding (which could not be announced) is refused; a
// state change is still queued.
func TestFullOutboxRefusesBindings(t *testing.T) {
	defer pushauth.SetMaxOutbox(2)()
	store := memory.New(nil)
	defer store.Close()
	e, _ := pushauthtest.Engine(t, pushauth.Config{Store: store, Logger: pushauthtest.Quiet()})
	ctx := context.Background()
	cred := &pushauth.Credential{ID: "OPTESTCREDENTIAL", Platform: "none"}
	if err := store.PutCredential(ctx, cred); err != nil {
		t.Fatal(err)
	}
	binder := enrol.New(e)
	for _, k := range []string{"u1", "u2"} {
		if _, err := binder.Bind(ctx, k, cred.ID, "clerk"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := binder.Bind(ctx, "u3", cred.ID, "clerk"); !errors.Is(err, pushauth.ErrOutboxFull) {
		t.Fatalf("binding with a full outbox: %v, want ErrOutboxFull", err)
	}
	if u, err := store.GetUser(ctx, "u3"); err == nil && u.CredentialID != "" {
		t.Fatalf("u3 was bound without an announcement: %+v", u)
	}
	if _, err := e.Suspend(ctx, "u1", time.Now().Add(time.Hour), "clerk"); err != nil {
		t.Fatal(err)
	}
	if n, _ := store.NotificationBacklog(ctx); n != 3 {
		t.Fatalf("backlog %d, want the suspension queued past the bound", n)
	}
}

// TestDeregistrationGraceAcrossSites: with two sites' policies loaded,
// the grace an uninstall gives is the shorter one whichever site loaded
// last, and a site's policy unloaded no longer counts.
func TestDeregistrationGraceAcrossSites(t *testing.T) {
	store := memory.New(nil)
	defer store.Close()
	e, _ := pushauthtest.Engine(t, pushauth.Config{Store: store, Logger: pushauthtest.Quiet()})
	if d := e.DeregistrationGrace(time.Minute); d != time.Minute {
		t.Fatalf("no policy sets one: %s, want the fallback", d)
	}
	dropShort := e.AddPolicy(&policy.Policy{DeregistrationGrace: 24 * time.Hour})
	dropLong := e.AddPolicy(&policy.Policy{DeregistrationGrace: 72 * time.Hour})
	if d := e.DeregistrationGrace(0); d != 24*time.Hour {
		t.Fatalf("two sites: %s, want the shorter 24h (the last loaded must not win)", d)
	}
	dropShort()
	if d := e.DeregistrationGrace(0); d != 72*time.Hour {
		t.Fatalf("the short site gone: %s, want 72h", d)
	}
	dropLong()
}

// TestReconfigureChangesARunningEngine: a reload's push_rate and
// max_failures apply to the engine that keeps its held requests.
func TestReconfigureChangesARunningEngine(t *testing.T) {
	store := memory.New(nil)
	defer store.Close()
	// One minute of push budget for the whole test, whenever it runs.
	at := time.Now().Truncate(time.Minute).Add(10 * time.Second)
	cfg := pushauth.Config{Store: store, PushRate: 1, Now: func() time.Time { return at }, Logger: pushauthtest.Quiet()}
	e, err := pushauth.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	u, _, _ := pushauthtest.Phone(t, e, "1001/alice")
	spec := pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute}
	if _, err := e.Start(ctx, u, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Start(ctx, u, spec); !errors.Is(err, pushauth.ErrPushRateLimited) {
		t.Fatalf("second push under push_rate 1: %v", err)
	}
	cfg.PushRate = 3
	e.Reconfigure(cfg)
	if _, err := e.Start(ctx, u, spec); err != nil {
		t.Fatalf("push after push_rate was raised to 3: %v", err)
	}
}

// unackedFailures counts a failure but answers with an error, as a Redis
// primary does when its replicas do not acknowledge the count in time.
type unackedFailures struct{ *memory.Store }

func (s unackedFailures) AddFailure(ctx context.Context, key string, limit int, lockNow bool, at time.Time) (*pushauth.User, bool, error) {
	_, _, _ = s.Store.AddFailure(ctx, key, limit, lockNow, at)
	return nil, false, errors.New("the write was not acknowledged by enough replicas")
}

// TestUnacknowledgedLockIsAuditedAndAnnounced: a lock that AddFailure took
// although it answered an error exists all the same; it is audited and
// announced like any lock, once.
func TestUnacknowledgedLockIsAuditedAndAnnounced(t *testing.T) {
	ctx := context.Background()
	audit := memory.NewAuditLog(0, 0, nil)
	st := unackedFailures{memory.New(nil)}
	e, err := pushauth.NewEngine(pushauth.Config{Store: st, Logger: pushauthtest.Quiet(), Audit: audit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if err := st.PutUser(ctx, &pushauth.User{Key: "alice", CredentialID: "OPALICE", State: pushauth.UserActive}); err != nil {
		t.Fatal(err)
	}
	var locked []bool
	for range 6 {
		locked = append(locked, pushauth.RecordFailure(e, ctx, "alice", "wrong security code", nil))
	}
	// Reported as not locked: unacknowledged, a failover may lose the lock,
	// so no browser is told "locked" (caddymodule TestSentinelFailover).
	if want := []bool{false, false, false, false, false, false}; fmt.Sprint(locked) != fmt.Sprint(want) {
		t.Errorf("recordFailure reported %v, want %v", locked, want)
	}
	evs, err := audit.Query(ctx, pushauth.AuditQuery{User: "alice", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	lockEvents := 0
	for _, ev := range evs {
		if ev.Type == pushauth.AuditStateChange && ev.Outcome == string(pushauth.UserLocked) {
			lockEvents++
		}
	}
	msgs, err := st.ClaimNotifications(ctx, time.Now().Add(time.Hour), 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, n := range msgs {
		types = append(types, n.Type)
	}
	if lockEvents != 1 || fmt.Sprint(types) != fmt.Sprint([]string{pushauth.EventLocked}) {
		t.Errorf("the lock taken without acknowledgement: %d lock events audited, announcements %v; want 1 and [%s]", lockEvents, types, pushauth.EventLocked)
	}
}
