package pushauth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
	"github.com/pquerna/otp/totp"
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
	for _, k := range []string{"u1", "u2"} {
		if _, err := e.Bind(ctx, k, cred.ID, "clerk"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Bind(ctx, "u3", cred.ID, "clerk"); !errors.Is(err, pushauth.ErrOutboxFull) {
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

// TestActivationCodeValidityAcrossSites: one engine serves every site of a
// Caddy. An activation code the admin API issues is valid for the longest
// validity of its kind that a loaded policy allows; a site whose policy
// allows less refuses it once it is older than that there; a policy
// unloaded no longer counts.
func TestActivationCodeValidityAcrossSites(t *testing.T) {
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := memory.New(clock)
	defer store.Close()
	e, _ := pushauthtest.Engine(t, pushauth.Config{Store: store, Now: clock, Logger: pushauthtest.Quiet()})
	short, long := policy.DefaultEnrolment(), policy.DefaultEnrolment()
	short.RecoveryCodeValidity, long.RecoveryCodeValidity = 72*time.Hour, 336*time.Hour
	short.BindingCodeValidity = 5 * time.Minute
	dropShort := e.AddPolicy(&policy.Policy{Enrolment: short})
	dropLong := e.AddPolicy(&policy.Policy{Enrolment: long})
	ctx := context.Background()

	code, c, err := e.IssueActivationCode(ctx, "1001/alice", pushauth.ActivationRecovery, "op")
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(336 * time.Hour); !c.ExpiresAt.Equal(want) {
		t.Fatalf("recovery code valid until %s, want %s (the longest loaded policy)", c.ExpiresAt, want)
	}
	now = now.Add(100 * time.Hour)
	if _, err := pushauth.CheckActivationCode(e, ctx, "1001/alice", code, short); !errors.Is(err, pushauth.ErrBadActivationCode) {
		t.Fatalf("a 100 h old recovery code on the 72 h site: %v, want refused", err)
	}
	if _, err := pushauth.CheckActivationCode(e, ctx, "1001/alice", code, long); err != nil {
		t.Fatalf("a 100 h old recovery code on the 336 h site: %v", err)
	}

	// The long policy unloaded: codes now follow the short one.
	dropLong()
	if _, c, err = e.IssueActivationCode(ctx, "1001/bob", pushauth.ActivationRecovery, "op"); err != nil || !c.ExpiresAt.Equal(now.Add(72*time.Hour)) {
		t.Fatalf("recovery code after the long policy went: %v %+v", err, c)
	}
	if _, c, err = e.IssueActivationCode(ctx, "1001/bob", pushauth.ActivationBinding, "op"); err != nil || !c.ExpiresAt.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("binding code: %v %+v", err, c)
	}
	dropShort()
	if _, c, err = e.IssueActivationCode(ctx, "1001/bob", pushauth.ActivationRecovery, "op"); err != nil || !c.ExpiresAt.Equal(now.Add(policy.DefaultRecoveryCodeValidity)) {
		t.Fatalf("recovery code with no policy loaded: %v %+v", err, c)
	}
}

// deregisterOnAnnounce is a store on which the user's phone is
// deregistered (by the bank, on another instance) just after an enrolment
// has read the user's record and while its binding is being announced.
type deregisterOnAnnounce struct {
	*memory.Store
	user string
	cred string
	once sync.Once
}

func (s *deregisterOnAnnounce) EnqueueNotification(ctx context.Context, n *pushauth.Notification) error {
	s.once.Do(func() {
		_ = s.Store.PutUser(ctx, &pushauth.User{Key: s.user, State: pushauth.UserDeregistered, PreviousCredentialID: s.cred, Until: time.Now().Add(time.Hour)})
	})
	return s.Store.EnqueueNotification(ctx, n)
}

// TestEnrolDecidesTheProofOnTheRecordItChanges: a first phone is bound with
// the password alone only if the user still never had one when the
// binding is written; a phone deregistered meanwhile makes it a
// replacement, which takes an activation code.
func TestEnrolDecidesTheProofOnTheRecordItChanges(t *testing.T) {
	mem := memory.New(nil)
	defer mem.Close()
	store := &deregisterOnAnnounce{Store: mem, user: "1001/alice", cred: "OPOLDPHONE"}
	e, _ := pushauthtest.Engine(t, pushauth.Config{Store: store, Logger: pushauthtest.Quiet()})
	_, der := pushauthtest.Key(t)
	ctx := context.Background()
	cred, err := e.RegisterCredential(ctx, der, "none", "")
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.GenerateCode(cred.OTPSecret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Enroll(ctx, pushauth.EnrolAttempt{User: "1001/alice", CredentialID: cred.ID, Code: code, PasswordProven: true,
		ClientIP: "198.51.100.1", Enrolment: policy.DefaultEnrolment()})
	if !errors.Is(err, pushauth.ErrActivationRequired) {
		t.Fatalf("enrolment on the password alone of a user whose phone was deregistered meanwhile: %v, want %v", err, pushauth.ErrActivationRequired)
	}
	if u, _ := mem.GetUser(ctx, "1001/alice"); u == nil || u.CredentialID != "" {
		t.Fatalf("alice after the refused enrolment: %+v", u)
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
