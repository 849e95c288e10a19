package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// The attacks of "an approval counts only for its owner's own request, in
// its own session", each through a real Caddy in front of the legacy bank,
// judged by the bank's operations log: did the bank execute it?

// approvedLogin logs u in through g in a fresh browser, approving on
// phone, and returns the browser.
func approvedLogin(t *testing.T, g *gateway, u bank.User, phone *device.Phone) *browser {
	t.Helper()
	b := newBrowser()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := b.postAsync(ctx, g.URL+"/login", loginBody(u))
	ch := waitChallenge(t, phone)
	if ch.Parsed.User != userKey(u) {
		t.Fatalf("login of %s rang for %q", userKey(u), ch.Parsed.User)
	}
	if st, err := phone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
		t.Fatalf("approve login of %s: %d %v", userKey(u), st, err)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approved login of %s: %v %v", userKey(u), r.err, r.resp)
	}
	return b
}

// cookieOf returns the value of the browser's cookie name for g ("" none).
func (b *browser) cookieOf(g *gateway, path, name string) string {
	u, _ := url.Parse(g.URL + path)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) get(ctx context.Context, target string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, "", err
	}
	return b.send(req)
}

func sessionCookie(v string) *http.Cookie {
	return &http.Cookie{Name: bank.SessionCookieName, Value: v}
}

func waitCookie(v string) *http.Cookie { return &http.Cookie{Name: "onepush_wait", Value: v} }

// passwordLogin logs u, who has no phone, in with the password alone in b
// and returns the bank's session cookie b got.
func passwordLogin(t *testing.T, ctx context.Context, b *browser, g *gateway, u bank.User) string {
	t.Helper()
	if resp, _, err := b.post(ctx, g.URL+"/login", loginBody(u)); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s's password-only login: %v %v", u.UserID, err, resp)
	}
	return b.cookieOf(g, "/", bank.SessionCookieName)
}

func transferForm(payee, amount, txnPassword string) string {
	return url.Values{"payee_account": {payee}, "amount": {amount}, "txn_password": {txnPassword}}.Encode()
}

// postWith posts form to target from a browser holding exactly the given
// cookies (one whose cookies the attacker chose).
func postWith(ctx context.Context, target string, form string, cookies ...*http.Cookie) (*http.Response, string, error) {
	b := newBrowser()
	u, err := url.Parse(target)
	if err != nil {
		return nil, "", err
	}
	b.Jar.SetCookies(u, cookies)
	return b.post(ctx, target, form)
}

// auditEvents reads the audit trail of type typ from the admin API.
func (g *lifecycleGateway) auditEvents(t *testing.T, typ string) []map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.adminAPI+"/audit?type="+url.QueryEscape(typ), nil)
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /audit: %d %v", resp.StatusCode, err)
	}
	return out.Events
}

func interstitialTransferPolicy(s string) string {
	return strings.Replace(s, "    service: 振込\n", "    service: 振込\n    mode: interstitial\n", 1)
}

// TestStolenSessionCannotRideOnAnotherUsersApproval is attack 1: the
// attacker, logged in to their own enrolled account, posts a transfer with
// the victim's transaction password in their own session, approves it on
// their own phone (or with their own security code), then asks for the
// stored request with the victim's stolen bank session cookie. The release
// is refused (403, audited), the bank executes nothing for the victim, and
// the victim's phone never rings; the attacker's own transfer, continued
// in its own session, still executes.
func TestStolenSessionCannotRideOnAnotherUsersApproval(t *testing.T) {
	e := newEnv(t, envOptions{edit: interstitialTransferPolicy})
	g := startLifecycleGateway(t, e)
	victimPhone, attackerPhone := newPhone(t, g.gateway), newPhone(t, g.gateway)
	enroll(t, g.gateway, alice, victimPhone)
	enroll(t, g.gateway, bob, attackerPhone)
	victim := approvedLogin(t, g.gateway, alice, victimPhone)
	stolen := victim.cookieOf(g.gateway, "/", bank.SessionCookieName)
	attacker := approvedLogin(t, g.gateway, bob, attackerPhone)
	own := attacker.cookieOf(g.gateway, "/", bank.SessionCookieName)
	if stolen == "" || own == "" || stolen == own {
		t.Fatalf("bank sessions: victim %q attacker %q", stolen, own)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// start posts the attacker's transfer in the attacker's own session and
	// returns the waiting page's cookie.
	var shown, shownOCRA string // the code and challenge number the last waiting page showed
	start := func(t *testing.T, txnPassword string) (challengeID, waitCookie string) {
		t.Helper()
		resp, page, err := attacker.post(ctx, g.URL+"/transfer", transferForm("6660001", "90000", txnPassword))
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(page, "id=\"status\"") {
			t.Fatalf("transfer in the attacker's session: %v %v %.300q", err, resp, page)
		}
		// The waiting page shows what the stored request moves, from the
		// typed fields.
		for _, want := range []string{`id="service">振込`, `id="amount">¥90,000`, `id="payee">6660001`} {
			if !strings.Contains(page, want) {
				t.Fatalf("waiting page lacks %q", want)
			}
		}
		shown, shownOCRA = codeOnPage(page), ocraOnPage(page)
		wait := attacker.cookieOf(g.gateway, "/onepush/wait/", "onepush_wait")
		id, _, ok := strings.Cut(wait, ".")
		if !ok {
			t.Fatalf("no waiting-page cookie: %q", wait)
		}
		return id, wait
	}
	release := map[string]func(t *testing.T, id, wait, session string) (*http.Response, string){
		"continue after the attacker's phone approved": func(t *testing.T, id, wait, session string) (*http.Response, string) {
			resp, page, err := postWith(ctx, g.URL+"/onepush/wait/"+id+"/continue", "", waitCookie(wait), sessionCookie(session))
			if err != nil {
				t.Fatal(err)
			}
			return resp, page
		},
		"the attacker's own security code": func(t *testing.T, id, wait, session string) (*http.Response, string) {
			// For a transaction: the offline response over the shown
			// challenge, payee and amount.
			code, err := attackerPhone.Respond(shownOCRA, "6660001", "90000")
			if err != nil {
				t.Fatal(err)
			}
			resp, page, err := postWith(ctx, g.URL+"/onepush/wait/"+id+"/ocra", url.Values{"response": {code}}.Encode(), waitCookie(wait), sessionCookie(session))
			if err != nil {
				t.Fatal(err)
			}
			return resp, page
		},
	}
	for _, name := range []string{"continue after the attacker's phone approved", "the attacker's own security code"} {
		t.Run(name, func(t *testing.T) {
			e.resetOps(t)
			before := len(g.auditEvents(t, "request.suspicious"))
			id, wait := start(t, alice.TxnPassword)
			if strings.HasPrefix(name, "continue") {
				ch := waitChallenge(t, attackerPhone)
				if ch.ID != id || ch.Parsed.User != userKey(bob) {
					t.Fatalf("attacker's phone got %s for %q", ch.ID, ch.Parsed.User)
				}
				if st, _ := attackerPhone.DecideWithCode(ctx, ch, device.Approve, shown); st != http.StatusOK {
					t.Fatalf("attacker approves: %d", st)
				}
			}
			resp, page := release[name](t, id, wait, stolen)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("release with the victim's session: %d %.300q, want 403", resp.StatusCode, page)
			}
			if ops := e.ops(t); len(ops) != 0 {
				t.Fatalf("the bank executed %+v for a release carrying the victim's session", ops)
			}
			if p, _ := victimPhone.Pending(ctx); len(p) != 0 {
				t.Fatalf("the victim's phone rang: %+v", p)
			}
			evs := g.auditEvents(t, "request.suspicious")
			if len(evs) != before+1 || evs[len(evs)-1]["challenge"] != id || evs[len(evs)-1]["user"] != userKey(bob) || evs[len(evs)-1]["outcome"] != "session_mismatch" {
				t.Fatalf("audit request.suspicious = %v, want one more for challenge %s of %s", evs, id, userKey(bob))
			}
			// The same request, continued in the session it was started in,
			// goes to the attacker's own account, where the victim's
			// transaction password is refused by the bank itself.
			resp, page = release["continue after the attacker's phone approved"](t, id, wait, own)
			if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Transaction password incorrect") {
				t.Fatalf("continue in the attacker's own session: %d %.300q", resp.StatusCode, page)
			}
			for _, op := range e.ops(t) {
				if op.UserID != bob.UserID || op.Op == bank.OpTransfer {
					t.Fatalf("bank op %+v: only a refused transfer on the attacker's account may appear", op)
				}
			}
		})
	}

	t.Run("the attacker's own transfer, in its own session, executes", func(t *testing.T) {
		e.resetOps(t)
		id, wait := start(t, bob.TxnPassword)
		ch := waitChallenge(t, attackerPhone)
		if st, _ := attackerPhone.DecideWithCode(ctx, ch, device.Approve, shown); st != http.StatusOK || ch.ID != id {
			t.Fatalf("approve %s: %d", ch.ID, st)
		}
		resp, page := release["continue after the attacker's phone approved"](t, id, wait, own)
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Transfer of 90000 JPY to 6660001 accepted") {
			t.Fatalf("continue in its own session: %d %.300q", resp.StatusCode, page)
		}
		transfers := opsOf(e.ops(t), bank.OpTransfer)
		if len(transfers) != 1 || transfers[0].UserID != bob.UserID {
			t.Fatalf("bank transfers = %+v, want the attacker's own one", transfers)
		}
		// The audit trail names the service and the host of the request.
		for _, typ := range []string{"challenge.created", "challenge.decided"} {
			evs := g.auditEvents(t, typ)
			if last := evs[len(evs)-1]; last["challenge"] != id || last["service"] != "振込" || last["host"] != "127.0.0.1" {
				t.Errorf("last %s audit event = %v, want challenge %s with service and host", typ, last, id)
			}
		}
	})
}

// keptSessionPolicy is the example policy for a bank that keeps its
// session ID: its successful login sets no cookie, so success cannot ask
// for one.
func keptSessionPolicy(s string) string {
	return strings.Replace(s, "set_cookie: BANKSESSION, ", "", 1)
}

// keptSessionAfterSuccessPolicy is after_success for such a bank.
func keptSessionAfterSuccessPolicy(s string) string { return keptSessionPolicy(afterSuccessPolicy(s)) }

// TestBankThatKeepsItsSessionIDAtLogin is attack 2: the bank upgrades the
// session the browser already has instead of issuing a new one. bob (no
// phone; transfers allowed on the password alone) logs in, then alice logs
// in on the same session. While her approval is pending, a transfer on the
// session is refused (before, the gateway still took the session for bob's
// and let the transfer through without a push); after it, her transfer
// rings her phone and executes only once she approves. Nothing on the
// session is attributed to bob after her login started. Under after_success
// the login reaches the bank without the session (the bank checks the
// password before the phone approves), so the bank opens a new session for
// alice and the one the browser had stays bob's at the bank, but no longer
// counts at the gateway.
func TestBankThatKeepsItsSessionIDAtLogin(t *testing.T) {
	for _, mode := range []struct {
		name string
		edit func(string) string
		// fresh: the login reaches the bank without the session cookie
		// (after_success checks the password before the phone approves),
		// so even this bank opens a new session for it.
		fresh bool
	}{
		{"login held for the phone", keptSessionPolicy, false},
		{"login checked by the bank first (after_success)", keptSessionAfterSuccessPolicy, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t, envOptions{edit: mode.edit, bank: func(c *bank.Config) { c.KeepSessionIDAtLogin = true }})
			g, phone := e.gatewayWithAlice("")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			br := newBrowser()
			session := passwordLogin(t, ctx, br, g, bob)
			// The precondition of the attack: the session is bob's, and his
			// transfers need no push.
			e.resetOps(t)
			if resp, page, err := br.post(ctx, g.URL+"/transfer", transferForm("1112223", "100", bob.TxnPassword)); err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(page, "accepted") {
				t.Fatalf("bob's transfer: %v %v %.200q", err, resp, page)
			}

			e.resetOps(t)
			login := br.postAsync(ctx, g.URL+"/login", loginBody(alice))
			ch := waitChallenge(t, phone)
			if ch.Parsed.User != userKey(alice) {
				t.Fatalf("alice's login rang for %q", ch.Parsed.User)
			}
			// Her approval is pending: whoever holds the session tries a
			// transfer with her transaction password.
			resp, page, err := postWith(ctx, g.URL+"/transfer", transferForm("6660001", "90000", alice.TxnPassword), sessionCookie(session))
			if err != nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("transfer while alice's login is pending: %v %v %.300q, want 403", err, resp, page)
			}
			for _, op := range e.ops(t) {
				if op.Op != bank.OpLogin {
					t.Fatalf("the bank executed %+v while alice's login was pending", op)
				}
			}

			if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusOK {
				t.Fatalf("approve alice's login: %d", st)
			}
			r := <-login
			if r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("alice's approved login: %v %v", r.err, r.resp)
			}
			switch got := br.cookieOf(g, "/", bank.SessionCookieName); {
			case !mode.fresh && got != session:
				t.Fatalf("the bank changed the session ID (%q -> %q): this test needs one that keeps it", session, got)
			case mode.fresh && (got == session || got == ""):
				t.Fatalf("after_success: the approved login handed over %q, want a session the bank opened for it (not %q)", got, session)
			case mode.fresh:
				// The session the browser had was never sent with her
				// login: still bob's at the bank, and nobody's at the gateway.
				if acct := accountOf(t, ctx, g, session); !strings.Contains(acct, `"user_id": "bob"`) {
					t.Fatalf("bob's session after alice's after_success login on it: %.200q", acct)
				}
				if resp, _, err := postWith(ctx, g.URL+"/transfer", transferForm("1112223", "100", bob.TxnPassword), sessionCookie(session)); err != nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("a transfer on the session alice's login was started in: %v %v, want 403", err, resp)
				}
			}

			// Her transfer on the session she now holds rings her phone and waits.
			e.resetOps(t)
			res := br.postAsync(ctx, g.URL+"/transfer", transferForm("5550001", "1200", alice.TxnPassword))
			tch := waitChallenge(t, phone)
			if tch.Parsed.User != userKey(alice) || tch.Parsed.Transaction == nil || tch.Parsed.Transaction.Amount != "1200" {
				t.Fatalf("transfer on the kept session: challenge for %q %+v", tch.Parsed.User, tch.Parsed.Transaction)
			}
			if ops := e.ops(t); len(ops) != 0 {
				t.Fatalf("the bank executed %+v before alice approved", ops)
			}
			if st, _ := phone.Decide(ctx, tch, device.Approve, 0); st != http.StatusOK {
				t.Fatalf("approve the transfer: %d", st)
			}
			if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusOK || !strings.Contains(r.body, "accepted") {
				t.Fatalf("approved transfer: %v %v %.200q", r.err, r.resp, r.body)
			}
			transfers := opsOf(e.ops(t), bank.OpTransfer)
			if len(transfers) != 1 || transfers[0].UserID != alice.UserID || transfers[0].Amount != "1200" {
				t.Fatalf("bank transfers = %+v, want alice's approved one", transfers)
			}
		})
	}
}

// TestAfterSuccessHandsNoUnrecognisedSession is attack 3: the bank's
// successful login sometimes looks different from the policy's success
// (here a next= redirect). Such an answer reaches the browser without the
// bank's session, and the session is logged out at the bank — for a bank
// that sets a new session and for one that keeps its session ID (the
// login reaches it without the session the browser had, so it opens a new
// one, and the browser's own stays as it was). The phone never rings for
// it.
func TestAfterSuccessHandsNoUnrecognisedSession(t *testing.T) {
	for _, tt := range []struct {
		name   string
		keepID bool
	}{
		{"the bank sets a new session", false},
		{"the bank keeps the session the browser had", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			edit := afterSuccessPolicy
			if tt.keepID {
				edit = keptSessionAfterSuccessPolicy
			}
			e := newEnv(t, envOptions{edit: edit, bank: func(c *bank.Config) {
				c.LoginFollowsNext, c.KeepSessionIDAtLogin = true, tt.keepID
			}})
			g, phone := e.gatewayWithAlice("")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			br := newBrowser()
			if tt.keepID {
				// The browser already has a session (bob's, password only).
				passwordLogin(t, ctx, br, g, bob)
			}
			e.resetOps(t)
			before := e.bank.SessionCount()

			resp, _, err := br.post(ctx, g.URL+"/login", loginBody(alice)+"&next=%2Ftransfer")
			if err != nil || resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/transfer" {
				t.Fatalf("alice's login with next=: %v %v", err, resp)
			}
			for _, c := range resp.Cookies() {
				if c.Name == bank.SessionCookieName && c.Value != "" {
					t.Fatalf("the browser got a bank session from an unrecognised success: %v", c)
				}
			}
			// The browser holds no session of alice's: none at all when it
			// had none; when it had one, that session was never sent with
			// her login and is still bob's.
			resp, page, err := br.get(ctx, g.URL+"/account")
			switch {
			case err != nil:
				t.Fatal(err)
			case !tt.keepID && resp.StatusCode != http.StatusUnauthorized:
				t.Fatalf("the browser's session after an unrecognised success: %v %.200q, want 401", resp, page)
			case tt.keepID && (resp.StatusCode != http.StatusOK || !strings.Contains(page, `"user_id": "bob"`)):
				t.Fatalf("the browser's own session after an unrecognised success: %v %.200q, want bob's, untouched", resp, page)
			}
			ops := e.ops(t)
			if len(opsOf(ops, bank.OpLogin)) != 1 || len(opsOf(ops, bank.OpLogout)) != 1 || opsOf(ops, bank.OpLogout)[0].UserID != alice.UserID {
				t.Fatalf("bank ops = %+v, want alice's login and the gateway's logout of it", ops)
			}
			// The session the bank opened for alice was logged out.
			if n := e.bank.SessionCount(); n != before {
				t.Fatalf("bank has %d live sessions, want %d", n, before)
			}
			if p, _ := phone.Pending(ctx); len(p) != 0 {
				t.Fatalf("the phone rang for an unrecognised answer: %+v", p)
			}
		})
	}
}

// TestDisplaySpoofingIsRefused is attack 5: a payee that rewrites what the
// phone shows (a right-to-left override, newlines that forge a "Payee:"
// line), an amount the bank could read differently (full-width digits, a
// sign, overflow), or an empty value never reaches the phone or the bank:
// 400. A deceived user approves whatever the phone shows, so before the
// fix the bank executed these. The user agent, which the bank does not
// own, reaches the phone escaped; service, host and the typed transaction
// are in the context the phone signs.
func TestDisplaySpoofingIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	g, phone := e.gatewayWithAlice("")
	b := loggedIn(t, e, g, phone)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The deceived user: approves every prompt the phone shows.
	deceived, stop := context.WithCancel(ctx)
	defer stop()
	approved := make(chan *device.Challenge, 16)
	go func() {
		for deceived.Err() == nil {
			ch, err := phone.WaitPending(deceived, 20*time.Millisecond)
			if err != nil {
				return
			}
			phone.Decide(deceived, ch, device.Approve, 0)
			approved <- ch
		}
	}()

	for _, tt := range []struct{ name, payee, amount string }{
		{"payee with a right-to-left override", "9999999\u202e7654321", "50000"},
		{"payee with newlines forging a line", "9999999\n\nPayee: 1234567 (own savings)", "50000"},
		{"payee with a zero-width space", "99999\u200b99", "50000"},
		{"payee over the length limit", strings.Repeat("9", 200), "50000"},
		{"empty payee", "", "50000"},
		{"full-width amount", "1234567", "１０００"},
		{"negative amount", "1234567", "-1000"},
		{"amount with a separator", "1234567", "1,000"},
		{"overflowing amount", "1234567", "99999999999999999999"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.resetOps(t)
			resp, page, err := b.post(ctx, g.URL+"/transfer", transferForm(tt.payee, tt.amount, alice.TxnPassword))
			if err != nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("transfer: %v %v %.200q, want 400", err, resp, page)
			}
			if ops := e.ops(t); len(ops) != 0 {
				t.Fatalf("the bank executed %+v", ops)
			}
			select {
			case ch := <-approved:
				t.Fatalf("the phone was asked to approve %s", ch.Context)
			default:
			}
		})
	}

	t.Run("user agent with a right-to-left override is shown escaped", func(t *testing.T) {
		e.resetOps(t)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/transfer", strings.NewReader(transferForm("1234567", "3000", alice.TxnPassword)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("User-Agent", "Mozilla/5.0 \u202eBank App\u202c (official)")
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var ch *device.Challenge
		select {
		case ch = <-approved:
		case <-ctx.Done():
			t.Fatal("no challenge")
		}
		if strings.ContainsRune(ch.Context, '\u202e') || strings.Contains(ch.Context, `\u202e`) || strings.ContainsRune(ch.Parsed.UserAgent, '\u202e') {
			t.Fatalf("the phone is shown a raw right-to-left override: %q", ch.Parsed.UserAgent)
		}
		if ch.Parsed.UserAgent != `Mozilla/5.0 \u202EBank App\u202C (official)` {
			t.Fatalf("user agent shown as %q, want it escaped", ch.Parsed.UserAgent)
		}
		if ch.Parsed.Service != "振込" || ch.Parsed.Host != "127.0.0.1" {
			t.Fatalf("context service %q host %q", ch.Parsed.Service, ch.Parsed.Host)
		}
		if tx := ch.Parsed.Transaction; tx == nil || tx.Amount != "3000" || tx.Currency != "JPY" || tx.Payee != "1234567" || tx.PayeeName != "" || tx.AmountShown["ja"] != "3,000円" {
			t.Fatalf("context transaction %+v", tx)
		}
		if transfers := opsOf(e.ops(t), bank.OpTransfer); len(transfers) != 1 || transfers[0].Amount != "3000" {
			t.Fatalf("bank transfers = %+v", transfers)
		}
	})
}

// TestMisspeltPlaceholderIsNamedByLint: a display or transaction
// placeholder naming a field the rule does not extract would show the
// phone an empty value the user approves. `caddy onepush policy lint`
// names the file, line and field, and Caddy refuses to start with it.
func TestMisspeltPlaceholderIsNamedByLint(t *testing.T) {
	e := newEnv(t, envOptions{edit: func(s string) string {
		return strings.Replace(s, `amount: "{form.amount}"`, `amount: "{form.ammount}"`, 1)
	}})
	line := lineOf(t, e.policy, `{form.ammount}`)
	want := e.policy + ":" + line + `: rules[2].transaction.amount: {form.ammount}: the rule does not extract "ammount"`
	out, code := cli(t, "policy", "lint", e.policy)
	if code == 0 || !strings.Contains(out, want) {
		t.Fatalf("lint: exit %d, want non-zero naming %q:\n%s", code, want, out)
	}
	port, adminPort := freePort(t), freePort(t)
	// Caddy's log is JSON: the quotes around the field are escaped there.
	wantLog := e.policy + ":" + line + ": rules[2].transaction.amount: {form.ammount}"
	if _, err := e.runCaddy(e.caddyfile(port, adminPort, caddyConfig{}), port, adminPort); err == nil || !strings.Contains(err.Error(), wantLog) {
		t.Fatalf("Caddy with the misspelt policy: %v, want a refusal naming %q", err, wantLog)
	}
}

// noSuccessPolicy is the example policy without the login rule's success
// condition, a configuration the README allows ("Without it, a user's
// first phone cannot be bound with the password").
func noSuccessPolicy(s string) string {
	return strings.Replace(s, "    success: {status: [303], set_cookie: BANKSESSION, location_prefix: /dashboard}", "", 1)
}

// postUntilDecided posts form to target with exactly the given cookies and
// returns the gateway's answer; any challenge that rings phone meanwhile is
// denied, as the phone's owner (who asked for nothing) would.
func postUntilDecided(t *testing.T, ctx context.Context, phone *device.Phone, target, form string, cookies ...*http.Cookie) result {
	t.Helper()
	ch := make(chan result, 1)
	go func() {
		resp, body, err := postWith(ctx, target, form, cookies...)
		ch <- result{resp, body, err}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-ch:
			return r
		case <-tick.C:
			pending, _ := phone.Pending(ctx)
			for i := range pending {
				t.Logf("the owner's phone rang (%s for %s): denied", pending[i].Kind, pending[i].Parsed.User)
				_, _ = phone.Decide(ctx, &pending[i], device.Deny, 0)
			}
		}
	}
}

// pendingSoon waits up to 5s for the phone's next challenge; unlike
// waitChallenge it hands back the error, for a test that says why none came.
func pendingSoon(ctx context.Context, phone *device.Phone) (*device.Challenge, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return phone.WaitPending(ctx, 20*time.Millisecond)
}

// TestFailedLoginDoesNotReattributeAStolenSession: an attacker who holds
// alice's bank session cookie posts, with it, a login naming another user
// ("1001/mallory", whom nobody enrolled, any password; or, with
// not_enrolled: deny on every rule, a user within a deregistration grace)
// on a policy whose login rule has no success condition. The bank refuses
// the login and keeps the session as alice's. Before, the gateway mapped
// the request's own session to the user the login named, so a transfer on
// it ran as mallory's (no phone) and the bank executed it on alice's
// account without her phone ringing. Now the request's own session is
// learned only when the bank's answer meets an explicit success condition
// (learnedSession): the failed login forgets the session, the transfer is
// refused, the bank executes nothing. Caddy warns at start about a login
// rule without success.
func TestFailedLoginDoesNotReattributeAStolenSession(t *testing.T) {
	denyAll := func(s string) string {
		return strings.ReplaceAll(noSuccessPolicy(s), "    not_enrolled: allow", "    not_enrolled: deny")
	}
	for _, tc := range []struct {
		name string
		edit func(string) string
		// named is the user the attacker's login names; grace makes it a
		// user whose lost phone the bank deregistered with a grace period.
		named bank.User
		grace bool
	}{
		{"a user nobody enrolled, transfers allowed without a phone", noSuccessPolicy,
			bank.User{ContractNo: "1001", UserID: "mallory"}, false},
		{"not_enrolled: deny everywhere, a user within a deregistration grace", denyAll, bob, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{edit: tc.edit})
			g := startLifecycleGateway(t, e)
			phone := newPhone(t, g.gateway)
			g.admin(t, "user", "bind", keyOf(alice), phone.CredentialID())
			if tc.grace {
				lost := newPhone(t, g.gateway)
				g.admin(t, "user", "bind", keyOf(tc.named), lost.CredentialID())
				g.admin(t, "user", "deregister", keyOf(tc.named), "--grace", "72h")
			}
			// Caddy said at start what a login rule without success costs.
			if logs := g.logs.String(); !strings.Contains(logs, "onepush policy: login rule \\\"login\\\" has no success condition") {
				t.Errorf("Caddy started without warning about the login rule without success:\n%s", logs)
			}
			victim := approvedLogin(t, g.gateway, alice, phone)
			stolen := victim.cookieOf(g.gateway, "/", bank.SessionCookieName)
			if stolen == "" {
				t.Fatal("alice's login set no bank session")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()

			// Control: the stolen session alone rings alice's phone (denied).
			e.resetOps(t)
			r := postUntilDecided(t, ctx, phone, g.URL+"/transfer", transferForm("6660001", "90000", alice.TxnPassword), sessionCookie(stolen))
			if r.err != nil {
				t.Fatal(r.err)
			}
			if n := len(opsOf(e.ops(t), bank.OpTransfer)); n != 0 {
				t.Fatalf("control: the bank executed %d transfers on the stolen session before the attack", n)
			}

			// The attack: a failed login naming someone else, on the stolen session.
			e.resetOps(t)
			wrong := url.Values{"contract_no": {tc.named.ContractNo}, "user_id": {tc.named.UserID}, "password": {"anything"}}.Encode()
			resp, page, err := postWith(ctx, g.URL+"/login", wrong, sessionCookie(stolen))
			if err != nil || !strings.Contains(page, "Login failed") {
				t.Fatalf("the attacker's login: %v %v %.200q", err, resp, page)
			}
			r = postUntilDecided(t, ctx, phone, g.URL+"/transfer", transferForm("6660001", "90000", alice.TxnPassword), sessionCookie(stolen))
			if r.err != nil {
				t.Fatal(r.err)
			}
			for _, op := range opsOf(e.ops(t), bank.OpTransfer) {
				t.Errorf("the bank executed a transfer on %s/%s's account (%s yen to %s) that %s never approved: answer %d",
					op.ContractNo, op.UserID, op.Amount, op.PayeeAccount, op.UserID, r.resp.StatusCode)
			}
		})
	}
}

// accountOf reads /account through the gateway with exactly the given bank
// session: the user the bank has behind it ("" when none).
func accountOf(t *testing.T, ctx context.Context, g *gateway, session string) string {
	t.Helper()
	b := newBrowser()
	u, _ := url.Parse(g.URL + "/")
	b.Jar.SetCookies(u, []*http.Cookie{sessionCookie(session)})
	resp, body, err := b.get(ctx, g.URL+"/account")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return body
}

// TestAfterSuccessLoginIsNotLiveBeforeApproval: under after_success the
// bank checks the password first and its answer is held until the phone
// approves. A bank that keeps its session ID at login upgraded the session
// the login carried, so whoever sent the login (here with bob's session
// and alice's password) read alice's account while her phone was ringing.
// Now the login reaches the bank without the session cookie: even a bank
// that keeps its ID opens a new session for it, which stays in the held
// answer (and is logged out on a denial); the session the request carries
// stays bob's.
func TestAfterSuccessLoginIsNotLiveBeforeApproval(t *testing.T) {
	e := newEnv(t, envOptions{edit: keptSessionAfterSuccessPolicy, bank: func(c *bank.Config) { c.KeepSessionIDAtLogin = true }})
	g, phone := e.gatewayWithAlice("")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The attacker's own session at the bank (bob: no phone, password only).
	atk := newBrowser()
	session := passwordLogin(t, ctx, atk, g, bob)
	if acct := accountOf(t, ctx, g, session); !strings.Contains(acct, `"user_id": "bob"`) {
		t.Fatalf("control: bob's session reads %.200q", acct)
	}

	// alice's login (her password is known) on that session; she does not answer yet.
	res := atk.postAsync(ctx, g.URL+"/login", loginBody(alice))
	ch := waitChallenge(t, phone)
	if ch.Parsed.User != userKey(alice) {
		t.Fatalf("rang for %q", ch.Parsed.User)
	}
	acct := accountOf(t, ctx, g, session)
	if st, _ := phone.Decide(ctx, ch, device.Deny, 0); st != http.StatusOK {
		t.Fatalf("deny: %d", st)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied login: %v %v", r.err, r.resp)
	}
	if strings.Contains(acct, `"user_id": "alice"`) {
		t.Errorf("while alice's phone was ringing (she then denied), the attacker's session read her account: %.300s", acct)
	}
}

// TestLoginThatNeverReachesTheBankKeepsTheSession: a login on a session
// marks it pending and makes the gateway forget whom it belongs to. That
// used to happen before the user's state was looked at, so a login refused
// without reaching the bank (not_enrolled: deny, here a mistyped user ID
// in a second tab) logged the session's real owner out of every transfer
// although the bank never saw anything. Now the mark is written only once
// the login will reach the bank, and a held login that ends without being
// forwarded (here denied on the phone) clears it: alice's transfers on her
// session still ring her phone and execute.
func TestLoginThatNeverReachesTheBankKeepsTheSession(t *testing.T) {
	e := newEnv(t, envOptions{edit: func(s string) string {
		return strings.Replace(s, "    not_enrolled: allow   #", "    not_enrolled: deny   #", 1)
	}})
	g := startLifecycleGateway(t, e)
	phone := newPhone(t, g.gateway)
	g.admin(t, "user", "bind", keyOf(alice), phone.CredentialID())
	br := approvedLogin(t, g.gateway, alice, phone)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	e.resetOps(t)
	typo := url.Values{"contract_no": {"1001"}, "user_id": {"alicee"}, "password": {alice.Password}}.Encode()
	if resp, _, err := br.post(ctx, g.URL+"/login", typo); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a login of an unknown user under deny: %v %v", err, resp)
	}
	if ops := e.ops(t); len(ops) != 0 {
		t.Fatalf("the refused login reached the bank: %+v", ops)
	}
	// transferApproved: alice's transfer of amount on her session rings her
	// phone and, approved, executes.
	transferApproved := func(amount, after string) {
		t.Helper()
		res := br.postAsync(ctx, g.URL+"/transfer", transferForm("5550001", amount, alice.TxnPassword))
		ch, err := pendingSoon(ctx, phone)
		if err != nil {
			r := <-res
			t.Fatalf("alice's transfer on her own session after %s: %v, answered %v: the gateway forgot her session", after, err, r.resp.Status)
		}
		if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusOK {
			t.Fatalf("approve: %d", st)
		}
		if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusOK {
			t.Fatalf("approved transfer after %s: %v %v", after, r.err, r.resp)
		}
	}
	transferApproved("1200", "a refused login that never reached the bank (her session is still hers at the bank)")

	// A login held for her phone that she denies never reaches the bank
	// either: her session is still hers afterwards.
	login := br.postAsync(ctx, g.URL+"/login", loginBody(alice))
	lch := waitChallenge(t, phone)
	if st, _ := phone.Decide(ctx, lch, device.Deny, 0); st != http.StatusOK {
		t.Fatalf("deny: %d", st)
	}
	if r := <-login; r.err != nil || r.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied login: %v %v", r.err, r.resp)
	}
	e.resetOps(t)
	transferApproved("1300", "a login she denied on her phone")
	if ts := opsOf(e.ops(t), bank.OpTransfer); len(ts) != 1 || ts[0].UserID != alice.UserID || ts[0].Amount != "1300" {
		t.Fatalf("bank transfers = %+v, want alice's approved one", ts)
	}
}

// TestApprovedDeepLinkLoginCanTransfer: a customer logs in from a deep
// link (the bank's login form carries next=, bank.Config.LoginFollowsNext,
// so the bank's answer is not the success condition's /dashboard) and
// approves on her phone. The gateway used to learn nothing from an answer
// that did not meet success, so every transfer she made was refused as "no
// learned session". A session the bank newly set in answer to a login the
// phone approved is only this browser's, and is learned (learnedSession);
// a password-only login still needs success (TestCookieOnFailedLoginIsNoProof).
func TestApprovedDeepLinkLoginCanTransfer(t *testing.T) {
	e := newEnv(t, envOptions{bank: func(c *bank.Config) { c.LoginFollowsNext = true }})
	g, phone := e.gatewayWithAlice("")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	br := newBrowser()
	res := br.postAsync(ctx, g.URL+"/login", loginBody(alice)+"&next=%2Ftransfer")
	ch := waitChallenge(t, phone)
	if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusOK {
		t.Fatalf("approve: %d", st)
	}
	r := <-res
	if r.err != nil || r.resp.StatusCode != http.StatusSeeOther || br.cookieOf(g, "/", bank.SessionCookieName) == "" {
		t.Fatalf("approved login: %v %v", r.err, r.resp)
	}
	tres := br.postAsync(ctx, g.URL+"/transfer", transferForm("5550001", "1200", alice.TxnPassword))
	tch, err := pendingSoon(ctx, phone)
	if err != nil {
		tr := <-tres
		t.Fatalf("alice approved her login (deep link to %s) and the bank logged her in, but her transfer was answered %v without asking her phone", r.resp.Header.Get("Location"), tr.resp.Status)
	}
	if st, _ := phone.Decide(ctx, tch, device.Approve, 0); st != http.StatusOK {
		t.Fatalf("approve transfer: %d", st)
	}
	if tr := <-tres; tr.err != nil || tr.resp.StatusCode != http.StatusOK {
		t.Fatalf("approved transfer: %v %v", tr.err, tr.resp)
	}
}

// TestSuspiciousContinueFloodIsAggregatedAndBurnt: anyone who knows
// alice's contract number and user ID starts an interstitial login for her
// (one push she ignores), keeps the waiting page's cookie and posts
// continue with made-up session cookies. Each used to write a
// request.suspicious event, and the trail (audit_max_events, shared by
// every user; on Redis a stream trimmed by length) lost everything older,
// alice's binding included. Now those events are aggregated per challenge
// (the first, then one summary per 10 s), and after 5 such posts the
// stored request is burnt and its challenge cancelled.
func TestSuspiciousContinueFloodIsAggregatedAndBurnt(t *testing.T) {
	e := newEnv(t, envOptions{edit: func(s string) string {
		return strings.Replace(s, "    timeout: 90s\n", "    timeout: 90s\n    mode: interstitial\n", 1)
	}})
	g := startBindingGateway(t, e, bindingOptions{global: "\t\taudit_max_events 60"})
	aliceKey := keyOf(alice)
	phone := newPhone(t, g.gateway)
	enroll(t, g.gateway, alice, phone)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	atk := newBrowser()
	resp, _, err := atk.post(ctx, g.URL+"/login", url.Values{"contract_no": {alice.ContractNo}, "user_id": {alice.UserID}, "password": {"not-hers"}}.Encode())
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("interstitial login: %v %v", err, resp)
	}
	wait := atk.cookieOf(g.gateway, "/onepush/wait/", "onepush_wait")
	id, _, _ := strings.Cut(wait, ".")
	if id == "" {
		t.Fatal("no waiting-page cookie")
	}
	const posts = 200
	refused := 0
	for i := range posts {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/onepush/wait/"+id+"/continue", nil)
		req.Header.Set("Cookie", fmt.Sprintf("onepush_wait=%s; %s=made-up-%d", wait, bank.SessionCookieName, i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden {
			refused++
		}
	}
	suspicious, bound := 0, false
	for _, ev := range g.audit(t, aliceKey, "") {
		switch {
		case ev["type"] == "request.suspicious":
			suspicious++
		case ev["type"] == "enrolment" && ev["outcome"] == "bound":
			bound = true
		}
	}
	t.Logf("%d continue posts with made-up sessions: %d refused, %d request.suspicious events kept", posts, refused, suspicious)
	if !bound {
		t.Errorf("%d posts from one browser flushed alice's audit trail: her binding is gone, %d request.suspicious events remain", posts, suspicious)
	}
	// A browser that keeps asking with other sessions is not working in
	// the one the request belongs to: after a few, the stored request is
	// burnt. Alice's phone no longer offers it, and continue in the session
	// it was started in (none) forwards nothing.
	if p, _ := phone.Pending(ctx); len(p) != 0 {
		t.Errorf("after %d releases with other sessions alice's phone still offers the challenge: %+v", posts, p)
	}
	e.resetOps(t)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/onepush/wait/"+id+"/continue", nil)
	req.Header.Set("Cookie", "onepush_wait="+wait)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if ops := e.ops(t); len(ops) != 0 {
		t.Errorf("the burnt request reached the bank: %+v", ops)
	}
}

// TestContinueWithTwoSessionCookiesIsRefused: the replay rebuilds its
// Cookie header from what Go parsed of the continue request, so a continue
// carrying the stored request's own session and a stolen one (either
// order; cookie tossing from a sibling domain) must be refused, not
// replayed with both for the bank to pick one.
func TestContinueWithTwoSessionCookiesIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{edit: interstitialTransferPolicy})
	g := startLifecycleGateway(t, e)
	victimPhone, attackerPhone := newPhone(t, g.gateway), newPhone(t, g.gateway)
	g.admin(t, "user", "bind", keyOf(alice), victimPhone.CredentialID())
	g.admin(t, "user", "bind", keyOf(bob), attackerPhone.CredentialID())
	stolen := approvedLogin(t, g.gateway, alice, victimPhone).cookieOf(g.gateway, "/", bank.SessionCookieName)
	attacker := approvedLogin(t, g.gateway, bob, attackerPhone)
	own := attacker.cookieOf(g.gateway, "/", bank.SessionCookieName)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, order := range [][2]string{{own, stolen}, {stolen, own}} {
		e.resetOps(t)
		resp, page, err := attacker.post(ctx, g.URL+"/transfer", transferForm("6660001", "90000", alice.TxnPassword))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("interstitial transfer: %v %v %.200q", err, resp, page)
		}
		wait := attacker.cookieOf(g.gateway, "/onepush/wait/", "onepush_wait")
		id, _, _ := strings.Cut(wait, ".")
		ch := waitChallenge(t, attackerPhone)
		if st, _ := attackerPhone.DecideWithCode(ctx, ch, device.Approve, codeOnPage(page)); st != http.StatusOK {
			t.Fatalf("approve: %d", st)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/onepush/wait/"+id+"/continue", nil)
		req.Header.Set("Cookie", fmt.Sprintf("onepush_wait=%s; %s=%s; %s=%s", wait, bank.SessionCookieName, order[0], bank.SessionCookieName, order[1]))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("continue with two session cookies: %d, want 403", resp.StatusCode)
		}
		if ops := e.ops(t); len(ops) != 0 {
			t.Errorf("the bank executed %+v", ops)
		}
	}
}
