package caddymodule_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// TestOneOperatorCannotSuspendIntoPasswordOnly is the insider of review 3:
// a support operator who knows (or has phished) the customer's passwords
// "suspends" her with a grace of a year. A suspended user within her
// grace logs in and transfers with the password alone, which is what a
// deregistration grants, and deregister is under dual control: suspend
// must be as well, or one operator alone turns off step-up for anyone.
// The attack: ops1 suspends alice, then logs in as her and transfers
// without her phone. The bank's /ops/log must show nothing.
func TestOneOperatorCannotSuspendIntoPasswordOnly(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := startOpsGateway(t, e, caddyConfig{}, "")
	key := keyOf(alice)
	phone := newPhone(t, g.gateway)
	enroll(t, g.gateway, alice, phone)
	e.resetOps(t)

	st, out := g.as(t, "ops1", "", http.MethodPost, "/user/suspend", map[string]string{"key": key, "grace": "8760h"})
	if st != http.StatusAccepted {
		t.Errorf("suspend by ops1 alone = %d %v, want 202 (waiting for a supervisor)", st, out)
	}
	if st, out := g.as(t, "sup1", "", http.MethodGet, "/user?key="+url.QueryEscape(key), nil); st != http.StatusOK || out["state"] != "active" {
		t.Errorf("after ops1's suspend alone alice is %d %v, want active", st, out)
	}

	// ops1 now uses alice's phished passwords: no phone is asked.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := newBrowser()
	res := b.postAsync(ctx, g.URL+"/login", loginBody(alice))
	ch := waitChallengeOrNone(t, phone, 3*time.Second)
	if ch == nil {
		r := <-res
		t.Errorf("login without the phone after ops1's suspend alone: %v %v (the phone was never asked)", r.err, r.resp)
	} else {
		cancel()
		<-res
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	body := url.Values{"payee_account": {"9876543"}, "amount": {"990000"}, "txn_password": {alice.TxnPassword}}.Encode()
	tres := b.postAsync(ctx2, g.URL+"/transfer", body)
	if ch := waitChallengeOrNone(t, phone, 3*time.Second); ch != nil {
		cancel2()
	}
	<-tres
	if n := len(opsOf(e.ops(t), bank.OpTransfer)); n != 0 {
		t.Fatalf("the bank executed %d transfers that alice's phone never approved, after one operator's suspend", n)
	}
}

// waitChallengeOrNone waits up to d for the phone's next pending
// challenge; nil when none came.
func waitChallengeOrNone(t *testing.T, p *device.Phone, d time.Duration) *device.Challenge {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ch, err := p.WaitPending(ctx, 20*time.Millisecond)
	if err != nil {
		return nil
	}
	return ch
}

// TestPasskeyChallengesCannotFillHerPendingPlaces: review 3 found that
// passkey challenges counted toward the user's MaxPendingPerUser (3) like
// code-transfer ones, though they are never pushed nor listed to the
// phone: someone who knows only alice's contract number and user ID (the
// login is held before the bank checks the password) posted three logins
// with a wrong password, and her own login got the busy page (429) with
// nothing on her phone to deny. A new passkey challenge now replaces the
// user's pending one: hers replaces the attacker's last, she logs in with
// her passkey, and the bank logs exactly her login.
func TestPasskeyChallengesCannotFillHerPendingPlaces(t *testing.T) {
	p, ctx, _ := withPasskey(t, "")
	p.logout(t, ctx)
	p.e.resetOps(t)

	wrong := alice
	wrong.Password = "not-her-password"
	for i := range 3 {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, page, err := newBrowser().post(rctx, p.g.URL+"/login", loginBody(wrong))
		cancel()
		if err != nil || resp.StatusCode >= 400 || !passkeyFormAction.MatchString(page) {
			t.Fatalf("attacker's login %d: %v %v, want a passkey waiting page: %.300q", i+1, err, resp, page)
		}
	}
	// Her phone has nothing to deny.
	p.noPush(t)
	if ops := p.e.ops(t); len(ops) != 0 {
		t.Fatalf("the bank executed %+v for the attacker's wrong passwords", ops)
	}
	// Her own login: a passkey waiting page (hers replaces the attacker's
	// pending one), approved with her passkey.
	p.loginOn(t, ctx)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#passkey-start`))); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(`html`)))
		t.Fatalf("alice's login beside the attacker's three: %v\n%.1500s", err, html)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#passkey-start`))); err != nil {
		t.Fatal(err)
	}
	if err := waitText(ctx, "Welcome"); err != nil {
		t.Fatalf("alice's passkey login: %v", err)
	}
	if logins := opsOf(p.e.ops(t), bank.OpLogin); len(logins) != 1 || logins[0].UserID != "alice" {
		t.Fatalf("bank logins %+v, want alice's one", logins)
	}
}

// TestPasskeyCloneLockStopsPendingChallenges: a counter that did not grow
// means a cloned authenticator and locks the user at once (threat model
// 7d). The clone's holder started a login of their own before: its
// challenge was pending when the lock came. Review 3: it could still be
// approved with the clone (a counter above the stored one), and the bank
// logged a locked user in. Now an assertion for a locked user's challenge
// is refused and nothing reaches the bank.
func TestPasskeyCloneLockStopsPendingChallenges(t *testing.T) {
	p, ctx, auth := withPasskey(t, "")
	p.logout(t, ctx)
	clone := forger(t, ctx, auth)

	// The cloner's login, from their own machine: a passkey waiting page.
	attacker := newBrowser()
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodPost, p.g.URL+"/login", strings.NewReader(loginBody(alice)))
	req.Host = strings.TrimPrefix(p.origin, "http://")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, page, err := attacker.send(req)
	m, c := passkeyFormAction.FindStringSubmatch(page), passkeyChallenge.FindStringSubmatch(page)
	if err != nil || resp.StatusCode >= 400 || m == nil || c == nil {
		t.Fatalf("the cloner's login: %v %v %.300q", err, resp, page)
	}
	chal, err := base64.RawURLEncoding.DecodeString(c[1])
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, ck := range resp.Cookies() {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	theirs := waiting{id: m[1], challenge: chal, cookies: strings.Join(parts, "; ")}

	// Alice logs in; her authenticator's counter is behind the clone's
	// (the clone was used since): the gateway sees a clone and locks her.
	p.loginOn(t, ctx)
	hers := p.waitingPage(t, ctx)
	p.e.resetOps(t)
	clone.Count += 3 // the clone's uses the gateway never saw
	stale := *clone
	stale.Count -= 5
	if st := p.postAssertion(t, hers, stale.Assert(clientData("webauthn.get", hers.challenge, p.origin, nil), nil)); st != http.StatusUnauthorized {
		t.Fatalf("alice's assertion behind the clone's counter: %d, want 401", st)
	}
	if u := adminUser(t, p); u != "locked" {
		t.Fatalf("after a counter that did not grow alice is %q, want locked", u)
	}
	// The cloner's pending login, with a counter that grows.
	st := p.postAssertion(t, theirs, clone.Assert(clientData("webauthn.get", theirs.challenge, p.origin, nil), nil))
	if ops := p.e.ops(t); len(ops) != 0 {
		t.Fatalf("after the clone lock the bank executed %+v (answer %d)", ops, st)
	}
	// Her login replaced the cloner's pending passkey challenge (one per
	// user, PendingRule): 401 for a challenge no longer pending. Where two
	// could still be pending (instances racing), the lock refuses it: 403.
	if st != http.StatusUnauthorized && st != http.StatusForbidden {
		t.Fatalf("the clone's assertion for a locked user: %d, want 401 (replaced) or 403 (locked)", st)
	}
}
