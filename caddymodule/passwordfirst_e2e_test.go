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

// TestWrongPasswordsNeverRingThePhone: under the example policy as it
// ships (login password-first, code transfer), anyone who knows alice's
// contract number and user ID posts 20 wrong passwords. The bank refuses
// each; her phone never rings, she is not locked, and her own login right
// after, with the code the waiting page shows, succeeds.
func TestWrongPasswordsNeverRingThePhone(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{passwordFirst: true}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	atk := newBrowser()
	wrong := alice
	wrong.Password = "not-her-password"
	for i := range 20 {
		resp, page, err := atk.post(ctx, g.URL+"/login", loginBody(wrong))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusSeeOther || strings.Contains(page, `id="code"`) {
			t.Fatalf("wrong password %d: %d %.300q, want the bank's refusal and no waiting page", i, resp.StatusCode, page)
		}
		if p, err := phone.Pending(ctx); err != nil || len(p) != 0 {
			t.Fatalf("after wrong password %d the phone has %d pending challenges (%v)", i, len(p), err)
		}
	}
	if n := len(opsOf(e.ops(t), bank.OpLoginFailed)); n != 20 {
		t.Fatalf("bank saw %d failed logins, want 20", n)
	}

	b := newBrowser()
	w := startWait(t, ctx, b, g.URL+"/login", loginBody(alice))
	if len(w.code) != 6 {
		t.Fatalf("waiting page code %q", w.code)
	}
	ch := waitChallenge(t, phone)
	if ch.Parsed.User != userKey(alice) || ch.Parsed.CodeDigits != 6 {
		t.Fatalf("challenge for %q with %d digits", ch.Parsed.User, ch.Parsed.CodeDigits)
	}
	if st, err := phone.DecideWithCode(ctx, ch, device.Approve, w.code); err != nil || st != http.StatusOK {
		t.Fatalf("her approval: %d %v (locked?)", st, err)
	}
	resp, page, err := w.post(ctx, g.URL, "continue", nil)
	if err != nil || resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/dashboard") {
		t.Fatalf("continue of her login: %v %v %.300q", err, resp, page)
	}
	if resp, page, err := b.get(ctx, g.URL+"/dashboard"); err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(page, "Welcome") {
		t.Fatalf("her dashboard: %v %v %.200q", err, resp, page)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 || logins[0].UserID != alice.UserID {
		t.Fatalf("bank logins %+v, want her one", logins)
	}
}

// TestPasswordFirstLoginWithCodeTransferInChromium: the example policy's
// login in a real browser. The bank checks the password, the waiting page
// shows the code, the code typed into the phone approves and only then
// does the browser get the bank's session; a wrong code is refused,
// counted, and the bank's session it had opened is logged out.
func TestPasswordFirstLoginWithCodeTransferInChromium(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{passwordFirst: true}, "\t\tpush_rate 60")

	t.Run("the code typed into the phone", func(t *testing.T) {
		ctx := loginInChrome(t, g.URL, alice)
		code := shownCode(t, ctx)
		screenshot(t, ctx, "password-first-code")
		// The bank has checked the password; nothing of its session is in
		// the browser yet.
		if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 {
			t.Fatalf("bank logins while the page waits: %+v", logins)
		}
		if ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.cookie.includes("`+bank.SessionCookieName+`")`)); ok {
			t.Fatal("the browser holds the bank's session before approval")
		}
		ch := waitChallenge(t, phone)
		if st, err := phone.DecideWithCode(context.Background(), ch, device.Approve, code); err != nil || st != http.StatusOK {
			t.Fatalf("approve: %d %v", st, err)
		}
		if err := waitText(ctx, "Welcome"); err != nil {
			t.Fatalf("browser did not land on the dashboard: %v", err)
		}
		ops := e.ops(t)
		if logins := opsOf(ops, bank.OpLogin); len(logins) != 1 || len(opsOf(ops, bank.OpLogout)) != 0 {
			t.Fatalf("bank ops %+v, want one login and no logout", ops)
		}
	})

	t.Run("a wrong code", func(t *testing.T) {
		e.resetOps(t)
		ctx, code, ch := loginWaiting(t, g.URL, alice, phone)
		if st, _ := phone.DecideWithCode(context.Background(), ch, device.Approve, otherCode(code)); st != http.StatusOK {
			t.Fatalf("wrong code: %d", st)
		}
		if err := waitText(ctx, "The code did not match"); err != nil {
			t.Fatal(err)
		}
		// The session the bank opened for the checked password is ended.
		deadline := time.Now().Add(10 * time.Second)
		for len(opsOf(e.ops(t), bank.OpLogout)) == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		ops := e.ops(t)
		if len(opsOf(ops, bank.OpLogin)) != 1 || len(opsOf(ops, bank.OpLogout)) != 1 {
			t.Fatalf("bank ops %+v, want the checked login and its logout", ops)
		}
		// The browser never got the bank's session.
		if err := chromedp.Do(ctx, chromedp.Navigate(g.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(`body`))); err != nil {
			t.Fatal(err)
		}
		if in, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.body.innerText.includes("Welcome")`)); err != nil || in {
			t.Fatalf("after a refused code the browser reaches the dashboard (%v)", err)
		}
	})
}
