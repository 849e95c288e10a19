// Package storetest is the contract every pushauth.Store must meet: the
// in-memory store and the Redis store run the same suite.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// Run runs the contract suite. newStore must return a fresh, empty store
// for each call (the suite closes it unless a subtest already did); stores
// made by one Run may share a backend as long as they do not see each
// other's data. Options add checks a store opts into (Durable).
func Run(t *testing.T, newStore func(t *testing.T) pushauth.Store, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	mk := func(t *testing.T) pushauth.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s pushauth.Store)
	}{
		{"Credentials", testCredentials},
		{"Users", testUsers},
		{"CreateAndGetChallenge", testCreateGet},
		{"CreateSupersedes", testSupersede},
		{"CreateSupersedesExpiredPending", testSupersedeExpired},
		{"CreateSupersedeRace", testSupersedeRace},
		{"CreateDuplicateID", testDuplicateID},
		// Several code-transfer challenges of one user (concurrent.go).
		{"ConcurrentCodeTransfer", testConcurrentCodeTransfer},
		{"PasskeyChallengeReplacesPasskey", testPasskeyChallengeReplacesPasskey},
		{"ConcurrentCodeTransferBound", testConcurrentCodeTransferBound},
		{"ConcurrentMixedStopsAll", testConcurrentMixed},
		{"ConcurrentCodeTransferRace", testConcurrentCodeTransferRace},
		{"Resolve", testResolve},
		{"ResolveExactlyOnce", testResolveRace},
		{"ResolveNotifiesWatchers", testWatch},
		{"PendingForCredential", testPending},
		{"SetPushResult", testPushResult},
		{"UseJTI", testJTI},
		{"Sessions", testSessions},
		{"Expiry", testExpiry},

		// The outbox and activation codes (outbox.go, activation.go).
		{"OutboxDelivery", testOutboxDelivery},
		{"OutboxOrder", testOutboxOrder},
		{"OutboxRetry", testOutboxRetry},
		{"OutboxClaimRace", testOutboxClaimRace},
		{"ActivationCodes", testActivationCodes},
		{"ActivationRace", testActivationRace},
		{"BindingExpiry", testBindingExpiry},
		// Failure counting (failures.go).
		{"FailureCounting", testFailureCounting},
		{"FailureCountingIsAtomic", testFailureCountingIsAtomic},
		{"CompareAndPutUser", testCompareAndPutUser},
		// The push streak since the last approval (pushcap.go).
		{"PushStreak", testPushStreak},
		// A batch's rows, kept with the challenge's secrets (batch.go).
		{"BatchRows", testBatchRows},
		// Users' passkeys (passkeys.go).
		{"Passkeys", testPasskeys},
		// Admin changes under dual control (adminrequests.go).
		{"AdminRequests", testAdminRequests},
		{"AdminRequestDecidedOnce", testAdminRequestRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, mk(t))
		})
	}
	if o.reopen != nil {
		t.Run("OutboxRestart", func(t *testing.T) {
			t.Parallel()
			testOutboxRestart(t, newStore(t), o.reopen)
		})
	}
	t.Run("Close", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		stop, err := s.Watch(func(string, *pushauth.Challenge) {})
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		stop() // after Close: must not panic or block
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var idSeq atomic.Int64

// uid returns a name unique within the process, so stores that share a
// backend never collide even if a prefix is reused by mistake.
func uid(kind string) string {
	return fmt.Sprintf("%s-%d-%d", kind, time.Now().UnixNano()%1e9, idSeq.Add(1))
}

// challenge builds a pending challenge with awkward text in every free-form
// field, so an encoding round trip that alters anything shows up.
func challenge(user, cred string, expires time.Time) *pushauth.Challenge {
	now := time.Now()
	return &pushauth.Challenge{
		ID:           uid("ch"),
		UserKey:      user,
		CredentialID: cred,
		Rule:         "transfer-<big>",
		Kind:         "transfer",
		Display: []pushauth.Field{
			{Label: "Amount", Value: "1 234,56 € — «Überweisung» 💸"},
			{Label: "Payee", Value: `O'Brien & "Sons" </script> \ / ` + "\t\u2028"},
		},
		ClientIP:   "2001:db8::1",
		UserAgent:  "Mozilla/5.0 (X11; Linux) ☃",
		CodeDigits: 6,
		CreatedAt:  now,
		ExpiresAt:  expires,
		Status:     pushauth.StatusPending,
		Context:    `{"amount":"1234.56","payee":"O'Brien \"&\" Sons","nested":{"a":[1,2,{}],"e":[]},"u":"\u00fc/<>"}`,
	}
}

// norm makes records comparable with reflect.DeepEqual: times lose their
// monotonic reading and location (an encoding round trip does that).
func norm(c pushauth.Challenge) pushauth.Challenge {
	c.CreatedAt = c.CreatedAt.UTC()
	c.ExpiresAt = c.ExpiresAt.UTC()
	c.DecidedAt = c.DecidedAt.UTC()
	return c
}

func sameChallenge(t *testing.T, what string, got *pushauth.Challenge, want pushauth.Challenge) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: got nil challenge", what)
	}
	g, w := norm(*got), norm(want)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func mustGet(t *testing.T, s pushauth.Store, id string) *pushauth.Challenge {
	t.Helper()
	c, err := s.GetChallenge(ctxT(t), id)
	if err != nil {
		t.Fatalf("GetChallenge(%s): %v", id, err)
	}
	return c
}

func mustCreate(t *testing.T, s pushauth.Store, c *pushauth.Challenge) []string {
	t.Helper()
	sup, err := s.CreateChallenge(ctxT(t), c, c.ExpiresAt.Add(time.Minute))
	if err != nil {
		t.Fatalf("CreateChallenge(%s): %v", c.ID, err)
	}
	return sup
}

func testCredentials(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	id := uid("cred")
	if _, err := s.GetCredential(ctx, id); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetCredential(unknown) = %v, want ErrNotFound", err)
	}
	c := &pushauth.Credential{
		ID:        id,
		PublicKey: []byte{0x30, 0x59, 0x00, 0xff, 0x10},
		Platform:  "webhook",
		PushToken: "https://push.example/t/ä?x=1&y=<2>",
		OTPSecret: "JBSWY3DPEHPK3PXP",
		OCRAKey:   "3132333435363738393031323334353637383930313233343536373839303132",
		CreatedAt: time.Now(),
	}
	if err := s.PutCredential(ctx, c); err != nil {
		t.Fatalf("PutCredential: %v", err)
	}
	c.Platform = "mutated after Put" // the store must have copied
	got, err := s.GetCredential(ctx, id)
	if err != nil {
		t.Fatalf("GetCredential: %v", err)
	}
	want := *c
	want.Platform = "webhook"
	want.CreatedAt = want.CreatedAt.UTC()
	got.CreatedAt = got.CreatedAt.UTC()
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("GetCredential:\n got %+v\nwant %+v", *got, want)
	}

	// Overwrite.
	want.TokenDead = true
	want.PushToken = ""
	if err := s.PutCredential(ctx, &want); err != nil {
		t.Fatalf("PutCredential (overwrite): %v", err)
	}
	got, err = s.GetCredential(ctx, id)
	if err != nil {
		t.Fatalf("GetCredential: %v", err)
	}
	got.CreatedAt = got.CreatedAt.UTC()
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("GetCredential after overwrite:\n got %+v\nwant %+v", *got, want)
	}

	// Another credential is independent.
	other := &pushauth.Credential{ID: uid("cred"), Platform: "fcm"}
	if err := s.PutCredential(ctx, other); err != nil {
		t.Fatalf("PutCredential: %v", err)
	}
	if err := s.DeleteCredential(ctx, id); err != nil {
		t.Fatalf("DeleteCredential: %v", err)
	}
	if _, err := s.GetCredential(ctx, id); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetCredential after delete = %v, want ErrNotFound", err)
	}
	if _, err := s.GetCredential(ctx, other.ID); err != nil {
		t.Fatalf("GetCredential(other) after deleting the first: %v", err)
	}
	if err := s.DeleteCredential(ctx, uid("cred")); err != nil {
		t.Fatalf("DeleteCredential(unknown) = %v, want nil", err)
	}
}

func usersOf(t *testing.T, s pushauth.Store, cred string) []string {
	t.Helper()
	keys, err := s.UsersOfCredential(ctxT(t), cred)
	if err != nil {
		t.Fatalf("UsersOfCredential(%s): %v", cred, err)
	}
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return keys
}

func testUsers(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	credA, credB := uid("credA"), uid("credB")
	u1, u2, u3 := uid("u1"), uid("u2:with{brace}"), uid("u3 ü")
	if _, err := s.GetUser(ctx, u1); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetUser(unknown) = %v, want ErrNotFound", err)
	}
	if got := usersOf(t, s, credA); len(got) != 0 {
		t.Fatalf("UsersOfCredential(unused) = %v, want none", got)
	}
	user := &pushauth.User{Key: u1, CredentialID: credA, State: pushauth.UserActive, Failures: 2,
		Until: time.Now().Add(time.Hour), UpdatedAt: time.Now()}
	for _, u := range []*pushauth.User{
		user,
		{Key: u2, CredentialID: credA, State: pushauth.UserActive},
		{Key: u3, CredentialID: credB, State: pushauth.UserSuspended},
	} {
		if err := s.PutUser(ctx, u); err != nil {
			t.Fatalf("PutUser(%s): %v", u.Key, err)
		}
	}
	got, err := s.GetUser(ctx, u1)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	want := *user
	want.Until, want.UpdatedAt = want.Until.UTC(), want.UpdatedAt.UTC()
	got.Until, got.UpdatedAt = got.Until.UTC(), got.UpdatedAt.UTC()
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("GetUser:\n got %+v\nwant %+v", *got, want)
	}
	sorted := func(xs ...string) []string { slices.Sort(xs); return xs }
	if got := usersOf(t, s, credA); !slices.Equal(got, sorted(u1, u2)) {
		t.Fatalf("UsersOfCredential(A) = %q, want %q", got, sorted(u1, u2))
	}
	if got := usersOf(t, s, credB); !slices.Equal(got, []string{u3}) {
		t.Fatalf("UsersOfCredential(B) = %q, want [%q]", got, u3)
	}

	// Rebinding moves the user between credentials.
	if err := s.PutUser(ctx, &pushauth.User{Key: u1, CredentialID: credB, State: pushauth.UserActive}); err != nil {
		t.Fatalf("PutUser (rebind): %v", err)
	}
	if got := usersOf(t, s, credA); !slices.Equal(got, []string{u2}) {
		t.Fatalf("UsersOfCredential(A) after rebind = %q, want [%q]", got, u2)
	}
	if got := usersOf(t, s, credB); !slices.Equal(got, sorted(u1, u3)) {
		t.Fatalf("UsersOfCredential(B) after rebind = %q, want %q", got, sorted(u1, u3))
	}
	// A state change keeps the binding.
	if err := s.PutUser(ctx, &pushauth.User{Key: u1, CredentialID: credB, State: pushauth.UserLocked}); err != nil {
		t.Fatalf("PutUser (lock): %v", err)
	}
	if got := usersOf(t, s, credB); !slices.Equal(got, sorted(u1, u3)) {
		t.Fatalf("UsersOfCredential(B) after lock = %q, want %q", got, sorted(u1, u3))
	}
	// Unbinding removes it.
	if err := s.PutUser(ctx, &pushauth.User{Key: u1, State: pushauth.UserDeregistered}); err != nil {
		t.Fatalf("PutUser (unbind): %v", err)
	}
	if got := usersOf(t, s, credB); !slices.Equal(got, []string{u3}) {
		t.Fatalf("UsersOfCredential(B) after unbind = %q, want [%q]", got, u3)
	}
	got, err = s.GetUser(ctx, u1)
	if err != nil || got.CredentialID != "" || got.State != pushauth.UserDeregistered {
		t.Fatalf("GetUser after unbind = %+v, %v", got, err)
	}
	// Deleting a credential does not touch its users' bindings.
	if err := s.DeleteCredential(ctx, credA); err != nil {
		t.Fatalf("DeleteCredential: %v", err)
	}
	if got := usersOf(t, s, credA); !slices.Equal(got, []string{u2}) {
		t.Fatalf("UsersOfCredential(A) after DeleteCredential = %q, want [%q]", got, u2)
	}
}

func testCreateGet(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	if _, err := s.GetChallenge(ctx, uid("ch")); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetChallenge(unknown) = %v, want ErrNotFound", err)
	}
	c := challenge(uid("user"), uid("cred"), time.Now().Add(time.Minute))
	want := *c
	if sup := mustCreate(t, s, c); len(sup) != 0 {
		t.Fatalf("first CreateChallenge superseded %q, want none", sup)
	}
	c.Rule = "mutated after create" // the store must have copied
	sameChallenge(t, "GetChallenge", mustGet(t, s, want.ID), want)
}

func testSupersede(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	user, cred := uid("user"), uid("cred")
	var mu sync.Mutex
	var seen []string
	finals := map[string]*pushauth.Challenge{}
	stop, err := s.Watch(func(id string, final *pushauth.Challenge) {
		mu.Lock()
		seen = append(seen, id)
		finals[id] = final
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer stop()

	// Approve-only: a second challenge supersedes the first.
	first := approveOnly(challenge(user, cred, time.Now().Add(time.Minute)))
	other := approveOnly(challenge(uid("other-user"), cred, time.Now().Add(time.Minute)))
	mustCreate(t, s, first)
	mustCreate(t, s, other)
	before := time.Now()
	second := approveOnly(challenge(user, cred, time.Now().Add(time.Minute)))
	sup := mustCreate(t, s, second)
	after := time.Now()
	if !slices.Equal(sup, []string{first.ID}) {
		t.Fatalf("second CreateChallenge superseded %q, want %q", sup, first.ID)
	}
	got := mustGet(t, s, first.ID)
	if got.Status != pushauth.StatusSuperseded {
		t.Fatalf("first challenge is %s, want superseded", got.Status)
	}
	if got.DecidedAt.Before(before.Add(-time.Second)) || got.DecidedAt.After(after.Add(time.Second)) {
		t.Fatalf("superseded DecidedAt = %v, want about %v", got.DecidedAt, before)
	}
	want := *first
	want.Status, want.DecidedAt = pushauth.StatusSuperseded, got.DecidedAt
	sameChallenge(t, "superseded record", got, want)
	if st := mustGet(t, s, second.ID).Status; st != pushauth.StatusPending {
		t.Fatalf("second challenge is %s, want pending", st)
	}
	if st := mustGet(t, s, other.ID).Status; st != pushauth.StatusPending {
		t.Fatalf("other user's challenge is %s, want pending", st)
	}
	// A superseded challenge can no longer be decided.
	if _, err := s.Resolve(ctx, first.ID, pushauth.StatusApproved, false, time.Now()); !errors.Is(err, pushauth.ErrConflict) {
		t.Fatalf("Resolve(superseded) = %v, want ErrConflict", err)
	}
	waitFor(t, 2*time.Second, "watcher to see the superseded id", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, first.ID)
	})
	mu.Lock()
	defer mu.Unlock()
	if f := finals[first.ID]; f == nil || f.Status != pushauth.StatusSuperseded {
		t.Fatalf("watcher got final record %+v for the superseded challenge, want status superseded", f)
	}
	if slices.Contains(seen, second.ID) || slices.Contains(seen, other.ID) {
		t.Fatalf("watcher saw a pending challenge: %q", seen)
	}
}

// testSupersedeExpired: a challenge past its expiry that nobody resolved is
// still the user's pending one until it ages out, and is superseded.
func testSupersedeExpired(t *testing.T, s pushauth.Store) {
	user, cred := uid("user"), uid("cred")
	old := challenge(user, cred, time.Now().Add(-time.Second))
	mustCreate(t, s, old) // retained until expiry + 1 min
	next := challenge(user, cred, time.Now().Add(time.Minute))
	if sup := mustCreate(t, s, next); !slices.Equal(sup, []string{old.ID}) {
		t.Fatalf("CreateChallenge superseded %q, want the expired pending %q", sup, old.ID)
	}
	if st := mustGet(t, s, old.ID).Status; st != pushauth.StatusSuperseded {
		t.Fatalf("expired challenge is %s, want superseded", st)
	}
}

// testSupersedeRace: concurrent creations for one user form one chain:
// every challenge but the last is superseded exactly once, and exactly one
// stays pending.
func testSupersedeRace(t *testing.T, s pushauth.Store) {
	user, cred := uid("user"), uid("cred")
	const n = 20
	cs := make([]*pushauth.Challenge, n)
	for i := range cs {
		cs[i] = approveOnly(challenge(user, cred, time.Now().Add(time.Minute)))
	}
	sups, errs := createAtOnce(t, s, cs)
	supersededBy := map[string]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CreateChallenge %d: %v", i, err)
		}
		for _, id := range sups[i] {
			supersededBy[id]++
		}
	}
	if len(supersededBy) != n-1 {
		t.Fatalf("%d distinct challenges reported superseded, want %d", len(supersededBy), n-1)
	}
	pending := 0
	for _, c := range cs {
		st := mustGet(t, s, c.ID).Status
		switch {
		case st == pushauth.StatusPending:
			pending++
			if supersededBy[c.ID] != 0 {
				t.Fatalf("%s is pending but was reported superseded", c.ID)
			}
		case st == pushauth.StatusSuperseded:
			if supersededBy[c.ID] != 1 {
				t.Fatalf("%s is superseded but was reported %d times", c.ID, supersededBy[c.ID])
			}
		default:
			t.Fatalf("%s is %s", c.ID, st)
		}
	}
	if pending != 1 {
		t.Fatalf("%d challenges pending for one user, want 1", pending)
	}
}

func testDuplicateID(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	c := challenge(uid("user"), uid("cred"), time.Now().Add(time.Minute))
	mustCreate(t, s, c)
	dup := *c
	dup.UserKey = uid("someone-else")
	dup.Rule = "dup"
	if _, err := s.CreateChallenge(ctx, &dup, time.Now().Add(time.Hour)); !errors.Is(err, pushauth.ErrExists) {
		t.Fatalf("CreateChallenge(duplicate id) = %v, want ErrExists", err)
	}
	if got := mustGet(t, s, c.ID); got.Rule != c.Rule || got.UserKey != c.UserKey {
		t.Fatalf("duplicate overwrote the record: %+v", got)
	}
}

func testResolve(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	user, cred := uid("user"), uid("cred")
	if _, err := s.Resolve(ctx, uid("ch"), pushauth.StatusApproved, false, time.Now()); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("Resolve(unknown) = %v, want ErrNotFound", err)
	}
	c := approveOnly(challenge(user, cred, time.Now().Add(time.Minute)))
	mustCreate(t, s, c)
	at := time.Now().Add(3 * time.Second)
	got, err := s.Resolve(ctx, c.ID, pushauth.StatusDenied, true, at)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	want := *c
	want.Status, want.Fraud, want.DecidedAt = pushauth.StatusDenied, true, at
	sameChallenge(t, "Resolve result", got, want)
	sameChallenge(t, "GetChallenge after Resolve", mustGet(t, s, c.ID), want)

	// A second decision conflicts and reports the first.
	cur, err := s.Resolve(ctx, c.ID, pushauth.StatusApproved, false, time.Now())
	if !errors.Is(err, pushauth.ErrConflict) {
		t.Fatalf("second Resolve = %v, want ErrConflict", err)
	}
	sameChallenge(t, "second Resolve's current record", cur, want)

	// Resolving cleared the user's pending slot: nothing to supersede.
	next := approveOnly(challenge(user, cred, time.Now().Add(time.Minute)))
	if sup := mustCreate(t, s, next); len(sup) != 0 {
		t.Fatalf("CreateChallenge after Resolve superseded %q, want none", sup)
	}
	// Without fraud.
	got, err = s.Resolve(ctx, next.ID, pushauth.StatusApproved, false, at)
	if err != nil || got.Status != pushauth.StatusApproved || got.Fraud {
		t.Fatalf("Resolve(approved) = %+v, %v", got, err)
	}
}

func testResolveRace(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	c := challenge(uid("user"), uid("cred"), time.Now().Add(time.Minute))
	mustCreate(t, s, c)
	statuses := []pushauth.Status{pushauth.StatusApproved, pushauth.StatusDenied, pushauth.StatusCancelled, pushauth.StatusExpired}
	const n = 50
	type result struct {
		c   *pushauth.Challenge
		err error
		to  pushauth.Status
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			to := statuses[i%len(statuses)]
			<-start
			got, err := s.Resolve(ctx, c.ID, to, false, time.Now())
			results[i] = result{got, err, to}
		}(i)
	}
	close(start)
	wg.Wait()
	var winner *result
	for i := range results {
		r := &results[i]
		switch {
		case r.err == nil:
			if winner != nil {
				t.Fatalf("two Resolves succeeded: %s and %s", winner.to, r.to)
			}
			winner = r
		case errors.Is(r.err, pushauth.ErrConflict):
		default:
			t.Fatalf("Resolve: %v", r.err)
		}
	}
	if winner == nil {
		t.Fatal("no Resolve succeeded")
	}
	if winner.c.Status != winner.to {
		t.Fatalf("winner's record says %s, it asked for %s", winner.c.Status, winner.to)
	}
	for _, r := range results {
		if r.err != nil && (r.c == nil || r.c.Status != winner.to || !r.c.DecidedAt.Equal(winner.c.DecidedAt)) {
			t.Fatalf("loser got %+v, want the winner's record (%s)", r.c, winner.to)
		}
	}
	if st := mustGet(t, s, c.ID).Status; st != winner.to {
		t.Fatalf("stored status %s, winner %s", st, winner.to)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testWatch(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	type note struct {
		id     string
		status pushauth.Status // read back inside the callback
	}
	var mu sync.Mutex
	var a []note
	var b []string
	var bFinal []*pushauth.Challenge
	stopA, err := s.Watch(func(id string, _ *pushauth.Challenge) {
		// A watcher may call back into the store, and sees the decision.
		c, err := s.GetChallenge(ctx, id)
		st := pushauth.Status("error: " + fmt.Sprint(err))
		if err == nil {
			st = c.Status
		}
		mu.Lock()
		a = append(a, note{id, st})
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer stopA()
	stopB, err := s.Watch(func(id string, final *pushauth.Challenge) {
		mu.Lock()
		b = append(b, id)
		bFinal = append(bFinal, final)
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}

	c := challenge(uid("user"), uid("cred"), time.Now().Add(time.Minute))
	mustCreate(t, s, c)
	if _, err := s.Resolve(ctx, c.ID, pushauth.StatusApproved, false, time.Now()); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	waitFor(t, 2*time.Second, "both watchers to see the resolution", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(a) > 0 && len(b) > 0
	})
	mu.Lock()
	if a[0] != (note{c.ID, pushauth.StatusApproved}) || b[0] != c.ID {
		mu.Unlock()
		t.Fatalf("watchers saw %+v and %q, want %s approved", a, b, c.ID)
	}
	// The final record comes with the notification, so a held request is
	// released without reading the store again.
	if f := bFinal[0]; f == nil || f.ID != c.ID || f.Status != pushauth.StatusApproved || f.UserKey != c.UserKey || f.DecidedAt.IsZero() {
		mu.Unlock()
		t.Fatalf("watcher got final record %+v, want %s approved for %s", f, c.ID, c.UserKey)
	}
	mu.Unlock()

	// A conflicting Resolve changes nothing and need not notify; a stopped
	// watcher hears nothing more.
	stopB()
	stopB() // idempotent
	c2 := challenge(uid("user"), uid("cred"), time.Now().Add(time.Minute))
	mustCreate(t, s, c2)
	if _, err := s.Resolve(ctx, c2.ID, pushauth.StatusCancelled, false, time.Now()); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	waitFor(t, 2*time.Second, "the remaining watcher to see the second resolution", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(a, func(n note) bool { return n.id == c2.ID })
	})
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if slices.Contains(b, c2.ID) {
		t.Fatalf("stopped watcher was called with %s", c2.ID)
	}
}

func testPending(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	credA, credB := uid("credA"), uid("credB")
	live := time.Now().Add(time.Minute)
	c1 := challenge(uid("user1"), credA, live)
	cExpired := challenge(uid("user2"), credA, time.Now().Add(-time.Second))
	cResolved := challenge(uid("user3"), credA, live)
	cOther := challenge(uid("user4"), credB, live)
	user5 := uid("user5")
	cSuperseded := approveOnly(challenge(user5, credA, live))
	c6 := challenge(user5, credA, live)
	for _, c := range []*pushauth.Challenge{c1, cExpired, cResolved, cOther, cSuperseded, c6} {
		mustCreate(t, s, c)
	}
	if _, err := s.Resolve(ctx, cResolved.ID, pushauth.StatusApproved, false, time.Now()); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	got, err := s.PendingForCredential(ctx, credA)
	if err != nil {
		t.Fatalf("PendingForCredential: %v", err)
	}
	byID := map[string]*pushauth.Challenge{}
	for _, c := range got {
		byID[c.ID] = c
	}
	if len(got) != 2 || byID[c1.ID] == nil || byID[c6.ID] == nil {
		ids := make([]string, 0, len(got))
		for _, c := range got {
			ids = append(ids, c.ID)
		}
		t.Fatalf("PendingForCredential(A) = %q, want [%s %s]", ids, c1.ID, c6.ID)
	}
	sameChallenge(t, "pending record", byID[c1.ID], *c1)
	got, err = s.PendingForCredential(ctx, credB)
	if err != nil || len(got) != 1 || got[0].ID != cOther.ID {
		t.Fatalf("PendingForCredential(B) = %v, %v; want [%s]", got, err, cOther.ID)
	}
	got, err = s.PendingForCredential(ctx, uid("cred"))
	if err != nil || len(got) != 0 {
		t.Fatalf("PendingForCredential(unused) = %v, %v; want none", got, err)
	}
	// Deciding takes it off the list.
	if _, err := s.Resolve(ctx, c1.ID, pushauth.StatusDenied, false, time.Now()); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	got, err = s.PendingForCredential(ctx, credA)
	if err != nil || len(got) != 1 || got[0].ID != c6.ID {
		t.Fatalf("PendingForCredential(A) after Resolve = %v, %v; want [%s]", got, err, c6.ID)
	}
}

func testPushResult(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	if err := s.SetPushResult(ctx, uid("ch"), "sent"); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("SetPushResult(unknown) = %v, want ErrNotFound", err)
	}
	c := challenge(uid("user"), uid("cred"), time.Now().Add(time.Minute))
	mustCreate(t, s, c)
	if err := s.SetPushResult(ctx, c.ID, "sent: 200 «ok»"); err != nil {
		t.Fatalf("SetPushResult: %v", err)
	}
	want := *c
	want.PushResult = "sent: 200 «ok»"
	sameChallenge(t, "after SetPushResult", mustGet(t, s, c.ID), want)

	at := time.Now()
	if _, err := s.Resolve(ctx, c.ID, pushauth.StatusApproved, false, at); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	// A late push result does not undo the decision.
	if err := s.SetPushResult(ctx, c.ID, "failed: token dead"); err != nil {
		t.Fatalf("SetPushResult after Resolve: %v", err)
	}
	want.PushResult, want.Status, want.DecidedAt = "failed: token dead", pushauth.StatusApproved, at
	sameChallenge(t, "after Resolve and SetPushResult", mustGet(t, s, c.ID), want)
}

func testJTI(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	jti := uid("otp/cred/123456")
	until := time.Now().Add(time.Minute)
	for i, want := range []bool{true, false, false} {
		ok, err := s.UseJTI(ctx, jti, until)
		if err != nil || ok != want {
			t.Fatalf("UseJTI #%d = %v, %v; want %v", i+1, ok, err, want)
		}
	}
	if ok, err := s.UseJTI(ctx, uid("jti"), until); err != nil || !ok {
		t.Fatalf("UseJTI(other) = %v, %v; want true", ok, err)
	}

	shared := uid("jti")
	const n = 50
	var wins atomic.Int32
	for _, ok := range atOnce(t, n, "UseJTI", func() (bool, error) { return s.UseJTI(ctx, shared, until) }) {
		if ok {
			wins.Add(1)
		}
	}
	if w := wins.Load(); w != 1 {
		t.Fatalf("%d concurrent UseJTI calls accepted one jti, want 1", w)
	}
}

func testSessions(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	h := uid("sess")
	if _, err := s.GetSession(ctx, h); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetSession(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.PutSession(ctx, h, "alice ü", time.Hour); err != nil {
		t.Fatalf("PutSession: %v", err)
	}
	if got, err := s.GetSession(ctx, h); err != nil || got != "alice ü" {
		t.Fatalf("GetSession = %q, %v; want alice ü", got, err)
	}
	if err := s.PutSession(ctx, h, "bob", time.Hour); err != nil {
		t.Fatalf("PutSession (overwrite): %v", err)
	}
	if got, err := s.GetSession(ctx, h); err != nil || got != "bob" {
		t.Fatalf("GetSession after overwrite = %q, %v; want bob", got, err)
	}
	other := uid("sess")
	if err := s.PutSession(ctx, other, "carol", time.Hour); err != nil {
		t.Fatalf("PutSession: %v", err)
	}
	if err := s.DeleteSession(ctx, h); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	if _, err := s.GetSession(ctx, h); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetSession after delete = %v, want ErrNotFound", err)
	}
	if got, err := s.GetSession(ctx, other); err != nil || got != "carol" {
		t.Fatalf("GetSession(other) = %q, %v; want carol", got, err)
	}
	if err := s.DeleteSession(ctx, uid("sess")); err != nil {
		t.Fatalf("DeleteSession(unknown) = %v, want nil", err)
	}

	// A pending-login mark ("<nonce>\x00<user key>") keeps every byte.
	mark := uid("sess")
	if err := s.PutSession(ctx, mark, "n0nce\x00alice ü", time.Hour); err != nil {
		t.Fatalf("PutSession (mark): %v", err)
	}
	if got, err := s.GetSession(ctx, mark); err != nil || got != "n0nce\x00alice ü" {
		t.Fatalf("GetSession (mark) = %q, %v; want the NUL kept", got, err)
	}
}

// testExpiry waits out short lifetimes for real (about one second).
func testExpiry(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	const life = 300 * time.Millisecond
	now := time.Now()
	sess, jti := uid("sess"), uid("jti")
	if err := s.PutSession(ctx, sess, "alice", life); err != nil {
		t.Fatalf("PutSession: %v", err)
	}
	if ok, err := s.UseJTI(ctx, jti, now.Add(life)); err != nil || !ok {
		t.Fatalf("UseJTI = %v, %v", ok, err)
	}
	cred := uid("cred")
	c := challenge(uid("user"), cred, now.Add(life/2))
	if _, err := s.CreateChallenge(ctx, c, now.Add(life)); err != nil {
		t.Fatalf("CreateChallenge: %v", err)
	}
	longSess := uid("sess")
	if err := s.PutSession(ctx, longSess, "bob", time.Minute); err != nil {
		t.Fatalf("PutSession: %v", err)
	}
	// Still there right away.
	if _, err := s.GetSession(ctx, sess); err != nil {
		t.Fatalf("GetSession before expiry: %v", err)
	}
	if ok, _ := s.UseJTI(ctx, jti, now.Add(life)); ok {
		t.Fatal("UseJTI accepted a used jti before its expiry")
	}
	if _, err := s.GetChallenge(ctx, c.ID); err != nil {
		t.Fatalf("GetChallenge before retainUntil: %v", err)
	}

	time.Sleep(time.Until(now.Add(life + 500*time.Millisecond)))

	if _, err := s.GetSession(ctx, sess); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetSession after its TTL = %v, want ErrNotFound", err)
	}
	if got, err := s.GetSession(ctx, longSess); err != nil || got != "bob" {
		t.Fatalf("GetSession(long-lived) = %q, %v", got, err)
	}
	if ok, err := s.UseJTI(ctx, jti, time.Now().Add(time.Minute)); err != nil || !ok {
		t.Fatalf("UseJTI after the first use expired = %v, %v; want true", ok, err)
	}
	if _, err := s.GetChallenge(ctx, c.ID); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetChallenge after retainUntil = %v, want ErrNotFound", err)
	}
	if got, err := s.PendingForCredential(ctx, cred); err != nil || len(got) != 0 {
		t.Fatalf("PendingForCredential after expiry = %v, %v; want none", got, err)
	}
}

// atOnce makes n calls of f at the same moment and returns their answers;
// a call that fails (op names it) fails the test once all have returned.
func atOnce[T any](t *testing.T, n int, op string, f func() (T, error)) []T {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		out  []T
		errs []error
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			v, err := f()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out = append(out, v)
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d %s calls failed: %v", len(errs), n, op, errs[0])
	}
	return out
}
