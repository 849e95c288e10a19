package caddymodule_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// codeLogin logs u in through the example policy's password-first login
// with the code its waiting page shows, and returns the browser.
func codeLogin(t *testing.T, ctx context.Context, g *gateway, u bank.User, phone *device.Phone) *browser {
	t.Helper()
	b := newBrowser()
	w := startWait(t, ctx, b, g.URL+"/login", loginBody(u))
	if st, err := phone.DecideWithCode(ctx, waitChallenge(t, phone), device.Approve, w.code); err != nil || st != http.StatusOK {
		t.Fatalf("approving the login: %d %v", st, err)
	}
	if resp, page, err := w.post(ctx, g.URL, "continue", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("continue of the login: %v %v %.200q", err, resp, page)
	}
	return b
}

// TestOfflineTransactionFallback: a transfer's waiting page offers the
// offline fallback for a phone without network. A plain security code
// (TOTP) is refused for a transaction; a response computed over another
// amount is refused and counted; the OCRA response over the challenge
// number, payee and amount the page shows executes the transfer once.
func TestOfflineTransactionFallback(t *testing.T) {
	e := newEnv(t, envOptions{passwordFirst: true, edit: interstitialTransfers})
	g := startLifecycleGateway(t, e)
	phone := newPhone(t, g.gateway)
	enroll(t, g.gateway, alice, phone)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := codeLogin(t, ctx, g.gateway, alice, phone)
	e.resetOps(t)

	w := startWait(t, ctx, b, g.URL+"/transfer", transferForm("5550001", "98765", alice.TxnPassword))
	if len(w.ocra) != 8 {
		t.Fatalf("transfer's waiting page offers no challenge number (%q)", w.ocra)
	}
	resp, page, err := w.b.get(ctx, g.URL+"/onepush/wait/"+w.id)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("waiting page: %v %v", err, resp)
	}
	for _, want := range []string{`id="ocra-payee" class="code">5550001<`, `id="ocra-amount" class="code">98,765 JPY<`} {
		if !strings.Contains(page, want) {
			t.Fatalf("waiting page lacks %q", want)
		}
	}

	t.Run("a plain security code is refused", func(t *testing.T) {
		code, _, err := phone.SecurityCodeAt(time.Now().Add(30 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		resp, page, err := w.post(ctx, g.URL, "otp", url.Values{"code": {code}})
		if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "A security code cannot approve a transaction") {
			t.Fatalf("security code for a transfer: %v %v %.300q", err, resp, page)
		}
	})

	t.Run("a response for another amount is refused and counted", func(t *testing.T) {
		other, err := phone.Respond(w.ocra, "5550001", "98766")
		if err != nil {
			t.Fatal(err)
		}
		resp, page, err := w.post(ctx, g.URL, "ocra", url.Values{"response": {other}})
		if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "The response is wrong") {
			t.Fatalf("response for another amount: %v %v %.300q", err, resp, page)
		}
		if out := g.admin(t, "user", "show", keyOf(alice)); !strings.Contains(out, "failures:   1") {
			t.Fatalf("after a wrong response:\n%s", out)
		}
	})
	if n := len(opsOf(e.ops(t), bank.OpTransfer)); n != 0 {
		t.Fatalf("bank executed %d transfers before the right response", n)
	}

	t.Run("the response over the shown values executes once", func(t *testing.T) {
		// Typed from the page as a user would: the amount grouped, with its code.
		right, err := phone.Respond(w.ocra[:4]+" "+w.ocra[4:], "5550001", "98,765 JPY")
		if err != nil {
			t.Fatal(err)
		}
		resp, page, err := w.post(ctx, g.URL, "ocra", url.Values{"response": {right}})
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(page, "Transfer of 98765 JPY to 5550001 accepted") {
			t.Fatalf("right response: %v %v %.300q", err, resp, page)
		}
		resp, _, err = w.post(ctx, g.URL, "ocra", url.Values{"response": {right}})
		if err != nil || resp.StatusCode == http.StatusOK {
			t.Fatalf("the same response again: %v %v", err, resp)
		}
		if transfers := opsOf(e.ops(t), bank.OpTransfer); len(transfers) != 1 || transfers[0].UserID != alice.UserID {
			t.Fatalf("bank transfers %+v, want one", transfers)
		}
	})
}

// TestTransferWithCodeTransferInChromium: a transfer in a real browser
// after a password-first login: the code shown, typed into the phone,
// approves and the bank executes once; the waiting page with the code
// and its offline form is captured in English and Japanese, on a desktop
// and a 390×844 phone screen.
func TestTransferWithCodeTransferInChromium(t *testing.T) {
	e := newEnv(t, envOptions{passwordFirst: true, edit: interstitialTransfers})
	g, phone := e.gatewayWithAlice("\t\tpush_rate 60")
	// The phone's own screen: the simulator of examples/phone, polling
	// the same phone's challenges.
	sim := device.NewSimulator(phone, "", nil)
	sim.PollInterval = 200 * time.Millisecond
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan struct{})
	go func() { _ = sim.Run(simCtx); close(simDone) }()
	t.Cleanup(func() { stopSim(); <-simDone })
	phoneScreen := httptest.NewServer(sim)
	t.Cleanup(phoneScreen.Close)
	// What people read, per language: the policy's amount format and
	// labels (examples/policy/bank.yaml).
	wantAmount := map[string]string{"ja": "1,500,000円", "en": "¥1,500,000"}
	wantLabels := map[string][]string{"ja": {"契約者番号", "利用者ID"}, "en": {"Contract", "User"}}
	for _, lang := range []string{"en", "ja"} {
		for _, screen := range []struct {
			name string
			w, h int64
		}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
			t.Run(lang+"-"+screen.name, func(t *testing.T) {
				e.resetOps(t)
				ctx := newChrome(t, chromedp.Flag("lang", lang), chromedp.Flag("accept-lang", lang))
				if err := chromedp.Do(ctx, chromedp.EmulateViewport(screen.w, screen.h)); err != nil {
					t.Fatal(err)
				}
				if err := submitLogin(ctx, g.URL, alice); err != nil {
					t.Fatal(err)
				}
				code := shownCode(t, ctx)
				page, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`table.fields`)))
				if err != nil {
					t.Fatal(err)
				}
				for _, label := range wantLabels[lang] {
					if !strings.Contains(page, label) {
						t.Errorf("%s login page does not show the label %q: %q", lang, label, page)
					}
				}
				if st, _ := phone.DecideWithCode(context.Background(), waitChallenge(t, phone), device.Approve, code); st != http.StatusOK {
					t.Fatalf("login approval: %d", st)
				}
				if err := waitText(ctx, "Welcome"); err != nil {
					t.Fatalf("no dashboard after the login: %v", err)
				}
				if err := chromedp.Do(ctx,
					chromedp.Navigate(g.URL+"/transfer"),
					chromedp.WaitVisible(chromedp.CSS(`input[name=payee_account]`)),
					chromedp.SendKeys(chromedp.CSS(`input[name=payee_account]`), "5550001"),
					chromedp.SendKeys(chromedp.CSS(`input[name=amount]`), "1500000"),
					chromedp.SendKeys(chromedp.CSS(`input[name=txn_password]`), alice.TxnPassword),
					chromedp.Submit(chromedp.CSS(`input[name=txn_password]`)),
					chromedp.WaitVisible(chromedp.CSS(`#code`)),
				); err != nil {
					t.Fatal(err)
				}
				code = shownCode(t, ctx)
				screenshot(t, ctx, "wait-transfer-code-"+lang+"-"+screen.name)
				if shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#amount`))); err != nil || strings.TrimSpace(shown) != wantAmount[lang] {
					t.Errorf("%s page shows the amount %q (%v), want %q", lang, shown, err, wantAmount[lang])
				}
				ch := waitChallenge(t, phone)
				// What the phone signs over is the context as created: the
				// raw amount the bank reads, the formatted one only beside it.
				var signed struct {
					Transaction struct {
						Amount      string            `json:"amount"`
						AmountShown map[string]string `json:"amount_shown"`
					} `json:"transaction"`
				}
				if err := json.Unmarshal([]byte(ch.Context), &signed); err != nil || signed.Transaction.Amount != "1500000" ||
					signed.Transaction.AmountShown[lang] != wantAmount[lang] {
					t.Fatalf("signed context %s (%v): want the raw amount 1500000 and %q beside it", ch.Context, err, wantAmount[lang])
				}
				// The phone shows the same, in its language.
				tab, closeTab := chromedp.NewContext(ctx)
				if _, err := chromedp.Call(tab, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Accept-Language": lang}}); err != nil {
					t.Fatal(err)
				}
				if err := chromedp.Do(tab, chromedp.EmulateViewport(390, 844), chromedp.Navigate(phoneScreen.URL), chromedp.WaitVisible(chromedp.CSS(`#prompt-`+ch.ID+` .amount`))); err != nil {
					t.Fatalf("the phone's screen: %v", err)
				}
				onPhone, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(`#prompt-`+ch.ID+` .amount`)))
				if err != nil || strings.TrimSpace(onPhone) != wantAmount[lang] {
					t.Errorf("%s phone shows the amount %q (%v), want %q", lang, onPhone, err, wantAmount[lang])
				}
				screenshot(t, tab, "phone-transfer-"+lang)
				closeTab()
				if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#ocra-box summary`)), chromedp.WaitVisible(chromedp.CSS(`#ocra-response`))); err != nil {
					t.Fatal(err)
				}
				amount, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#ocra-amount`)))
				if err != nil || strings.TrimSpace(amount) != "1,500,000 JPY" {
					t.Fatalf("offline form amount %q %v", amount, err)
				}
				screenshot(t, ctx, "wait-transfer-offline-"+lang+"-"+screen.name)
				if n := len(opsOf(e.ops(t), bank.OpTransfer)); n != 0 {
					t.Fatalf("bank executed %d transfers while the page waits", n)
				}
				if ch.Parsed.CodeDigits != 6 {
					t.Fatalf("transfer challenge asks for %d digits", ch.Parsed.CodeDigits)
				}
				if st, _ := phone.DecideWithCode(context.Background(), ch, device.Approve, code); st != http.StatusOK {
					t.Fatalf("transfer approval: %d", st)
				}
				if err := waitText(ctx, "Transfer of 1500000 JPY to 5550001 accepted"); err != nil {
					t.Fatal(err)
				}
				if transfers := opsOf(e.ops(t), bank.OpTransfer); len(transfers) != 1 {
					t.Fatalf("bank transfers %+v, want one", transfers)
				}
			})
		}
	}
}
