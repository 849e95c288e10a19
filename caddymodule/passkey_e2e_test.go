package caddymodule_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/onepush/onepush/policy"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/internal/caddyrig"
	"github.com/onepush/onepush/pushauth/gate"
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
	admin  string // the onepush admin API's base URL
}

const passkeyAdminToken = "passkey-admin-token"

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
	return newPasskeyRigWith(t, envOptions{edit: passkeyPolicy(t)})
}

func newPasskeyRigWith(t *testing.T, opts envOptions) *passkeyRig {
	t.Helper()
	e := newEnv(t, opts)
	port, adminPort, apiPort := freePort(t), freePort(t), freePort(t)
	origin := fmt.Sprintf("http://%s:%d", passkeyRPID, port)
	// Forged assertions count toward the lock like wrong codes; these
	// tests send more than 5 on purpose.
	global := "\t\tstore embedded {\n\t\t\tauto_init\n\t\t}\n\t\tpush_rate 60\n\t\tmax_failures 50"
	site := fmt.Sprintf("\tonepush_device\n\tonepush {\n\t\tpolicy %s\n\t\tpasskeys {\n\t\t\trp_id %s\n\t\t\trp_name \"Demo Bank\"\n\t\t\torigins %s\n\t\t}\n\t}\n\treverse_proxy %s",
		e.policy, passkeyRPID, origin, strings.TrimPrefix(e.bankURL, "http://"))
	api := caddyrig.Site(apiPort, "\tonepush_admin {\n\t\ttoken "+passkeyAdminToken+"\n\t}\n\trespond 404")
	g, err := e.runCaddy(caddyrig.Options(adminPort, "", global)+caddyrig.Site(port, site)+api, port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	phone := newPhone(t, g)
	enroll(t, g, alice, phone)
	e.resetOps(t)
	return &passkeyRig{e: e, g: g, phone: phone, origin: origin, admin: fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", apiPort)}
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

// pushLogin logs alice in with a push and the code the page shows; it
// returns the login's challenge id.
func (p *passkeyRig) pushLogin(t *testing.T, ctx context.Context) string {
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
	return ch.ID
}

// withPasskey is the start of most passkey tests: alice, enrolled, logs in
// with her phone in a fresh Chromium and registers a passkey there (shot
// names the registration's screenshots, "" for none).
func withPasskey(t *testing.T, shot string) (*passkeyRig, context.Context, webauthn.AuthenticatorID) {
	t.Helper()
	p := newPasskeyRig(t)
	ctx, auth := passkeyChrome(t)
	p.pushLogin(t, ctx)
	p.register(t, ctx, shot)
	return p, ctx, auth
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
		passkeyShots(t, ctx, shot+"-start")
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

// waitSelector waits up to 20s for a visible element matching sel.
func waitSelector(ctx context.Context, sel string) error {
	return waitJS(ctx, fmt.Sprintf("(function(){var e=document.querySelector(%q);return !!e && !e.hidden && e.offsetParent!==null})()", sel), sel)
}

// passkeyShots reloads the current page in Japanese and English, on a
// 390×844 phone and a desktop, and takes a screenshot of each.
func passkeyShots(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	for _, lang := range []string{"en", "ja"} {
		if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Accept-Language": lang}}); err != nil {
			t.Fatal(err)
		}
		for _, sz := range []struct {
			name   string
			w, h   int64
			mobile bool
		}{{"phone", 390, 844, true}, {"desktop", 1280, 800, false}} {
			if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: sz.w, Height: sz.h, DeviceScaleFactor: 1, Mobile: sz.mobile}); err != nil {
				t.Fatal(err)
			}
			if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
				t.Fatal(err)
			}
			screenshot(t, ctx, name+"-"+lang+"-"+sz.name)
		}
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
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
	p, ctx, _ := withPasskey(t, "passkey-register")
	p.logout(t, ctx)
	p.e.resetOps(t)

	for i := range 2 {
		before := len(p.e.ops(t))
		p.loginOn(t, ctx)
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#passkey-start`))); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			passkeyShots(t, ctx, "passkey-login-waiting")
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
	m := scrape(t, p.g.Admin+"/metrics")
	for series, want := range map[string]float64{
		`caddy_onepush_passkey_results_total{ceremony="login",result="approved"}`:     2,
		`caddy_onepush_passkey_results_total{ceremony="registration",result="added"}`: 1,
	} {
		if got := m[series]; got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// waiting is what a test needs of the waiting page a browser shows: the
// challenge id, the challenge its passkey is asked to sign, and the
// browser's cookies (the waiting page's binding and the bank session).
type waiting struct {
	id        string
	challenge []byte
	cookies   string
}

var (
	passkeyFormAction = regexp.MustCompile(`action="/onepush/wait/([A-Za-z0-9_-]+)/passkey"`)
	passkeyChallenge  = regexp.MustCompile(`"publicKey":\{"allowCredentials":\[[^\]]*\],"challenge":"([A-Za-z0-9_-]+)"`)
)

func (p *passkeyRig) waitingPage(t *testing.T, ctx context.Context) waiting {
	t.Helper()
	if err := waitSelector(ctx, `#passkey-start`); err != nil {
		t.Fatal(err)
	}
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(`html`)))
	if err != nil {
		t.Fatal(err)
	}
	m, c := passkeyFormAction.FindStringSubmatch(html), passkeyChallenge.FindStringSubmatch(html)
	if m == nil || c == nil {
		t.Fatalf("waiting page without passkey form or challenge:\n%.3000s", html)
	}
	ch, err := base64.RawURLEncoding.DecodeString(c[1])
	if err != nil {
		t.Fatal(err)
	}
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{p.origin + "/onepush/wait/" + m[1] + "/passkey"}})
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, ck := range res.Cookies {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return waiting{id: m[1], challenge: ch, cookies: strings.Join(parts, "; ")}
}

// forger signs as the browser's virtual authenticator: its one
// credential's private key, read with WebAuthn.getCredentials.
func forger(t *testing.T, ctx context.Context, auth webauthn.AuthenticatorID) *passkeytest.Authenticator {
	t.Helper()
	res, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: auth})
	if err != nil || len(res.Credentials) != 1 {
		t.Fatalf("WebAuthn.getCredentials: %v (%d credentials, want 1)", err, len(res.Credentials))
	}
	c := res.Credentials[0]
	a, err := passkeytest.FromPKCS8(passkeyRPID, c.CredentialID, c.PrivateKey, uint32(c.SignCount))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// postAssertion posts an assertion to a waiting page as its browser
// would, with that browser's cookies; it returns the status.
func (p *passkeyRig) postAssertion(t *testing.T, w waiting, assertion []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.g.URL+"/onepush/wait/"+w.id+"/passkey",
		strings.NewReader(url.Values{"credential": {string(assertion)}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = strings.TrimPrefix(p.origin, "http://")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", w.cookies)
	resp, err := newBrowser().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// clientData is a clientDataJSON as Chromium writes it.
func clientData(typ string, challenge []byte, origin string, extra map[string]any) []byte {
	return passkeytest.ClientData(typ, challenge, origin, extra)
}

// TestPasskeyPasswordFirstLogin: the example's password-first login
// (after_success on a waiting page) with passkey_or_push: the bank checks
// the password, its answer is held until the passkey, and handed over once.
func TestPasskeyPasswordFirstLogin(t *testing.T) {
	const line = "    mode: interstitial         # a waiting page with a 6-digit code (code_digits)\n"
	p := newPasskeyRigWith(t, envOptions{passwordFirst: true, edit: func(s string) string {
		if !strings.Contains(s, line) {
			t.Fatal("the example login rule changed")
		}
		return strings.Replace(s, line, line+"    method: passkey_or_push\n", 1)
	}})
	ctx, _ := passkeyChrome(t)
	p.pushLogin(t, ctx)
	p.register(t, ctx, "")
	p.logout(t, ctx)
	p.e.resetOps(t)
	p.loginOn(t, ctx)
	if err := waitSelector(ctx, `#passkey-start`); err != nil {
		t.Fatal(err)
	}
	p.noPush(t)
	// The password was checked; the session it opened is not the browser's yet.
	if logins := opsOf(p.e.ops(t), bank.OpLogin); len(logins) != 1 {
		t.Fatalf("bank logins before the passkey: %+v, want the password check", logins)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#passkey-start`))); err != nil {
		t.Fatal(err)
	}
	if err := waitText(ctx, "Welcome"); err != nil {
		t.Fatal(err)
	}
	if logins := opsOf(p.e.ops(t), bank.OpLogin); len(logins) != 1 {
		t.Fatalf("bank logins: %+v, want one", logins)
	}
}

// TestPasskeyForgedAssertions: assertions signed with the virtual
// authenticator's own key (what malware or a phishing relay could at best
// obtain) are refused with 401 and release nothing when they are for
// another origin, another RP ID, another top origin, another held
// request's challenge, or used before; the same forger's correct
// assertion is accepted, so each refusal is the gateway's check.
func TestPasskeyForgedAssertions(t *testing.T) {
	p, ctx, auth := withPasskey(t, "")
	p.logout(t, ctx)
	a := forger(t, ctx, auth)

	p.loginOn(t, ctx)
	first := p.waitingPage(t, ctx)
	p.e.resetOps(t)
	refused := func(name string, w waiting, assertion []byte) {
		t.Helper()
		if st := p.postAssertion(t, w, assertion); st != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, st)
		}
		if ops := p.e.ops(t); len(ops) != 0 {
			t.Fatalf("%s: the bank executed %+v", name, ops)
		}
	}
	otherRP, _ := passkeytest.New("evil.localhost")
	refused("another origin", first, a.Assert(clientData("webauthn.get", first.challenge, "http://bank-login.localhost:"+portOf(p.origin), nil), nil))
	refused("another RP ID hash", first, a.Assert(clientData("webauthn.get", first.challenge, p.origin, nil), otherRP.RPIDHash()))
	refused("another top origin", first, a.Assert(clientData("webauthn.get", first.challenge, p.origin,
		map[string]any{"crossOrigin": true, "topOrigin": "http://evil.localhost"}), nil))
	refused("a payment assertion for a login", first, a.Assert(clientData("payment.get", first.challenge, p.origin, nil), nil))

	// A second login: its challenge is another, and the first's
	// assertion does not fit it.
	p.loginOn(t, ctx)
	second := p.waitingPage(t, ctx)
	if second.id == first.id || string(second.challenge) == string(first.challenge) {
		t.Fatal("a new login got the same challenge")
	}
	refused("another held request's challenge", second, a.Assert(clientData("webauthn.get", first.challenge, p.origin, nil), nil))

	// The forger's correct assertion is accepted: the login reaches the
	// bank once. Used again, here or on a later challenge, it is refused.
	good := a.Assert(clientData("webauthn.get", second.challenge, p.origin, nil), nil)
	if st := p.postAssertion(t, second, good); st != http.StatusSeeOther && st != http.StatusOK {
		t.Fatalf("a correct assertion: %d, want the bank's answer", st)
	}
	if logins := opsOf(p.e.ops(t), bank.OpLogin); len(logins) != 1 {
		t.Fatalf("bank logins after a correct assertion: %+v", logins)
	}
	p.e.resetOps(t)
	refused("the same assertion again", second, good)
	p.loginOn(t, ctx)
	third := p.waitingPage(t, ctx)
	refused("the same assertion on a later challenge", third, good)
	// An old counter with a fresh challenge: the authenticator was cloned.
	a.Count -= 2
	if st := p.postAssertion(t, third, a.Assert(clientData("webauthn.get", third.challenge, p.origin, nil), nil)); st != http.StatusUnauthorized {
		t.Errorf("a counter that did not grow: %d, want 401", st)
	}
	if ops := p.e.ops(t); len(ops) != 0 {
		t.Fatalf("a cloned authenticator's assertion: the bank executed %+v", ops)
	}
	u := adminUser(t, p)
	if u != "locked" {
		t.Fatalf("after a counter that did not grow the user is %q, want locked", u)
	}
}

// adminUser is alice's state as the admin API shows it.
func adminUser(t *testing.T, p *passkeyRig) string {
	t.Helper()
	resp := adminCall(t, p.admin, passkeyAdminToken, "", http.MethodGet, "/user?key="+url.QueryEscape(alice.ContractNo+"/"+alice.UserID), nil)
	defer resp.Body.Close()
	var v struct {
		State string `json:"state"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin user: %d %v", resp.StatusCode, err)
	}
	return v.State
}

// adminPasskeys lists alice's passkeys through the admin API.
func adminPasskeys(t *testing.T, p *passkeyRig) []map[string]any {
	t.Helper()
	resp := adminCall(t, p.admin, passkeyAdminToken, "", http.MethodGet, "/user/passkeys?key="+url.QueryEscape(alice.ContractNo+"/"+alice.UserID), nil)
	defer resp.Body.Close()
	var v struct {
		Passkeys []map[string]any `json:"passkeys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin passkeys: %d %v", resp.StatusCode, err)
	}
	return v.Passkeys
}

func portOf(origin string) string { return origin[strings.LastIndex(origin, ":")+1:] }

// transferOn posts a transfer from the bank's own form; the browser
// stands on the waiting page when it returns.
func (p *passkeyRig) transferOn(t *testing.T, ctx context.Context, payee, amount string) waiting {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(p.origin+"/transfer"),
		chromedp.WaitVisible(chromedp.CSS(`#payee_account`)),
		chromedp.SetValue(chromedp.CSS(`#payee_account`), payee),
		chromedp.SetValue(chromedp.CSS(`#amount`), amount),
		chromedp.SendKeys(chromedp.CSS(`#txn_password`), alice.TxnPassword),
		chromedp.Submit(chromedp.CSS(`#txn_password`)),
	); err != nil {
		t.Fatal(err)
	}
	w := p.waitingPage(t, ctx)
	shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#amount`)))
	// bank.yaml's amount_format for an English page (the signed amount stays raw).
	if want := "¥" + policy.GroupThousands(amount); err != nil || strings.TrimSpace(shown) != want {
		t.Fatalf("the waiting page shows amount %q (%v), want %s", shown, err, want)
	}
	return w
}

// spcMode sets how Chromium answers Secure Payment Confirmation's dialog.
func spcMode(t *testing.T, ctx context.Context, mode page.SetSPCTransactionModeMode) {
	t.Helper()
	if _, err := chromedp.Call(ctx, page.SetSPCTransactionMode, page.SetSPCTransactionModeParams{Mode: mode}); err != nil {
		t.Fatalf("Page.setSPCTransactionMode %s: %v", mode, err)
	}
}

// transfers is the bank's executed transfers.
func (p *passkeyRig) transfers(t *testing.T) []bank.Op { return opsOf(p.e.ops(t), bank.OpTransfer) }

// payment is the payment member of clientDataJSON as Chromium writes it
// for a transfer of amount JPY to payee on the example policy's transfer
// rule (service 振込, the gateway's default icon).
func (p *passkeyRig) payment(payee, amount string) map[string]any {
	return map[string]any{"rpId": passkeyRPID, "topOrigin": p.origin, "payeeName": payee, "paymentEntitiesLogos": []any{},
		"total":      map[string]any{"currency": "JPY", "value": amount},
		"instrument": map[string]any{"displayName": "振込", "icon": gate.DefaultInstrumentIcon}}
}

// TestPasskeySecurePaymentConfirmation: a transfer on a passkey rule asks
// Secure Payment Confirmation, whose dialog shows payee and amount taken
// from the held request: accepted, the bank executes exactly that amount
// to that payee; rejected, nothing; an assertion whose payment data names
// another amount, payee or top origin (re-signed with the authenticator's
// own key) is refused with 401.
func TestPasskeySecurePaymentConfirmation(t *testing.T) {
	p, ctx, auth := withPasskey(t, "")
	p.e.resetOps(t)

	t.Run("accepted", func(t *testing.T) {
		p.transferOn(t, ctx, "7654321", "15000")
		screenshot(t, ctx, "passkey-spc-waiting")
		p.noPush(t)
		spcMode(t, ctx, page.SetSPCTransactionModeModeAutoAccept)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#passkey-start`))); err != nil {
			t.Fatal(err)
		}
		if err := waitText(ctx, "Transfer of 15000 JPY to 7654321 accepted"); err != nil {
			t.Fatalf("SPC transfer: %v", err)
		}
		tx := p.transfers(t)
		if len(tx) != 1 || tx[0].Amount != "15000" || tx[0].PayeeAccount != "7654321" || tx[0].UserID != "alice" {
			t.Fatalf("bank transfers %+v, want alice's 15000 to 7654321 once", tx)
		}
	})

	t.Run("rejected in the browser's dialog", func(t *testing.T) {
		p.e.resetOps(t)
		p.transferOn(t, ctx, "1111111", "23000")
		spcMode(t, ctx, page.SetSPCTransactionModeModeAutoReject)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#passkey-start`))); err != nil {
			t.Fatal(err)
		}
		if err := waitSelector(ctx, `#passkey-error`); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "passkey-spc-rejected")
		if ops := p.e.ops(t); len(ops) != 0 {
			t.Fatalf("after a rejection the bank executed %+v", ops)
		}
	})

	t.Run("payment data naming something else", func(t *testing.T) {
		p.e.resetOps(t)
		w := p.transferOn(t, ctx, "2222222", "30000")
		a := forger(t, ctx, auth)
		for name, edit := range map[string]func(m map[string]any){
			"another amount":     func(m map[string]any) { m["total"] = map[string]any{"currency": "JPY", "value": "3000000"} },
			"another payee":      func(m map[string]any) { m["payeeName"] = "9999999" },
			"another top origin": func(m map[string]any) { m["topOrigin"] = "http://bank-login.localhost:" + portOf(p.origin) },
		} {
			pay := p.payment("2222222", "30000")
			edit(pay)
			cd := clientData("payment.get", w.challenge, p.origin, map[string]any{"payment": pay})
			if st := p.postAssertion(t, w, a.Assert(cd, nil)); st != http.StatusUnauthorized {
				t.Errorf("%s: %d, want 401", name, st)
			}
			if ops := p.e.ops(t); len(ops) != 0 {
				t.Fatalf("%s: the bank executed %+v", name, ops)
			}
		}
		// What the held request says, signed the same way: executed.
		cd := clientData("payment.get", w.challenge, p.origin, map[string]any{"payment": p.payment("2222222", "30000")})
		if st := p.postAssertion(t, w, a.Assert(cd, nil)); st != http.StatusSeeOther && st != http.StatusOK {
			t.Fatalf("the matching payment assertion: %d", st)
		}
		if tx := p.transfers(t); len(tx) != 1 || tx[0].Amount != "30000" || tx[0].PayeeAccount != "2222222" {
			t.Fatalf("bank transfers %+v, want 30000 to 2222222 once", tx)
		}
	})
}

// TestPasskeyTransferFallback: where Secure Payment Confirmation is
// unavailable the page asks a plain WebAuthn assertion over the same
// challenge, bound to the transfer's context: it executes that transfer,
// and an assertion for another challenge's context is refused.
func TestPasskeyTransferFallback(t *testing.T) {
	p, ctx, auth := withPasskey(t, "")
	p.e.resetOps(t)

	first := p.transferOn(t, ctx, "3333333", "4200")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("(window.PaymentRequest = undefined, true)")); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#passkey-start`))); err != nil {
		t.Fatal(err)
	}
	if err := waitText(ctx, "Transfer of 4200 JPY to 3333333 accepted"); err != nil {
		t.Fatalf("WebAuthn fallback transfer: %v", err)
	}
	if tx := p.transfers(t); len(tx) != 1 || tx[0].Amount != "4200" || tx[0].PayeeAccount != "3333333" {
		t.Fatalf("bank transfers %+v, want 4200 to 3333333 once", tx)
	}

	p.e.resetOps(t)
	second := p.transferOn(t, ctx, "4444444", "990000")
	a := forger(t, ctx, auth)
	if st := p.postAssertion(t, second, a.Assert(clientData("webauthn.get", first.challenge, p.origin, nil), nil)); st != http.StatusUnauthorized {
		t.Errorf("an assertion over the first transfer's context on the second: %d, want 401", st)
	}
	if ops := p.e.ops(t); len(ops) != 0 {
		t.Fatalf("the bank executed %+v", ops)
	}
	if st := p.postAssertion(t, second, a.Assert(clientData("webauthn.get", second.challenge, p.origin, nil), nil)); st != http.StatusSeeOther && st != http.StatusOK {
		t.Fatalf("the assertion over its own context: %d", st)
	}
	if tx := p.transfers(t); len(tx) != 1 || tx[0].Amount != "990000" || tx[0].PayeeAccount != "4444444" {
		t.Fatalf("bank transfers %+v, want 990000 to 4444444 once", tx)
	}
}

// TestPasskeyRegistrationNeedsItsOwnApproval: a session whose login the
// phone approved (what a real-time phishing relay holds) cannot register a
// passkey with that approval: only a passkey.add challenge of its own,
// approved on the phone with the code its page shows, lets it.
func TestPasskeyRegistrationNeedsItsOwnApproval(t *testing.T) {
	p := newPasskeyRig(t)
	ctx, _ := passkeyChrome(t)
	loginID := p.pushLogin(t, ctx)
	// The transfer rule asks for a passkey and she has none: refused,
	// nothing forwarded, nothing pushed.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(p.origin+"/transfer"),
		chromedp.WaitVisible(chromedp.CSS(`#payee_account`)),
		chromedp.SetValue(chromedp.CSS(`#payee_account`), "7654321"),
		chromedp.SetValue(chromedp.CSS(`#amount`), "5000"),
		chromedp.SendKeys(chromedp.CSS(`#txn_password`), alice.TxnPassword),
		chromedp.Submit(chromedp.CSS(`#txn_password`)),
	); err != nil {
		t.Fatal(err)
	}
	if err := waitText(ctx, "This operation needs a passkey"); err != nil {
		t.Fatal(err)
	}
	p.noPush(t)
	if tx := p.transfers(t); len(tx) != 0 {
		t.Fatalf("a passkey rule without a passkey: the bank executed %+v", tx)
	}
	attacker, err := passkeytest.New(passkeyRPID)
	if err != nil {
		t.Fatal(err)
	}
	finish := func(name, id string) {
		t.Helper()
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{p.origin + "/onepush/passkeys/" + id + "/finish"}})
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, ck := range res.Cookies {
			parts = append(parts, ck.Name+"="+ck.Value)
		}
		for _, path := range []string{"/options", "/finish"} {
			method, body := http.MethodGet, io.Reader(nil)
			if path == "/finish" {
				method, body = http.MethodPost, strings.NewReader(string(attacker.Register([]byte("any challenge"), p.origin)))
			}
			req, _ := http.NewRequest(method, p.g.URL+"/onepush/passkeys/"+id+path, body)
			req.Host = strings.TrimPrefix(p.origin, "http://")
			req.Header.Set("Cookie", strings.Join(parts, "; "))
			resp, err := newBrowser().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %s %s: %d, want 403", name, method, path, resp.StatusCode)
			}
		}
	}
	// The approved login's own challenge is no passkey.add approval.
	finish("with the approved login's challenge", loginID)

	// A passkey.add challenge of its own, not (yet) approved.
	if err := chromedp.Do(ctx, chromedp.Navigate(p.origin+"/onepush/passkeys"), chromedp.WaitVisible(chromedp.CSS(`#add`)),
		chromedp.Click(chromedp.CSS(`#add`))); err != nil {
		t.Fatal(err)
	}
	if err := waitSelector(ctx, `#code`); err != nil {
		t.Fatal(err)
	}
	ch := waitChallenge(t, p.phone)
	finish("with a pending passkey.add", ch.ID)
	// Denied on the phone (the customer did not ask for it).
	if st, err := p.phone.DecideWithCode(context.Background(), ch, device.Deny, ""); err != nil || st != http.StatusOK {
		t.Fatalf("deny: %d %v", st, err)
	}
	finish("with a denied passkey.add", ch.ID)
	// Approved with a wrong code (typed from somewhere else): denied too.
	if err := chromedp.Do(ctx, chromedp.Navigate(p.origin+"/onepush/passkeys"), chromedp.WaitVisible(chromedp.CSS(`#add`)),
		chromedp.Click(chromedp.CSS(`#add`))); err != nil {
		t.Fatal(err)
	}
	code := shownCode(t, ctx)
	ch = waitChallenge(t, p.phone)
	if st, _ := p.phone.DecideWithCode(context.Background(), ch, device.Approve, otherCode(code)); st != http.StatusOK {
		t.Fatalf("approve with a wrong code: %d", st)
	}
	finish("with a passkey.add approved with a wrong code", ch.ID)
	if list := adminPasskeys(t, p); len(list) != 0 {
		t.Fatalf("alice has passkeys %v, want none", list)
	}
	// With its own approval the same browser registers one.
	p.register(t, ctx, "")
	list := adminPasskeys(t, p)
	if len(list) != 1 || list[0]["payment"] != true {
		t.Fatalf("alice's passkeys %v, want one, registered for payments", list)
	}

	// The bank's support lists and revokes it with the CLI; her next
	// login asks her phone again.
	key, id := alice.ContractNo+"/"+alice.UserID, list[0]["id"].(string)
	run := func(args ...string) string {
		t.Helper()
		out, code := cli(t, append(args, "--admin", p.admin, "--token", passkeyAdminToken, "--actor", "e2e-tester")...)
		if code != 0 {
			t.Fatalf("caddy onepush %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}
	if out := run("user", "passkeys", key); !strings.Contains(out, "1 passkeys") || !strings.Contains(out, id) || !strings.Contains(out, "payment true") {
		t.Fatalf("caddy onepush user passkeys:\n%s", out)
	}
	run("user", "passkeys", key, "--revoke", id)
	if list := adminPasskeys(t, p); len(list) != 0 {
		t.Fatalf("after revoke: %v", list)
	}
	p.logout(t, ctx)
	p.pushLogin(t, ctx)
}
