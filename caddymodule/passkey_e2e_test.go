package caddymodule_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/internal/caddyrig"
	"github.com/onepush/onepush/pushauth/passkey/passkeytest"
)

// passkeyRPID is the relying party of the passkey tests: Chromium resolves
// *.localhost to loopback and treats http://*.localhost as a secure
// context, so WebAuthn and Secure Payment Confirmation run without TLS
// (an IP address cannot be an RP ID).
const passkeyRPID = "bank.localhost"

// passkeyRig is the bank behind a real Caddy whose login rule is
// passkey_or_push and whose transfer rule is passkey (both on a waiting
// page), with alice's phone enrolled.
type passkeyRig struct {
	e      *env
	g      *gateway
	phone  *device.Phone
	origin string // http://bank.localhost:<port>
}

// passkeyPolicy makes the example's login (held) and transfer rules wait
// on a page and ask for passkeys.
func passkeyPolicy(t *testing.T) func(string) string {
	return func(s string) string {
		s = interstitialPolicy(s)
		s = strings.Replace(s, "    mode: interstitial\n", "    mode: interstitial\n    method: passkey_or_push\n", 1)
		const tx = "    user: {session: true}\n    # What moves"
		if !strings.Contains(s, tx) {
			t.Fatal("the example policy's transfer rule changed: cannot add method: passkey")
		}
		return strings.Replace(s, tx, "    user: {session: true}\n    mode: interstitial\n    method: passkey\n    # What moves", 1)
	}
}

func newPasskeyRig(t *testing.T) *passkeyRig {
	t.Helper()
	e := newEnv(t, envOptions{edit: passkeyPolicy(t)})
	port, adminPort := freePort(t), freePort(t)
	origin := fmt.Sprintf("http://%s:%d", passkeyRPID, port)
	// Forged assertions count toward the lock like wrong codes; these
	// tests send more than 5 on purpose.
	global := "\t\tstore embedded {\n\t\t\tauto_init\n\t\t}\n\t\tpush_rate 60\n\t\tmax_failures 50"
	site := fmt.Sprintf("\tonepush_device\n\tonepush {\n\t\tpolicy %s\n\t\tpasskeys {\n\t\t\trp_id %s\n\t\t\trp_name \"Demo Bank\"\n\t\t\torigins %s\n\t\t}\n\t}\n\treverse_proxy %s",
		e.policy, passkeyRPID, origin, strings.TrimPrefix(e.bankURL, "http://"))
	g, err := e.runCaddy(caddyrig.Options(adminPort, "", global)+caddyrig.Site(port, site), port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	phone := newPhone(t, g)
	enroll(t, g, alice, phone)
	e.resetOps(t)
	return &passkeyRig{e: e, g: g, phone: phone, origin: origin}
}

// passkeyChrome is a headless Chromium with Secure Payment Confirmation
// enabled and a virtual platform authenticator (CTAP2, internal, user
// verification that succeeds, resident keys).
func passkeyChrome(t *testing.T) (context.Context, webauthn.AuthenticatorID) {
	t.Helper()
	ctx := newChrome(t, chromedp.Flag("enable-features", "SecurePaymentConfirmationBrowser"))
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
		Protocol: webauthn.AuthenticatorProtocolCtap2, Transport: webauthn.AuthenticatorTransportInternal,
		HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
	}})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	return ctx, res.AuthenticatorID
}

// loginOn submits alice's login at the rig's origin; the browser stands on
// the waiting page when it returns.
func (p *passkeyRig) loginOn(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := submitLogin(ctx, p.origin, alice); err != nil {
		t.Fatal(err)
	}
}

// pushLogin logs alice in with a push and the code the page shows.
func (p *passkeyRig) pushLogin(t *testing.T, ctx context.Context) {
	t.Helper()
	p.loginOn(t, ctx)
	code := shownCode(t, ctx)
	ch := waitChallenge(t, p.phone)
	if st, err := p.phone.DecideWithCode(context.Background(), ch, device.Approve, code); err != nil || st != http.StatusOK {
		t.Fatalf("approve the login: %d %v", st, err)
	}
	if err := waitText(ctx, "Welcome"); err != nil {
		t.Fatal(err)
	}
}

// register adds a passkey for the logged-in alice through the passkey
// page: its own passkey.add challenge, approved on the phone with the code
// the page shows, then the browser's create().
func (p *passkeyRig) register(t *testing.T, ctx context.Context, shot string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(p.origin+"/onepush/passkeys"),
		chromedp.WaitVisible(chromedp.CSS(`#add`)),
	); err != nil {
		t.Fatal(err)
	}
	if shot != "" {
		screenshot(t, ctx, shot+"-start")
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#add`))); err != nil {
		t.Fatal(err)
	}
	if err := waitSelector(ctx, `#code`); err != nil {
		t.Fatal(err)
	}
	code := shownCode(t, ctx)
	if shot != "" {
		screenshot(t, ctx, shot+"-code")
	}
	ch := waitChallenge(t, p.phone)
	if ch.Kind != "passkey.add" || ch.Parsed.CodeDigits != 6 || !strings.Contains(ch.Parsed.UserAgent, "Chrome") || ch.Parsed.ClientIP == "" ||
		ch.Parsed.Service == "" || !strings.HasPrefix(ch.Parsed.Host, passkeyRPID) {
		t.Fatalf("the phone's passkey.add prompt does not name the browser, address, service and host: kind %q %+v", ch.Kind, ch.Parsed)
	}
	if st, err := p.phone.DecideWithCode(context.Background(), ch, device.Approve, code); err != nil || st != http.StatusOK {
		t.Fatalf("approve passkey.add: %d %v", st, err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#create`)), chromedp.Click(chromedp.CSS(`#create`))); err != nil {
		t.Fatal(err)
	}
	if err := waitText(ctx, "The passkey was added"); err != nil {
		t.Fatal(err)
	}
	if shot != "" {
		screenshot(t, ctx, shot+"-added")
	}
}

// logout ends the bank session from the dashboard.
func (p *passkeyRig) logout(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(p.origin+"/dashboard"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/logout"] button`)),
		chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=contract_no]`)),
	); err != nil {
		t.Fatal(err)
	}
}

// waitSelector waits up to 20s for a visible element matching sel; the
// error shows the page.
func waitSelector(ctx context.Context, sel string) error {
	deadline := time.Now().Add(20 * time.Second)
	expr := fmt.Sprintf("(function(){var e=document.querySelector(%q);return !!e && !e.hidden && e.offsetParent!==null})()", sel)
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(`html`)))
	return fmt.Errorf("%s did not appear within 20s; page:\n%.3000s", sel, html)
}

// noPush fails when the phone was asked anything.
func (p *passkeyRig) noPush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if list, err := p.phone.Pending(ctx); err != nil || len(list) != 0 {
		t.Fatalf("the phone has %d pending challenges (%v), want none: a passkey challenge is not the phone's", len(list), err)
	}
}

// TestPasskeyLogin: a passkey registered through its own passkey.add
// approval (the code typed into the phone) makes later logins need only
// the passkey; the bank gets each login exactly once.
func TestPasskeyLogin(t *testing.T) {
	p := newPasskeyRig(t)
	ctx, _ := passkeyChrome(t)
	p.pushLogin(t, ctx)
	p.register(t, ctx, "passkey-register")
	p.logout(t, ctx)
	p.e.resetOps(t)

	for i := range 2 {
		before := len(p.e.ops(t))
		p.loginOn(t, ctx)
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#passkey-start`))); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			screenshot(t, ctx, "passkey-login-waiting")
		}
		p.noPush(t)
		if n := len(p.e.ops(t)); n != before {
			t.Fatalf("bank executed %d operations before the passkey: %+v", n-before, p.e.ops(t))
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#passkey-start`))); err != nil {
			t.Fatal(err)
		}
		if err := waitText(ctx, "Welcome"); err != nil {
			t.Fatalf("login %d with the passkey: %v", i+1, err)
		}
		if logins := opsOf(p.e.ops(t), bank.OpLogin); len(logins) != i+1 || logins[i].UserID != "alice" {
			t.Fatalf("bank logins after %d passkey logins: %+v", i+1, logins)
		}
		p.logout(t, ctx)
	}
}

var _ = []any{base64.RawURLEncoding, json.Marshal, io.ReadAll, url.Values{}, regexp.MustCompile, network.GetCookies, page.SetSPCTransactionMode, passkeytest.New}
