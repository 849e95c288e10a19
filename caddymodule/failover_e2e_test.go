package caddymodule_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// A Sentinel failover through two real Caddy instances in front of the
// legacy bank: one primary, one replica, three Sentinels, all real
// redis-server processes on loopback.
//
// Before the failover, with replication healthy: logins approved by
// phone, transfers approved by phone or with the security code and
// replayed with `continue`, a user locked by wrong codes, 50 logins held.
// Then replication is stalled (the replica frozen, its link filled until
// the primary buffers for it), so what the primary accepts now is exactly
// what a failover loses: a user is locked by wrong codes, a
// transfer is approved and continued, a held login is approved; then the
// rest of the held logins are approved at once and the primary is killed
// while those decisions are in flight, the replica thawed and promoted.
//
// After it: every held login got an answer, each approved one reached the
// bank exactly once, the others not at all; every decision token, every
// continue and every code used before the failover is sent again, through
// both instances, and each is refused, and the bank executes nothing more;
// the user locked before it is still locked; a new login works.
//
// With min_replicas 1 the writes of the frozen window fail closed (503,
// nothing forwarded, nobody told "locked"). With min_replicas 0 they
// succeed and are then lost: the user told "locked" in that window is not
// locked after the failover. That is the difference min_replicas makes.
func TestSentinelFailover(t *testing.T) {
	for _, minReplicas := range []int{1, 0} {
		t.Run("min_replicas "+strconv.Itoa(minReplicas), func(t *testing.T) {
			runFailover(t, minReplicas)
		})
	}
}

// failoverRig is the cast of the failover test.
type failoverRig struct {
	t      *testing.T
	e      *env
	rig    *redistest.Sentinel
	a, b   *clusterNode
	phones []*device.Phone // registered on A
	onB    []*device.Phone // the same phones talking to B
	users  []bank.User

	mu      sync.Mutex
	tokens  []usedToken // every decision token posted
	replays []usedReplay
}

type usedToken struct {
	phone *device.Phone
	id    string
	token string
}

type usedReplay struct {
	w    waitPage
	code string // "" for a continue
}

func (f *failoverRig) phoneOf(i int) *device.Phone { return f.phones[i%len(f.phones)] }

// decide signs and posts a decision for ch through p and remembers the token.
// decide posts a decision; code is the code a transfer's waiting page
// showed (code transfer), none for a held login.
func (f *failoverRig) decide(ctx context.Context, p *device.Phone, ch *device.Challenge, decision string, code ...string) int {
	tok, err := p.DecisionTokenWithCode(ch, decision, strings.Join(code, ""))
	if err != nil {
		f.t.Error(err)
		return 0
	}
	st, _, err := p.PostDecisionToken(ctx, ch.ID, tok)
	f.mu.Lock()
	f.tokens = append(f.tokens, usedToken{p, ch.ID, tok})
	f.mu.Unlock()
	if err != nil {
		return 0
	}
	return st
}

// challengeOf waits until one of the phones lists a challenge for user.
func (f *failoverRig) challengeOf(i int, not map[string]bool) *device.Challenge {
	f.t.Helper()
	return waitForNot(f.t, f.phoneOf(i), userKey(f.users[i]), not)
}

func waitForNot(t *testing.T, p *device.Phone, key string, not map[string]bool) *device.Challenge {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := p.Pending(context.Background())
		if err == nil {
			for _, ch := range list {
				if ch.Parsed.User == key && !not[ch.ID] {
					return &ch
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no challenge for %s pending after 20s (%v)", key, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// login logs user i in through g with a phone approval and returns the
// browser holding the learned session.
func (f *failoverRig) login(ctx context.Context, i int, g *clusterNode) *browser {
	f.t.Helper()
	br := newBrowser()
	res := br.postAsync(ctx, g.URL+"/login", loginBody(f.users[i]))
	ch := f.challengeOf(i, nil)
	if st := f.decide(ctx, f.phoneOf(i), ch, device.Approve); st != http.StatusOK {
		f.t.Fatalf("approving the login of %s: %d", f.users[i].UserID, st)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("login of %s: %v %v", f.users[i].UserID, r.err, r.resp)
	}
	return br
}

func runFailover(t *testing.T, minReplicas int) {
	const held = 50
	// Users: 0..49 held logins; 50..54 transfers (50, 51 approved by
	// phone, 52, 53 with the security code, 54 in the frozen window); 55
	// locked before the failover, 56 in the frozen window.
	const txn0, pauser, locker, lagger = held, held + 4, held + 5, held + 6
	users := clusterUsers(held + 7)
	e := newEnv(t, envOptions{users: users, edit: interstitialTransfers})
	rig := redistest.StartSentinel(t)
	global := redisGlobal(strings.Join(rig.Addrs(), " "), "master_name "+redistest.MasterName,
		"min_replicas "+strconv.Itoa(minReplicas), "replica_timeout 1s") + "\n\t\tmax_failures 3"
	f := &failoverRig{t: t, e: e, rig: rig, users: users}
	f.a, f.b = e.startAdminNode(t, global), e.startAdminNode(t, global)
	for range 5 {
		p := newPhone(t, f.a.gateway)
		f.phones = append(f.phones, p)
		f.onB = append(f.onB, onNode(t, p, f.b))
	}
	for i, u := range users {
		f.a.bind(t, userKey(u), f.phoneOf(i).CredentialID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// ---- before the failover, replication healthy ----
	// Transfers: approved by phone (50, 51) or by code (52, 53), continued.
	for i := txn0; i < txn0+4; i++ {
		br := f.login(ctx, i, f.a)
		w := startWait(t, ctx, br, f.b.URL+"/transfer", transferForm("5550001", "1000", users[i].TxnPassword))
		ch := f.challengeOf(i, nil)
		if i < txn0+2 {
			if st := f.decide(ctx, f.onB[i%5], ch, device.Approve, w.code); st != http.StatusOK {
				t.Fatalf("approving the transfer of %s: %d", users[i].UserID, st)
			}
			if resp, page, err := w.post(ctx, f.a.URL, "continue", nil); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("continue of %s: %v %v %.200q", users[i].UserID, err, resp, page)
			}
			f.replays = append(f.replays, usedReplay{w: w})
			continue
		}
		// The offline, transaction-bound response (a plain security code
		// approves logins only).
		code, err := f.phoneOf(i).Respond(w.ocra, "5550001", "1000")
		if err != nil {
			t.Fatal(err)
		}
		if resp, page, err := w.post(ctx, f.b.URL, "ocra", url.Values{"response": {code}}); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("security code of %s: %v %v %.200q", users[i].UserID, err, resp, page)
		}
		f.replays = append(f.replays, usedReplay{w: w, code: code}, usedReplay{w: w})
	}
	// A user locked by wrong codes.
	lockedBefore := f.lockByCodes(ctx, locker)
	if !lockedBefore {
		t.Fatalf("three wrong codes of %s did not lock", users[locker].UserID)
	}
	// The transfer to approve and the user to lock in the frozen window.
	pauserPage := startWait(t, ctx, f.login(ctx, pauser, f.b), f.a.URL+"/transfer", transferForm("5550001", "2000", users[pauser].TxnPassword))
	pauserCh := f.challengeOf(pauser, nil)
	laggerPage := startWait(t, ctx, f.login(ctx, lagger, f.a), f.a.URL+"/transfer", transferForm("5550001", "3000", users[lagger].TxnPassword))

	// 50 held logins, half through each instance.
	answers := make(map[int]<-chan result, held)
	for i := range held {
		g := f.a
		if i%2 == 1 {
			g = f.b
		}
		answers[i] = newBrowser().postAsync(ctx, g.URL+"/login", loginBody(users[i]))
	}
	chs := make([]*device.Challenge, held)
	for i := range held {
		chs[i] = f.challengeOf(i, nil)
	}
	// 20 of them approved, through either device API.
	for i := range 20 {
		p := f.phoneOf(i)
		if i%2 == 0 {
			p = f.onB[i%5]
		}
		if st := f.decide(ctx, p, chs[i], device.Approve); st != http.StatusOK {
			t.Fatalf("approving the login of %s: %d", users[i].UserID, st)
		}
	}
	for i := range 20 {
		if r := <-answers[i]; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("approved login of %s: %v %v", users[i].UserID, r.err, r.resp)
		}
		delete(answers, i)
	}
	baseline := e.ops(t)

	// ---- the frozen window: what the primary accepts now, a failover loses ----
	oldPrimary, err := rig.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replica := rig.StallReplica(ctx)
	laggerToldLocked := f.lockByCodesOn(ctx, laggerPage, f.a)
	pauserDecision := f.decide(ctx, f.phoneOf(pauser), pauserCh, device.Approve, pauserPage.code)
	resp, _, err := pauserPage.post(ctx, f.b.URL, "continue", nil)
	if err != nil {
		t.Fatal(err)
	}
	pauserContinue := resp.StatusCode
	f.replays = append(f.replays, usedReplay{w: pauserPage})
	frozenDecision := f.decide(ctx, f.phoneOf(20), chs[20], device.Approve)
	t.Logf("frozen window: lagger told locked %v, transfer approval %d and continue %d, login approval %d",
		laggerToldLocked, pauserDecision, pauserContinue, frozenDecision)

	// The rest approved one after the other, 10 ms apart; the primary dies
	// in the middle of them.
	var inflight sync.WaitGroup
	inflightStatus := make([]int, held)
	for i := 21; i < held; i++ {
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			time.Sleep(time.Duration(i-21) * 10 * time.Millisecond)
			p := f.phoneOf(i)
			if i%2 == 0 {
				p = f.onB[i%5]
			}
			inflightStatus[i] = f.decide(ctx, p, chs[i], device.Approve)
		}()
	}
	time.Sleep(120 * time.Millisecond)
	killed := time.Now()
	rig.ServerAt(oldPrimary).Kill()
	replica.Resume()
	promoted := rig.WaitFailover(oldPrimary, 60*time.Second)
	t.Logf("failover %s → %s in %s", oldPrimary, promoted, time.Since(killed).Round(time.Millisecond))
	rig.Rejoin(oldPrimary, promoted)
	inflight.Wait()

	// ---- after it ----
	// Every held login got an answer; each approved one reached the bank
	// once, the others never.
	got := map[int]int{}
	deadline := time.After(60 * time.Second)
	for i, ch := range answers {
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("held login of %s: %v", users[i].UserID, r.err)
			}
			got[i] = r.resp.StatusCode
		case <-deadline:
			t.Fatalf("held login of %s not answered 60s after the failover began (rule timeout 90s)", users[i].UserID)
		}
	}
	logins := loginsByUser(e.ops(t))
	released := 0
	for i := range held {
		st, waited := got[i]
		if !waited {
			st = http.StatusSeeOther // approved and released before the failover
		}
		want := 0
		if st == http.StatusSeeOther {
			want = 1
			released++
		} else if st != http.StatusServiceUnavailable && st != http.StatusConflict {
			t.Errorf("held login of %s answered %d, want 303, or the 503/409 page", users[i].UserID, st)
		}
		if logins[users[i].UserID] != want {
			t.Errorf("bank executed %d logins of %s whose browser got %d", logins[users[i].UserID], users[i].UserID, st)
		}
	}
	t.Logf("held logins: %d released, answers after the kill %v, in-flight decisions %v", released, statusCounts(got), statusCounts(sliceMap(inflightStatus[21:])))

	// The frozen window, and the difference min_replicas makes.
	transfers := transfersOf(e.ops(t))
	if minReplicas > 0 {
		if laggerToldLocked || pauserDecision == http.StatusOK || frozenDecision == http.StatusOK || pauserContinue == http.StatusOK {
			t.Errorf("min_replicas 1 with the replica frozen: lagger told locked %v, approvals %d/%d, continue %d; want every write refused",
				laggerToldLocked, pauserDecision, frozenDecision, pauserContinue)
		}
		if transfers[users[pauser].UserID] != 0 {
			t.Errorf("bank executed the transfer whose approval no replica acknowledged")
		}
	} else {
		if !laggerToldLocked || pauserDecision != http.StatusOK || pauserContinue != http.StatusOK {
			t.Errorf("min_replicas 0 with the replica frozen: lagger told locked %v, approval %d, continue %d; want all accepted",
				laggerToldLocked, pauserDecision, pauserContinue)
		}
		if transfers[users[pauser].UserID] != 1 {
			t.Errorf("bank executed %d transfers of the user approved in the frozen window, want 1", transfers[users[pauser].UserID])
		}
	}

	// Resend everything used before the failover, through both instances.
	before := e.ops(t)
	for _, tk := range f.tokens {
		for _, g := range []*clusterNode{f.a, f.b} {
			p := onNode(t, tk.phone, g)
			if st, body, err := p.PostDecisionToken(ctx, tk.id, tk.token); err == nil && st == http.StatusOK {
				t.Errorf("decision token for %s resent through %s after the failover: 200 %s", tk.id, g.URL, body)
			}
		}
	}
	for _, r := range f.replays {
		for _, g := range []*clusterNode{f.a, f.b} {
			action, form := "continue", url.Values(nil)
			if r.code != "" {
				action, form = "ocra", url.Values{"response": {r.code}}
			}
			resp, page, err := r.w.post(ctx, g.URL, action, form)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode == http.StatusOK {
				t.Errorf("%s of %s resent through %s after the failover: 200 %.200q", action, r.w.id, g.URL, page)
			}
		}
	}
	if after := e.ops(t); len(after) != len(before) {
		t.Errorf("the bank executed %d operations when decisions, continues and codes from before the failover were resent: %+v",
			len(after)-len(before), after[len(before):])
	}
	if n := len(f.tokens) + 2*len(f.replays); n < 60 {
		t.Fatalf("resent only %d things", n)
	}

	// Locks.
	if state, _ := f.a.userState(t, userKey(users[locker])); state != "locked" {
		t.Errorf("the user locked before the failover is %s after it", state)
	}
	laggerState, _ := f.b.userState(t, userKey(users[lagger]))
	switch {
	case minReplicas > 0 && laggerToldLocked && laggerState != "locked":
		t.Errorf("a user told \"locked\" is %s after the failover", laggerState)
	case minReplicas == 0 && laggerState == "locked":
		t.Errorf("min_replicas 0: the lock taken while the replica was frozen survived the failover; the test did not freeze replication")
	}
	t.Logf("user locked in the frozen window (told locked: %v) is %s after the failover", laggerToldLocked, laggerState)

	// Transfers before the failover: each exactly once.
	transfers = transfersOf(e.ops(t))
	for i := txn0; i < txn0+4; i++ {
		if transfers[users[i].UserID] != 1 {
			t.Errorf("bank executed %d transfers of %s, want 1", transfers[users[i].UserID], users[i].UserID)
		}
	}
	if len(opsOf(baseline, bank.OpTransfer)) != 4 {
		t.Errorf("bank transfers before the frozen window: %d, want 4", len(opsOf(baseline, bank.OpTransfer)))
	}

	// Life goes on: a refused user logs in again, through either instance.
	for i := 20; i < held; i++ {
		if st, ok := got[i]; ok && st != http.StatusSeeOther {
			res := newBrowser().postAsync(ctx, f.b.URL+"/login", loginBody(users[i]))
			ch := waitForNot(t, f.phoneOf(i), userKey(users[i]), map[string]bool{chs[i].ID: true})
			if st := f.decide(ctx, f.onB[i%5], ch, device.Approve); st != http.StatusOK {
				t.Fatalf("approval after the failover: %d", st)
			}
			if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login after the failover: %v %v", r.err, r.resp)
			}
			break
		}
	}
}

// lockByCodes logs user i in and sends three wrong responses on a transfer's
// waiting page; it reports whether the gateway said "locked".
func (f *failoverRig) lockByCodes(ctx context.Context, i int) bool {
	f.t.Helper()
	w := startWait(f.t, ctx, f.login(ctx, i, f.a), f.b.URL+"/transfer", transferForm("5550001", "500", f.users[i].TxnPassword))
	return f.lockByCodesOn(ctx, w, f.a)
}

func (f *failoverRig) lockByCodesOn(ctx context.Context, w waitPage, g *clusterNode) bool {
	f.t.Helper()
	locked := false
	for range 3 {
		// A response over another amount: wrong for this transaction.
		code, err := f.phones[0].Respond(w.ocra, "5550001", "999999")
		if err != nil {
			f.t.Fatal(err)
		}
		resp, page, err := w.post(ctx, g.URL, "ocra", url.Values{"response": {code}})
		if err != nil {
			f.t.Fatal(err)
		}
		locked = resp.StatusCode == http.StatusForbidden && strings.Contains(page, "locked")
	}
	return locked
}

func statusCounts(m map[int]int) string {
	c := map[int]int{}
	for _, st := range m {
		c[st]++
	}
	return fmt.Sprint(c)
}

func sliceMap(s []int) map[int]int {
	m := map[int]int{}
	for i, v := range s {
		m[i] = v
	}
	return m
}
