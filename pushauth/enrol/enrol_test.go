package enrol_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/enrol"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
	"github.com/pquerna/otp/totp"
)

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
	b := enrol.New(e)
	dropShort := e.AddPolicy(&policy.Policy{Enrolment: short})
	dropLong := e.AddPolicy(&policy.Policy{Enrolment: long})
	ctx := context.Background()

	code, c, err := b.IssueActivationCode(ctx, "1001/alice", pushauth.ActivationRecovery, "op")
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(336 * time.Hour); !c.ExpiresAt.Equal(want) {
		t.Fatalf("recovery code valid until %s, want %s (the longest loaded policy)", c.ExpiresAt, want)
	}
	now = now.Add(100 * time.Hour)
	if _, err := enrol.CheckActivationCode(b, ctx, "1001/alice", code, short); !errors.Is(err, enrol.ErrBadActivationCode) {
		t.Fatalf("a 100 h old recovery code on the 72 h site: %v, want refused", err)
	}
	if _, err := enrol.CheckActivationCode(b, ctx, "1001/alice", code, long); err != nil {
		t.Fatalf("a 100 h old recovery code on the 336 h site: %v", err)
	}

	// The long policy unloaded: codes now follow the short one.
	dropLong()
	if _, c, err = b.IssueActivationCode(ctx, "1001/bob", pushauth.ActivationRecovery, "op"); err != nil || !c.ExpiresAt.Equal(now.Add(72*time.Hour)) {
		t.Fatalf("recovery code after the long policy went: %v %+v", err, c)
	}
	if _, c, err = b.IssueActivationCode(ctx, "1001/bob", pushauth.ActivationBinding, "op"); err != nil || !c.ExpiresAt.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("binding code: %v %+v", err, c)
	}
	dropShort()
	if _, c, err = b.IssueActivationCode(ctx, "1001/bob", pushauth.ActivationRecovery, "op"); err != nil || !c.ExpiresAt.Equal(now.Add(policy.DefaultRecoveryCodeValidity)) {
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
	b := enrol.New(e)
	_, err = b.Enroll(ctx, enrol.Attempt{User: "1001/alice", CredentialID: cred.ID, Code: code, PasswordProven: true,
		ClientIP: "198.51.100.1", Enrolment: policy.DefaultEnrolment()})
	if !errors.Is(err, enrol.ErrActivationRequired) {
		t.Fatalf("enrolment on the password alone of a user whose phone was deregistered meanwhile: %v, want %v", err, enrol.ErrActivationRequired)
	}
	if u, _ := mem.GetUser(ctx, "1001/alice"); u == nil || u.CredentialID != "" {
		t.Fatalf("alice after the refused enrolment: %+v", u)
	}
}
