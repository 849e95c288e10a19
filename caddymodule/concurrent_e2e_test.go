package caddymodule_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// pendingBesides waits until the phone lists a pending challenge other
// than those in known, and returns it.
func pendingBesides(t *testing.T, phone *device.Phone, known ...*device.Challenge) *device.Challenge {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		list, err := phone.Pending(context.Background())
		if err != nil {
			t.Fatal(err)
		}
	next:
		for i := range list {
			for _, k := range known {
				if list[i].ID == k.ID {
					continue next
				}
			}
			return &list[i]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the phone lists no challenge besides %d known", len(known))
	return nil
}

// pendingIDs is the set of challenges the phone lists now.
func pendingIDs(t *testing.T, phone *device.Phone) map[string]bool {
	t.Helper()
	list, err := phone.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, c := range list {
		ids[c.ID] = true
	}
	return ids
}

// TestConcurrentCodeTransferLogins: alice signs in from two browsers at
// once under code transfer (the login rule on a waiting page). Each page
// shows its own code and both prompts wait on her phone; the code she
// types decides which login goes through: the second browser's code
// releases only the second browser's login, into that browser, and the
// first keeps waiting until its own code approves it. A code typed into
// the wrong prompt is a failure: that login is refused and counted, the
// other still waits. A fourth login while three wait is refused (429),
// never slipped in in place of one.
func TestConcurrentCodeTransferLogins(t *testing.T) {
	e := newEnv(t, envOptions{edit: interstitialLogins})
	n := e.startAdminNode(t, "\t\tpush_rate 60")
	g := n.gateway
	phone := newPhone(t, g)
	enroll(t, g, alice, phone)
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Two browser contexts: two browsers with their own cookies.
	first := newChrome(t)
	second, closeSecond := chromedp.NewContext(first, chromedp.WithNewBrowserContext())
	t.Cleanup(closeSecond)
	login := func(b context.Context) string {
		t.Helper()
		if err := submitLogin(b, g.URL, alice); err != nil {
			t.Fatal(err)
		}
		return shownCode(t, b)
	}

	t.Run("the code decides which login goes through", func(t *testing.T) {
		codeA := login(first)
		chA := waitChallenge(t, phone)
		codeB := login(second)
		chB := pendingBesides(t, phone, chA)
		screenshot(t, second, "concurrent-second-browser")
		if ids := pendingIDs(t, phone); len(ids) != 2 || !ids[chA.ID] || !ids[chB.ID] {
			t.Fatalf("the phone lists %v, want both logins", ids)
		}
		if n := len(e.ops(t)); n != 0 {
			t.Fatalf("the bank saw %d operations while both pages wait", n)
		}
		// She types the second browser's code into its prompt.
		if st, err := phone.DecideWithCode(ctx, chB, device.Approve, codeB); err != nil || st != http.StatusOK {
			t.Fatalf("approving the second login with its code: %d %v", st, err)
		}
		if err := waitText(second, "Welcome"); err != nil {
			t.Fatalf("the second browser did not get its session: %v", err)
		}
		if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 || logins[0].UserID != alice.UserID {
			t.Fatalf("bank logins %+v, want exactly the second browser's", logins)
		}
		// The first still waits, without a session, its prompt pending.
		if ids := pendingIDs(t, phone); len(ids) != 1 || !ids[chA.ID] {
			t.Fatalf("after approving the second the phone lists %v, want the first's prompt", ids)
		}
		if in, err := chromedp.Run(first, chromedp.Evaluate[bool](`document.body.innerText.includes("Welcome") || !document.querySelector("#code")`)); err != nil || in {
			t.Fatalf("the first browser left its waiting page when the second was approved (%v)", err)
		}
		// Then the first browser's code approves the first.
		if st, err := phone.DecideWithCode(ctx, chA, device.Approve, codeA); err != nil || st != http.StatusOK {
			t.Fatalf("approving the first login with its code: %d %v", st, err)
		}
		if err := waitText(first, "Welcome"); err != nil {
			t.Fatalf("the first browser did not get its session: %v", err)
		}
		if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 2 {
			t.Fatalf("bank logins %+v, want the two approved, once each", logins)
		}
	})

	t.Run("a code typed into the other prompt is a failure", func(t *testing.T) {
		e.resetOps(t)
		login(first)
		chC := pendingBesides(t, phone)
		codeD := login(second)
		chD := pendingBesides(t, phone, chC)
		// The second browser's code typed into the first browser's prompt.
		if st, err := phone.DecideWithCode(ctx, chC, device.Approve, codeD); err != nil || st != http.StatusOK {
			t.Fatalf("decision with the other browser's code: %d %v", st, err)
		}
		if err := waitText(first, "The code did not match"); err != nil {
			t.Fatalf("the first browser was not told: %v", err)
		}
		if _, failures := n.userState(t, userKey(alice)); failures != 1 {
			t.Fatalf("failures after a code typed into the wrong prompt: %d, want 1", failures)
		}
		if n := len(e.ops(t)); n != 0 {
			t.Fatalf("the bank saw %d operations after a wrong code", n)
		}
		if ids := pendingIDs(t, phone); len(ids) != 1 || !ids[chD.ID] {
			t.Fatalf("after the wrong code the phone lists %v, want the second's prompt", ids)
		}
		if st, err := phone.DecideWithCode(ctx, chD, device.Approve, codeD); err != nil || st != http.StatusOK {
			t.Fatalf("the second's own code: %d %v", st, err)
		}
		if err := waitText(second, "Welcome"); err != nil {
			t.Fatal(err)
		}
		if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 {
			t.Fatalf("bank logins %+v, want the second's only", logins)
		}
	})

	t.Run("a fourth login while three wait is refused", func(t *testing.T) {
		e.resetOps(t)
		var waiting []waitPage
		for range 3 {
			waiting = append(waiting, startWait(t, ctx, newBrowser(), g.URL+"/login", loginBody(alice)))
		}
		resp, page, err := newBrowser().post(ctx, g.URL+"/login", loginBody(alice))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(page, "Too many requests are waiting for approval") {
			t.Fatalf("fourth login: %d %.300q, want 429 and the busy page", resp.StatusCode, page)
		}
		ids := pendingIDs(t, phone)
		for _, w := range waiting {
			if !ids[w.id] {
				t.Fatalf("after the fourth the phone lists %v, want the three waiting (%s missing)", ids, w.id)
			}
		}
		if len(ids) != 3 {
			t.Fatalf("the phone lists %d prompts, want 3", len(ids))
		}
		if n := len(e.ops(t)); n != 0 {
			t.Fatalf("the bank saw %d operations", n)
		}
	})
}

// TestSupersedeRaceAcrossModes: the supersede race when one challenge
// transfers a code and the other is approve-only, in either order. Her
// transfer waits on a page with its code; an attacker with her password
// starts a held, approve-only login: a tap on its prompt would need no
// code, so both stop at once. Whatever the phone then approves releases
// nothing, the phone's view says why, and the bank sees neither the
// attacker's login nor her transfer. Then the other way round: the
// attacker's held login waits, her transfer starts, and both stop.
func TestSupersedeRaceAcrossModes(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{edit: interstitialTransfers}, "\t\tpush_rate 60")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	customer := loggedIn(t, e, g, phone)
	answer := func(res <-chan result) result {
		t.Helper()
		select {
		case r := <-res:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r
		case <-time.After(20 * time.Second):
			t.Fatal("no answer within 20s")
		}
		return result{}
	}
	approveAll := func() {
		list, _ := phone.Pending(ctx)
		for i := range list {
			if st, _ := phone.Decide(ctx, &list[i], device.Approve, 0); st == http.StatusOK {
				t.Fatalf("the phone approved %s (%s) after both were stopped", list[i].ID, list[i].Kind)
			}
		}
	}

	t.Run("code transfer pending, approve-only started", func(t *testing.T) {
		e.resetOps(t)
		w := startWait(t, ctx, customer, g.URL+"/transfer", transferBody(alice))
		if w.code == "" {
			t.Fatal("her transfer's waiting page shows no code")
		}
		hers := waitChallenge(t, phone)
		atk := answer(browserFrom("127.0.0.2").postAsync(ctx, g.URL+"/login", loginBody(alice)))
		if atk.resp.StatusCode != http.StatusConflict {
			t.Fatalf("the attacker's login: %d, want 409 (stopped)", atk.resp.StatusCode)
		}
		if st, _ := phone.DecideWithCode(ctx, hers, device.Approve, w.code); st != http.StatusConflict {
			t.Fatalf("her transfer approved with its code after the race: %d, want 409", st)
		}
		approveAll()
		if resp, page, err := w.post(ctx, g.URL, "continue", nil); err != nil || resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusOK {
			t.Fatalf("continue of her transfer: %v %v %.200q, want refused", err, resp, page)
		}
		if v, err := phone.Get(ctx, hers.ID); err != nil || v.Reason != device.ReasonAnotherLogin {
			t.Fatalf("her prompt's view: %+v %v, want reason %s", v, err, device.ReasonAnotherLogin)
		}
		if ops := e.ops(t); len(ops) != 0 {
			t.Fatalf("bank operations %+v, want none", ops)
		}
	})

	t.Run("approve-only pending, code transfer started", func(t *testing.T) {
		e.resetOps(t)
		atkRes := browserFrom("127.0.0.2").postAsync(ctx, g.URL+"/login", loginBody(alice))
		theirs := waitChallenge(t, phone)
		resp, page, err := customer.post(ctx, g.URL+"/transfer", transferBody(alice))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(page, `id="code"`) {
			t.Fatalf("her transfer started beside a pending approve-only login: %d %.300q", resp.StatusCode, page)
		}
		if st, _ := phone.Decide(ctx, theirs, device.Approve, 0); st != http.StatusConflict {
			t.Fatalf("the attacker's prompt approved after her transfer started: %d, want 409", st)
		}
		approveAll()
		if atk := answer(atkRes); atk.resp.StatusCode == http.StatusSeeOther {
			t.Fatal("the attacker's login was released")
		}
		theirs, err = phone.Get(ctx, theirs.ID)
		if err != nil || theirs.Reason != device.ReasonAnotherLogin {
			t.Fatalf("the attacker's prompt's view: %+v %v, want reason %s", theirs, err, device.ReasonAnotherLogin)
		}
		if ops := e.ops(t); len(ops) != 0 {
			t.Fatalf("bank operations %+v, want none", ops)
		}
		// "If this wasn't you, report fraud": she does, on the stopped
		// prompt; her push authentication locks at once.
		if st, err := phone.Decide(ctx, theirs, device.Fraud, 0); err != nil || st != http.StatusOK {
			t.Fatalf("fraud report on the stopped prompt: %d %v, want 200", st, err)
		}
		if st, _ := phone.Decide(ctx, theirs, device.Fraud, 0); st != http.StatusConflict {
			t.Fatalf("a second fraud report on it: %d, want 409", st)
		}
		refused(t, g, alice, phone, "Push authentication locked")
	})
}
