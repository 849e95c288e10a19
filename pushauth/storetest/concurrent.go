package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// Several pending challenges per user under code transfer, the bound on
// them, and approve-only challenges stopping every other (pushauth's
// concurrent.go, PendingRule).

// approveOnly makes c an approve-only challenge (no code transferred).
func approveOnly(c *pushauth.Challenge) *pushauth.Challenge {
	c.CodeDigits = 0
	return c
}

// createAtOnce creates every challenge of cs concurrently and returns
// what each CreateChallenge answered.
func createAtOnce(t *testing.T, s pushauth.Store, cs []*pushauth.Challenge) ([][]string, []error) {
	ctx := ctxT(t)
	sups := make([][]string, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i := range cs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sups[i], errs[i] = s.CreateChallenge(ctx, cs[i], time.Now().Add(2*time.Minute))
		}(i)
	}
	wg.Wait()
	return sups, errs
}

func statusOf(t *testing.T, s pushauth.Store, id string) pushauth.Status {
	t.Helper()
	return mustGet(t, s, id).Status
}

func pendingIDs(t *testing.T, s pushauth.Store, cred string) []string {
	t.Helper()
	list, err := s.PendingForCredential(ctxT(t), cred)
	if err != nil {
		t.Fatalf("PendingForCredential: %v", err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

func sortedIDs(cs ...*pushauth.Challenge) []string {
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

// testConcurrentCodeTransfer: two code-transfer challenges of one user are
// pending side by side and the phone lists both; deciding one leaves the
// other pending.
func testConcurrentCodeTransfer(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	user, cred := uid("user"), uid("cred")
	first := challenge(user, cred, time.Now().Add(time.Minute))
	second := challenge(user, cred, time.Now().Add(time.Minute))
	if sup := mustCreate(t, s, first); len(sup) != 0 {
		t.Fatalf("first: superseded %q", sup)
	}
	if sup := mustCreate(t, s, second); len(sup) != 0 {
		t.Fatalf("a second code-transfer challenge superseded %q, want none", sup)
	}
	if got, want := pendingIDs(t, s, cred), sortedIDs(first, second); !slices.Equal(got, want) {
		t.Fatalf("pending %q, want both %q", got, want)
	}
	if _, err := s.Resolve(ctx, second.ID, pushauth.StatusApproved, false, time.Now()); err != nil {
		t.Fatalf("approving the second: %v", err)
	}
	if st := statusOf(t, s, first.ID); st != pushauth.StatusPending {
		t.Fatalf("approving the second left the first %s, want pending", st)
	}
	if got, want := pendingIDs(t, s, cred), sortedIDs(first); !slices.Equal(got, want) {
		t.Fatalf("pending after approving the second: %q, want %q", got, want)
	}
	if _, err := s.Resolve(ctx, first.ID, pushauth.StatusApproved, false, time.Now()); err != nil {
		t.Fatalf("approving the first: %v", err)
	}
}

// testConcurrentCodeTransferBound: a fourth pending code-transfer
// challenge is refused with ErrTooManyPending and leaves no trace; the
// three stay pending. One decided frees a place; one expired counts for
// nothing (it is superseded by the next).
func testConcurrentCodeTransferBound(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	user, cred := uid("user"), uid("cred")
	var three []*pushauth.Challenge
	for range pushauth.MaxPendingPerUser {
		c := challenge(user, cred, time.Now().Add(time.Minute))
		if sup := mustCreate(t, s, c); len(sup) != 0 {
			t.Fatalf("challenge %d superseded %q", len(three)+1, sup)
		}
		three = append(three, c)
	}
	fourth := challenge(user, cred, time.Now().Add(time.Minute))
	sup, err := s.CreateChallenge(ctx, fourth, fourth.ExpiresAt.Add(time.Minute))
	if !errors.Is(err, pushauth.ErrTooManyPending) || len(sup) != 0 {
		t.Fatalf("fourth pending challenge: superseded %q, %v; want ErrTooManyPending", sup, err)
	}
	if _, err := s.GetChallenge(ctx, fourth.ID); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("the refused challenge reads as %v, want ErrNotFound", err)
	}
	for _, c := range three {
		if st := statusOf(t, s, c.ID); st != pushauth.StatusPending {
			t.Fatalf("after the refusal %s is %s, want pending", c.ID, st)
		}
	}
	if got, want := pendingIDs(t, s, cred), sortedIDs(three...); !slices.Equal(got, want) {
		t.Fatalf("pending %q, want the three %q", got, want)
	}
	// Another user is not bounded by hers.
	if sup := mustCreate(t, s, challenge(uid("user"), cred, time.Now().Add(time.Minute))); len(sup) != 0 {
		t.Fatalf("another user's challenge superseded %q", sup)
	}
	// A decision frees a place.
	if _, err := s.Resolve(ctx, three[0].ID, pushauth.StatusDenied, false, time.Now()); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	again := challenge(user, cred, time.Now().Add(time.Minute))
	if sup := mustCreate(t, s, again); len(sup) != 0 {
		t.Fatalf("after a decision: superseded %q", sup)
	}
	// An expired one nobody resolved holds no place.
	user2 := uid("user")
	expired := challenge(user2, cred, time.Now().Add(-time.Second))
	mustCreate(t, s, expired)
	var live []*pushauth.Challenge
	for i := range pushauth.MaxPendingPerUser {
		c := challenge(user2, cred, time.Now().Add(time.Minute))
		sup, err := s.CreateChallenge(ctx, c, c.ExpiresAt.Add(time.Minute))
		if err != nil {
			t.Fatalf("live challenge %d beside an expired one: %v", i+1, err)
		}
		if i == 0 && !slices.Equal(sup, []string{expired.ID}) {
			t.Fatalf("the first live challenge superseded %q, want the expired %q", sup, expired.ID)
		}
		live = append(live, c)
	}
	if st := statusOf(t, s, expired.ID); st != pushauth.StatusSuperseded {
		t.Fatalf("expired pending challenge is %s, want superseded", st)
	}
}

// testConcurrentMixed: an approve-only challenge stops every pending one
// of its user, code transfer or not, and a code-transfer challenge stops
// a pending approve-only one (the phone cannot tell an approve-only
// prompt from the customer's). Another user's stay.
func testConcurrentMixed(t *testing.T, s pushauth.Store) {
	user, cred := uid("user"), uid("cred")
	a := challenge(user, cred, time.Now().Add(time.Minute))
	b := challenge(user, cred, time.Now().Add(time.Minute))
	others := challenge(uid("user"), cred, time.Now().Add(time.Minute))
	mustCreate(t, s, a)
	mustCreate(t, s, b)
	mustCreate(t, s, others)
	ao := approveOnly(challenge(user, cred, time.Now().Add(time.Minute)))
	sup := mustCreate(t, s, ao)
	slices.Sort(sup)
	if want := sortedIDs(a, b); !slices.Equal(sup, want) {
		t.Fatalf("an approve-only challenge superseded %q, want both code-transfer ones %q", sup, want)
	}
	for _, c := range []*pushauth.Challenge{a, b} {
		if st := statusOf(t, s, c.ID); st != pushauth.StatusSuperseded {
			t.Fatalf("%s is %s, want superseded", c.ID, st)
		}
	}
	if st := statusOf(t, s, others.ID); st != pushauth.StatusPending {
		t.Fatalf("another user's challenge is %s, want pending", st)
	}
	ct := challenge(user, cred, time.Now().Add(time.Minute))
	if sup := mustCreate(t, s, ct); !slices.Equal(sup, []string{ao.ID}) {
		t.Fatalf("a code-transfer challenge superseded %q, want the approve-only %q", sup, ao.ID)
	}
	if got, want := pendingIDs(t, s, cred), sortedIDs(ct, others); !slices.Equal(got, want) {
		t.Fatalf("pending %q, want %q", got, want)
	}
}

// testConcurrentCodeTransferRace: concurrent code-transfer challenges of
// one user: exactly MaxPendingPerUser are stored, the rest refused with
// ErrTooManyPending; none is superseded.
func testConcurrentCodeTransferRace(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	user, cred := uid("user"), uid("cred")
	const n = 12
	cs := make([]*pushauth.Challenge, n)
	for i := range cs {
		cs[i] = challenge(user, cred, time.Now().Add(time.Minute))
	}
	sups, errs := createAtOnce(t, s, cs)
	var stored []*pushauth.Challenge
	for i, err := range errs {
		switch {
		case err == nil:
			stored = append(stored, cs[i])
			if len(sups[i]) != 0 {
				t.Fatalf("challenge %d superseded %q", i, sups[i])
			}
		case errors.Is(err, pushauth.ErrTooManyPending):
			if _, err := s.GetChallenge(ctx, cs[i].ID); !errors.Is(err, pushauth.ErrNotFound) {
				t.Fatalf("refused challenge %d reads as %v", i, err)
			}
		default:
			t.Fatalf("CreateChallenge %d: %v", i, err)
		}
	}
	if len(stored) != pushauth.MaxPendingPerUser {
		t.Fatalf("%d challenges stored, want %d", len(stored), pushauth.MaxPendingPerUser)
	}
	if got, want := pendingIDs(t, s, cred), sortedIDs(stored...); !slices.Equal(got, want) {
		t.Fatalf("pending %q, want %q", got, want)
	}
}

// testPasskeyChallengeReplacesPasskey: a user's new passkey challenge (a
// reload of the waiting page) replaces her pending passkey challenge
// instead of counting toward MaxPendingPerUser, and leaves her pending
// code-transfer challenge alone.
func testPasskeyChallengeReplacesPasskey(t *testing.T, s pushauth.Store) {
	user, cred := uid("user"), uid("cred")
	code := challenge(user, cred, time.Now().Add(time.Minute))
	mustCreate(t, s, code)
	passkey := func() *pushauth.Challenge {
		c := challenge(user, cred, time.Now().Add(time.Minute))
		c.CodeDigits, c.Method = 0, pushauth.MethodPasskey
		return c
	}
	var last *pushauth.Challenge
	for i := range pushauth.MaxPendingPerUser + 2 {
		c := passkey()
		sup := mustCreate(t, s, c)
		if i == 0 && len(sup) != 0 {
			t.Fatalf("the first passkey challenge superseded %q", sup)
		}
		if i > 0 && !slices.Equal(sup, []string{last.ID}) {
			t.Fatalf("passkey challenge %d superseded %q, want only the previous one %q", i+1, sup, last.ID)
		}
		last = c
	}
	if got, want := pendingIDs(t, s, cred), sortedIDs(code, last); !slices.Equal(got, want) {
		t.Fatalf("pending %q, want the code-transfer challenge and the last passkey challenge %q", got, want)
	}
}
