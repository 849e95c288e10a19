package caddymodule_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/notifysink"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/internal/caddyrig"
)

// Binding a phone, attacked through a real Caddy in front of the legacy
// bank: a stolen password in a grace period, a bank that sets its cookie
// on a failed login, cross-site posts, a flood of enrolment attempts, and
// logins of unenrolled users under deny. Every gateway here announces to a
// real HTTP sink (examples/notifysink) that verifies each signature.

const bindingAdminToken = "binding-admin-token-0123456789abcdef"

// bindingGateway is a Caddy with the notify webhook and the admin API.
type bindingGateway struct {
	*gateway
	sink     *notifysink.Sink
	sinkURL  string
	secret   string
	adminAPI string
}

type bindingOptions struct {
	servers string // lines of the global servers block
	global  string // more global onepush options
	secret  string // the notify secret; "" makes one
	sinkURL string // an existing sink; "" starts one
}

func newNotifySecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func startBindingGateway(t *testing.T, e *env, o bindingOptions) *bindingGateway {
	t.Helper()
	g := &bindingGateway{secret: o.secret, sinkURL: o.sinkURL}
	if g.secret == "" {
		g.secret = newNotifySecret(t)
	}
	if g.sinkURL == "" {
		g.sink = notifysink.New(g.secret)
		srv := httptest.NewServer(g.sink)
		t.Cleanup(srv.Close)
		g.sinkURL = srv.URL + "/"
	}
	port, adminPort, internal := freePort(t), freePort(t), freePort(t)
	global := fmt.Sprintf("\t\tnotify {\n\t\t\turl %s\n\t\t\tsecret %s\n\t\t}\n%s", g.sinkURL, g.secret, o.global)
	gw, err := e.runCaddy(e.caddyfile(port, adminPort, caddyConfig{Servers: o.servers, Global: global,
		AdminAPIPort: internal, AdminToken: bindingAdminToken}), port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	g.gateway = gw
	g.adminAPI = fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", internal)
	return g
}

// admin calls the admin API and decodes its JSON answer.
func (g *bindingGateway) admin(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	resp := adminCall(t, g.adminAPI, bindingAdminToken, "clerk-sato", method, path, body)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (g *bindingGateway) user(t *testing.T, key string) map[string]any {
	t.Helper()
	st, out := g.admin(t, http.MethodGet, "/user?key="+url.QueryEscape(key), nil)
	if st != http.StatusOK && st != http.StatusNotFound {
		t.Fatalf("user %s: %d %v", key, st, out)
	}
	return out
}

// audit returns the user's audit events of type typ.
func (g *bindingGateway) audit(t *testing.T, key, typ string) []map[string]any {
	t.Helper()
	q := url.Values{"user": {key}}
	if typ != "" {
		q.Set("type", typ)
	}
	st, out := g.admin(t, http.MethodGet, "/audit?"+q.Encode(), nil)
	if st != http.StatusOK {
		t.Fatalf("audit: %d %v", st, out)
	}
	var evs []map[string]any
	for _, e := range out["events"].([]any) {
		evs = append(evs, e.(map[string]any))
	}
	return evs
}

// waitMessage waits for the sink to hold a message of typ for key.
func (g *bindingGateway) waitMessage(t *testing.T, key, typ string) notifysink.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := g.sink.Wait(ctx, func(m notifysink.Message) bool { return m.User == key && m.Type == typ })
	if err != nil {
		t.Fatalf("no %s message for %s reached the bank's notification system (got %+v)", typ, key, g.sink.Messages())
	}
	return m
}

func keyOf(u bank.User) string { return u.ContractNo + "/" + u.UserID }

func outcomes(evs []map[string]any) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprint(e["outcome"]))
	}
	return out
}

// TestTakeoverDuringGraceIsRefused is attack 1: alice lost her phone and
// the bank deregistered it with a 72 h grace. Whoever knows her password
// logs in (the grace allows it) and enrols their own phone: refused, alice
// stays without a phone, the attempt is audited and she is told. Then
// alice herself binds a new phone with the activation code the bank gave
// her: bound once, a wrong code counts, the code is used up.
func TestTakeoverDuringGraceIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := startBindingGateway(t, e, bindingOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	aliceKey := keyOf(alice)
	lost := newPhone(t, g.gateway)
	enroll(t, g.gateway, alice, lost)
	g.waitMessage(t, aliceKey, "phone.bound")
	if st, out := g.admin(t, http.MethodPost, "/user/deregister", map[string]string{"key": aliceKey, "grace": "72h"}); st != http.StatusOK || out["in_grace"] != true {
		t.Fatalf("deregister with a 72h grace: %d %v", st, out)
	}

	// The attacker: alice's password, their own app.
	attacker := newBrowser()
	if resp, _, err := attacker.post(ctx, g.URL+"/login", loginBody(alice)); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("password-only login in the grace: %v %v", err, resp)
	}
	theirs := newPhone(t, g.gateway)
	st, page, err := theirs.Enrol(ctx, attacker.Client, g.URL+"/onepush/enroll", nil)
	if err != nil || st != http.StatusForbidden || !strings.Contains(page, "Activation code needed") {
		t.Fatalf("the attacker's enrolment: %v %d %.300s", err, st, page)
	}
	if u := g.user(t, aliceKey); u["credential_id"] != nil || u["state"] != "deregistered" {
		t.Fatalf("alice after the attack: %v, want no phone", u)
	}
	if evs := g.audit(t, aliceKey, "enrolment"); len(evs) == 0 || evs[len(evs)-1]["outcome"] != "activation_code_required" ||
		evs[len(evs)-1]["credential"] != theirs.CredentialID() || evs[len(evs)-1]["client_ip"] != "127.0.0.1" {
		t.Fatalf("enrolment audit after the attack: %v", evs)
	}
	refusedMsg := g.waitMessage(t, aliceKey, "binding.refused")
	if refusedMsg.Credential != theirs.CredentialID() || refusedMsg.ClientIP != "127.0.0.1" || !strings.Contains(refusedMsg.Repudiation, "contact the bank") {
		t.Fatalf("binding.refused message: %+v", refusedMsg)
	}

	// alice at the branch: a binding code from the admin API.
	st, issued := g.admin(t, http.MethodPost, "/user/activation-code", map[string]string{"key": aliceKey})
	code, _ := issued["code"].(string)
	if st != http.StatusOK || !regexp.MustCompile(`^[0-9A-Z]{5}-[0-9A-Z]{5}$`).MatchString(code) {
		t.Fatalf("activation code: %d %v", st, issued)
	}
	if exp, _ := time.Parse(time.RFC3339, fmt.Sprint(issued["expires_at"])); time.Until(exp) > 10*time.Minute || time.Until(exp) < 9*time.Minute {
		t.Fatalf("binding code expires %v, want in 10 minutes", issued["expires_at"])
	}
	b := newBrowser()
	if resp, _, err := b.post(ctx, g.URL+"/login", loginBody(alice)); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("alice's login in the grace: %v %v", err, resp)
	}
	fresh := newPhone(t, g.gateway)
	failuresBefore := g.user(t, aliceKey)["failures"].(float64)
	if st, page, _ := fresh.Enrol(ctx, b.Client, g.URL+"/onepush/enroll", url.Values{"activation_code": {"ZZZZZ-ZZZZZ"}}); st != http.StatusBadRequest || !strings.Contains(page, "Activation code not accepted") {
		t.Fatalf("a wrong activation code: %d %.300s", st, page)
	}
	if f := g.user(t, aliceKey)["failures"].(float64); f != failuresBefore+1 {
		t.Fatalf("failures after a wrong activation code: %v, want %v", f, failuresBefore+1)
	}
	// The right code, typed in lower case; the security code is the next
	// one (the wrong try used the current one up).
	next, _, _ := fresh.SecurityCodeAt(time.Now().Add(30 * time.Second))
	if st, page, _ := fresh.Enrol(ctx, b.Client, g.URL+"/onepush/enroll", url.Values{"activation_code": {strings.ToLower(code)}, "code": {next}}); st != http.StatusOK || !strings.Contains(page, "Phone registered") {
		t.Fatalf("alice's enrolment with the activation code: %d %.300s", st, page)
	}
	if u := g.user(t, aliceKey); u["credential_id"] != fresh.CredentialID() || u["state"] != "active" {
		t.Fatalf("alice after her enrolment: %v", u)
	}
	replaced := g.waitMessage(t, aliceKey, "phone.replaced")
	if replaced.Credential != fresh.CredentialID() || replaced.Previous != lost.CredentialID() || replaced.Via != "binding_code" {
		t.Fatalf("phone.replaced message: %+v", replaced)
	}
	// Once: the attacker, given the code later, cannot use it again.
	st, page, _ = theirs.Enrol(ctx, attacker.Client, g.URL+"/onepush/enroll", url.Values{"activation_code": {code}})
	if st != http.StatusBadRequest && st != http.StatusForbidden {
		t.Fatalf("second use of the activation code: %d %.300s", st, page)
	}
	if u := g.user(t, aliceKey); u["credential_id"] != fresh.CredentialID() {
		t.Fatalf("alice after the code's second use: %v", u)
	}
	// The bank's notification system refused nothing: every message the
	// gateway sent verified.
	if _, rejected := g.sink.Attempts(); rejected != 0 {
		t.Fatalf("%d messages failed the signature check", rejected)
	}
}

// TestCookieOnFailedLoginIsNoProof is attack 2: a bank that sets its
// session cookie on a wrong password too. A wrong password must get
// neither an enrolment ticket nor a session that binds.
func TestCookieOnFailedLoginIsNoProof(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
	}{
		{"not_enrolled: enrol, the bank checks the password", func(s string) string {
			return strings.Replace(s, "    not_enrolled: allow   #", "    logout: {method: POST, path: /logout}\n    not_enrolled: enrol   #", 1)
		}},
		{"not_enrolled: allow with a success condition", nil},
		{"not_enrolled: allow without a success condition", func(s string) string {
			return strings.Replace(s, "    success: {status: [303], set_cookie: BANKSESSION, location_prefix: /dashboard}", "", 1)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{edit: tc.edit})
			e.bank = bank.New(bank.Config{Users: bank.DefaultUsers(), CookieOnFailedLogin: true})
			srv := httptest.NewServer(e.bank)
			t.Cleanup(srv.Close)
			e.bankURL = srv.URL
			g := startBindingGateway(t, e, bindingOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			wrong := url.Values{"contract_no": {bob.ContractNo}, "user_id": {bob.UserID}, "password": {"guessed"}}.Encode()
			atk := newBrowser()
			resp, page, err := atk.post(ctx, g.URL+"/login", wrong)
			if err != nil || !strings.Contains(page, "Login failed") {
				t.Fatalf("wrong password: %v %v %.200s", err, resp, page)
			}
			if ops := opsOf(e.ops(t), bank.OpLoginFailed); len(ops) != 1 {
				t.Fatalf("the bank saw %d failed logins, want 1", len(ops))
			}
			u, _ := url.Parse(g.URL + "/onepush/enroll")
			for _, c := range atk.Jar.Cookies(u) {
				if c.Name == "onepush_enrol" {
					t.Fatal("a wrong password got an enrolment ticket")
				}
			}
			theirs := newPhone(t, g.gateway)
			st, page, err := theirs.Enrol(ctx, atk.Client, g.URL+"/onepush/enroll", nil)
			if err != nil || st == http.StatusOK {
				t.Fatalf("enrolment after a wrong password: %v %d %.300s", err, st, page)
			}
			if u := g.user(t, keyOf(bob)); u["enrolled"] == true || u["credential_id"] != nil {
				t.Fatalf("bob after the attack: %v", u)
			}
			for _, m := range g.sink.Messages() {
				if m.Type == "phone.bound" {
					t.Fatalf("a binding was announced: %+v", m)
				}
			}
		})
	}
}

// formTokenOf reads the anti-forgery token off the enrolment page.
func formTokenOf(t *testing.T, b *browser, g *gateway) string {
	t.Helper()
	resp, err := b.Get(g.URL + "/onepush/enroll")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page strings.Builder
	_, _ = fmt.Fprint(&page, readAll(t, resp))
	m := regexp.MustCompile(`name="form_token" value="([^"]+)"`).FindStringSubmatch(page.String())
	if m == nil {
		t.Fatalf("enrolment page without a form token: %d %.300s", resp.StatusCode, page.String())
	}
	return m[1]
}

// TestCrossSiteEnrolmentIsRefused is attack 3: posts that do not come from
// the gateway's own form in the user's own session bind nothing.
func TestCrossSiteEnrolmentIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := startBindingGateway(t, e, bindingOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	victim, other := newBrowser(), newBrowser()
	for _, b := range []*browser{victim, other} {
		if resp, _, err := b.post(ctx, g.URL+"/login", loginBody(bob)); err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("bob's login: %v %v", err, resp)
		}
	}
	theirs := newPhone(t, g.gateway)
	post := func(b *browser, token string, hdr map[string]string) (int, string) {
		code, _ := theirs.SecurityCode()
		form := url.Values{"credential_id": {theirs.CredentialID()}, "code": {code}}
		if token != "" {
			form.Set("form_token", token)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/onepush/enroll", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readAll(t, resp)
	}
	tests := []struct {
		name  string
		token func() string
		hdr   map[string]string
	}{
		{"Origin of another site", func() string { return formTokenOf(t, victim, g.gateway) }, map[string]string{"Origin": "https://evil.example"}},
		{"Sec-Fetch-Site: cross-site", func() string { return formTokenOf(t, victim, g.gateway) }, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"Sec-Fetch-Site: same-site (a sibling host)", func() string { return formTokenOf(t, victim, g.gateway) }, map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"no token", func() string { return "" }, nil},
		{"a token of another session of the same user", func() string { return formTokenOf(t, other, g.gateway) }, nil},
		{"a made-up token", func() string { return "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, page := post(victim, tc.token(), tc.hdr)
			if st != http.StatusForbidden || !strings.Contains(page, "Form not accepted") {
				t.Fatalf("%d %.300s, want 403", st, page)
			}
			if u := g.user(t, keyOf(bob)); u["credential_id"] != nil {
				t.Fatalf("bob is bound after a forged post: %v", u)
			}
		})
	}
	// The control: the same post from the page itself, same origin.
	st, page := post(victim, formTokenOf(t, victim, g.gateway), map[string]string{"Origin": g.URL, "Sec-Fetch-Site": "same-origin"})
	if st != http.StatusOK {
		t.Fatalf("the genuine post: %d %.300s", st, page)
	}
	if u := g.user(t, keyOf(bob)); u["credential_id"] != theirs.CredentialID() {
		t.Fatalf("bob after the genuine post: %v", u)
	}
}

// TestEnrolmentFloodIsLimitedCountedAndAggregated is attack 5: 400
// enrolment posts naming unknown credential IDs, as fast as the attacker
// can. They are limited, the failures count toward the lock, and the audit
// trail keeps what was in it before (a small audit limit here).
func TestEnrolmentFloodIsLimitedCountedAndAggregated(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := startBindingGateway(t, e, bindingOptions{global: "\t\taudit_max_events 60"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	aliceKey := keyOf(alice)
	enroll(t, g.gateway, alice, newPhone(t, g.gateway))
	if st, _ := g.admin(t, http.MethodPost, "/user/deregister", map[string]string{"key": aliceKey, "grace": "72h"}); st != http.StatusOK {
		t.Fatal("deregister")
	}
	attacker := newBrowser()
	if resp, _, err := attacker.post(ctx, g.URL+"/login", loginBody(alice)); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("password-only login: %v %v", err, resp)
	}
	phone := newPhone(t, g.gateway) // only for its client; the IDs it posts are made up
	const posts = 400
	statuses := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan int, posts)
	for i := range posts {
		work <- i
	}
	close(work)
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for i := range work {
				st, _, err := phone.Enrol(ctx, attacker.Client, g.URL+"/onepush/enroll",
					url.Values{"credential_id": {fmt.Sprintf("OPNOSUCHCREDENTIAL%03d", i)}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d enrolment posts in %s: %v", posts, elapsed.Round(time.Millisecond), statuses)
	// The unknown IDs are counted (400) up to the lock; then "locked"
	// (403) and the per-user and per-address limits (429) answer. Posts
	// whose form token a concurrent post used up are refused as forged
	// (403) and count for nothing.
	u := g.user(t, aliceKey)
	if u["state"] != "locked" || statuses[http.StatusBadRequest] < 5 || u["failures"] != float64(statuses[http.StatusBadRequest]) {
		t.Fatalf("alice after the flood: %v with %d counted refusals; want locked, every refusal counted", u, statuses[http.StatusBadRequest])
	}
	if statuses[http.StatusTooManyRequests] == 0 || statuses[http.StatusOK] != 0 {
		t.Fatalf("answers %v: want the flood limited (429)", statuses)
	}
	// The trail: the deregistration from before the flood is still there;
	// each kind of refusal left its first event and then one summary per
	// 10 s window, not one event per post.
	maxEvents := 1 + 2*2*(int(elapsed/(10*time.Second))+2)
	var summary map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for summary == nil {
		evs := g.audit(t, aliceKey, "")
		found := false
		enrolments := 0
		for _, ev := range evs {
			if ev["type"] == "admin" && ev["outcome"] == "deregister" {
				found = true
			}
			if ev["type"] == "enrolment" {
				enrolments++
				if ev["outcome"] == "repeated" && strings.Contains(fmt.Sprint(ev["detail"]), "rate_limited") {
					summary = ev
				}
			}
		}
		if !found {
			t.Fatalf("the flood flushed the deregistration out of the audit trail:\n%v", outcomes(evs))
		}
		if enrolments > maxEvents {
			t.Fatalf("%d enrolment events for %d posts in %s: not aggregated (%v)", enrolments, posts, elapsed, outcomes(evs))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no summary of the rate-limited posts: %v", outcomes(evs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("summary: %v", summary["detail"])
	g.waitMessage(t, aliceKey, "user.locked")
	g.waitMessage(t, aliceKey, "binding.refused")
	// Told once, not 400 times.
	n := 0
	for _, m := range g.sink.Messages() {
		if m.User == aliceKey && m.Type == "binding.refused" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d binding.refused messages for one flood, want 1", n)
	}
}

// denyPolicy is the bypass suite's policy with not_enrolled: deny on the
// login rule, and after_success when asked.
func denyPolicy(afterSuccess bool) string {
	s := strings.Replace(bypassPolicy, "    not_enrolled: allow\n", "    not_enrolled: deny\n", 1)
	if afterSuccess {
		s = strings.Replace(s, "    body_limit: 16KiB\n", "    body_limit: 16KiB\n    challenge: after_success\n    logout: {method: POST, path: /logout}\n", 1)
	}
	return s
}

// TestDenyForwardsNothing is attack 4: under not_enrolled: deny, a login
// of a user without a phone, in every spelling the bypass suite knows,
// never reaches the bank, whether the rule holds the request or checks
// the password first (after_success); nor does a locked user's.
func TestDenyForwardsNothing(t *testing.T) {
	for _, afterSuccess := range []bool{false, true} {
		t.Run(map[bool]string{false: "hold", true: "after_success"}[afterSuccess], func(t *testing.T) {
			e, rec := newBankEnv(t, bank.DefaultUsers(), denyPolicy(afterSuccess))
			g := e.startCustomGateway("\t\tprotocols h1 h2 h2c", "\t\tmax_failures 1000000\n\t\tbody_read_timeout 1s")
			addr := strings.TrimPrefix(g.URL, "http://")
			h2 := h2cClient()
			n := 0
			for _, v := range bypassVariants() {
				if v.kind != "login" {
					continue
				}
				n++
				req := v.build(varCtx{addr: addr, u: bob})
				var st int
				var body string
				var err error
				if req.h2 {
					st, body, err = sendH2(h2, addr, req)
				} else {
					st, body, err = sendRaw(addr, req)
				}
				if err != nil {
					t.Errorf("%s: %v", v.name, err)
					continue
				}
				if st < 400 {
					t.Errorf("%s: answered %d: %.200q", v.name, st, body)
				}
				if seen := rec.take(); len(seen) != 0 {
					t.Errorf("%s: the bank received %q", v.name, seen)
				}
				if ops := e.ops(t); len(ops) != 0 {
					t.Errorf("%s: the bank executed %+v", v.name, ops)
					e.resetOps(t)
				}
			}
			if n < 40 {
				t.Fatalf("only %d login variants", n)
			}
			t.Logf("%d login spellings of an unenrolled user: none reached the bank", n)
		})
	}
}

// TestLockedUserUnderAfterSuccessForwardsNothing: the user's state decides
// before an after_success rule lets the bank check the password: a locked
// user's login, and then one whose grace is over, never reach the bank.
func TestLockedUserUnderAfterSuccessForwardsNothing(t *testing.T) {
	e := newEnv(t, envOptions{edit: func(s string) string {
		return afterSuccessPolicy(s) + "\nstep_up_required:\n  users: [\"1001/alice\"]\n"
	}})
	g := startBindingGateway(t, e, bindingOptions{})
	phone := newPhone(t, g.gateway)
	if st, out := g.admin(t, http.MethodPost, "/user/bind", map[string]string{"key": keyOf(alice), "credential_id": phone.CredentialID()}); st != http.StatusOK {
		t.Fatalf("bind: %d %v", st, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A fraud report locks alice at once.
	res := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
	ch := waitChallenge(t, phone)
	if st, err := phone.Decide(ctx, ch, device.Fraud, 0); err != nil || st != http.StatusOK {
		t.Fatalf("fraud: %d %v", st, err)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login reported as fraud: %v %v", r.err, r.resp)
	}
	if u := g.user(t, keyOf(alice)); u["state"] != "locked" {
		t.Fatalf("alice after a fraud report: %v", u)
	}
	e.resetOps(t)
	b := newBrowser()
	resp, page, err := b.post(ctx, g.URL+"/login", loginBody(alice))
	if err != nil || resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "locked") {
		t.Fatalf("locked user's login: %v %v %.200s", err, resp, page)
	}
	if ops := e.ops(t); len(ops) != 0 {
		t.Fatalf("the bank executed %+v for a locked user", ops)
	}
	g.waitMessage(t, keyOf(alice), "fraud.reported")
	g.waitMessage(t, keyOf(alice), "user.locked")

	// Unlocked, then deregistered with no grace: alice needs step-up.
	for _, call := range []map[string]string{{"key": keyOf(alice)}, {"key": keyOf(alice), "grace": "0s"}} {
		path := "/user/unlock"
		if call["grace"] != "" {
			path = "/user/deregister"
		}
		if st, out := g.admin(t, http.MethodPost, path, call); st != http.StatusOK {
			t.Fatalf("%s: %d %v", path, st, out)
		}
	}
	e.resetOps(t)
	resp, page, err = b.post(ctx, g.URL+"/login", loginBody(alice))
	if err != nil || resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "register your phone again") {
		t.Fatalf("login after the grace: %v %v %.200s", err, resp, page)
	}
	if ops := e.ops(t); len(ops) != 0 {
		t.Fatalf("the bank executed %+v for a user whose grace is over", ops)
	}
}

// postFormAs posts form to target as if a trusted proxy had forwarded it
// for client, with the given cookies, and returns the status.
func postFormAs(t *testing.T, ctx context.Context, client, target, form string, cookies ...*http.Cookie) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := (&http.Client{Transport: forwardedFor{client}, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRefusalFloodsKeepTheAuditTrail: every refused request used to write
// one audit event, and the trail is shared and bounded (audit_max_events;
// on Redis a stream trimmed by length): anyone could flush a customer's
// binding out of it with refused posts. Refusals by the user's state
// (here not_enrolled: deny) are aggregated by user and by address, so
// neither random user names from one address nor one user named from many
// addresses get through; refusals of transactions on a session whose
// login is pending are aggregated likewise.
func TestRefusalFloodsKeepTheAuditTrail(t *testing.T) {
	const posts = 200
	// setup runs a gateway whose trail keeps 60 events, with alice bound.
	setup := func(t *testing.T) (*bindingGateway, *device.Phone) {
		e := newEnv(t, envOptions{edit: func(s string) string {
			return strings.Replace(s, "    not_enrolled: allow   #", "    not_enrolled: deny   #", 1)
		}})
		g := startBindingGateway(t, e, bindingOptions{global: "\t\taudit_max_events 60",
			servers: "\t\ttrusted_proxies static 127.0.0.1/32\n\t\tclient_ip_headers X-Forwarded-For"})
		phone := newPhone(t, g.gateway)
		if st, out := g.admin(t, http.MethodPost, "/user/bind", map[string]string{"key": keyOf(alice), "credential_id": phone.CredentialID()}); st != http.StatusOK {
			t.Fatalf("bind: %d %v", st, out)
		}
		return g, phone
	}
	kept := func(t *testing.T, g *bindingGateway, what string) {
		t.Helper()
		bound := false
		for _, ev := range g.audit(t, keyOf(alice), "") {
			bound = bound || (ev["type"] == "enrolment" && ev["outcome"] == "bound")
		}
		refused := g.audit(t, "", "request.refused")
		t.Logf("%s: %d request.refused events kept", what, len(refused))
		if !bound {
			t.Fatalf("%d %s flushed alice's binding out of the audit trail (%d request.refused events kept)", posts, what, len(refused))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("logins naming made-up users from one address", func(t *testing.T) {
		g, _ := setup(t)
		for i := range posts {
			form := url.Values{"contract_no": {"9999"}, "user_id": {fmt.Sprintf("nobody%d", i)}, "password": {"x"}}.Encode()
			if st := postFormAs(t, ctx, "203.0.113.7", g.URL+"/login", form); st != http.StatusForbidden {
				t.Fatalf("login of a made-up user under deny: %d", st)
			}
		}
		kept(t, g, "refused logins of made-up users from one address")
	})
	t.Run("logins naming one user from many addresses", func(t *testing.T) {
		g, _ := setup(t)
		for i := range posts {
			if st := postFormAs(t, ctx, fmt.Sprintf("198.51.%d.%d", i/250, i%250+1), g.URL+"/login", loginBody(bob)); st != http.StatusForbidden {
				t.Fatalf("bob's login under deny: %d", st)
			}
		}
		kept(t, g, "refused logins of bob from as many addresses")
	})
	t.Run("transfers on a session whose login is pending", func(t *testing.T) {
		g, phone := setup(t)
		br := approvedLogin(t, g.gateway, alice, phone)
		session := br.cookieOf(g.gateway, "/", bank.SessionCookieName)
		login := br.postAsync(ctx, g.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, phone)
		for range posts {
			if st := postFormAs(t, ctx, "203.0.113.8", g.URL+"/transfer", transferForm("6660001", "100", alice.TxnPassword), sessionCookie(session)); st != http.StatusForbidden {
				t.Fatalf("transfer on a session whose login is pending: %d", st)
			}
		}
		if st, _ := phone.Decide(ctx, ch, device.Deny, 0); st != http.StatusOK {
			t.Fatalf("deny: %d", st)
		}
		<-login
		kept(t, g, "refused transfers on a pending session")
	})
}

// enrolPolicy puts the example login rule under not_enrolled: enrol (the
// bank checks the password, the gateway logs its session out and offers
// enrolment).
func enrolPolicy(s string) string {
	return strings.Replace(s, "    not_enrolled: allow   #", "    logout: {method: POST, path: /logout}\n    not_enrolled: enrol   #", 1)
}

// TestEnrolHandsNoUnrecognisedSession: under not_enrolled: enrol a user
// without a phone is refused like deny, only the bank checks the password
// first. A bank whose successful login follows next=
// (bank.Config.LoginFollowsNext) answers 303 to /account instead of the
// success condition's /dashboard; that answer used to reach the browser as
// is, with a live bank session for bob, whom the policy refuses until he
// enrols. Now such an answer has its session logged out at the bank and
// every cookie stripped, as after_success does, and the login reaches the
// bank without the browser's session cookie (withoutSession).
func TestEnrolHandsNoUnrecognisedSession(t *testing.T) {
	e := newEnv(t, envOptions{edit: enrolPolicy, bank: func(c *bank.Config) { c.LoginFollowsNext = true }})
	g := e.startGateway("")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Control: the ordinary login is refused and the browser gets no session.
	atk := newBrowser()
	resp, page, err := atk.post(ctx, g.URL+"/login", loginBody(bob))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob's login under enrol: %v %v %.200q", err, resp, page)
	}
	if s := atk.cookieOf(g, "/", bank.SessionCookieName); s != "" {
		t.Fatalf("control: the refused login left a bank session %q", s)
	}

	// The attack: the same login with next=.
	atk = newBrowser()
	resp, page, err = atk.post(ctx, g.URL+"/login", loginBody(bob)+"&next=%2Faccount")
	if err != nil {
		t.Fatal(err)
	}
	s := atk.cookieOf(g, "/", bank.SessionCookieName)
	if s == "" {
		return // nothing handed over
	}
	if acct := accountOf(t, ctx, g, s); strings.Contains(acct, `"user_id": "bob"`) {
		t.Errorf("a login the policy refuses (not_enrolled: enrol, bob has no phone) answered %d %s and handed the browser a live bank session for bob: /account = %.200s",
			resp.StatusCode, resp.Header.Get("Location"), acct)
	}
	_ = page
}

// TestEachSiteBindsByItsOwnEnrolmentPolicy: two sites on one Caddy share
// one engine, each with its own policy: a strict one (first:
// activation_code, say for corporate banking) beside a retail one (first:
// password). The enrolment section used to be written into the engine by
// each site's handler, the last provisioned winning for both: the strict
// site bound a phone on the password alone, or the retail site refused
// its customers' first phones. Now each gate passes its own policy's
// section to Enroll; the strict site refuses bob's password-only binding
// and the retail site binds carol's first phone.
func TestEachSiteBindsByItsOwnEnrolmentPolicy(t *testing.T) {
	e := newEnv(t, envOptions{})
	strict := strings.Replace(string(mustRead(t, e.policy)), "  first: password\n", "  first: activation_code\n", 1)
	strictPath := e.policy + ".strict.yaml"
	if err := os.WriteFile(strictPath, []byte(strict), 0o600); err != nil {
		t.Fatal(err)
	}
	portS, portL, adminPort := freePort(t), freePort(t), freePort(t)
	bankHost := strings.TrimPrefix(e.bankURL, "http://")
	cfg := caddyrig.Options(adminPort, "", "\t\tstore embedded {\n\t\t\tauto_init\n\t\t}") +
		caddyrig.GatedSite(portS, strictPath, "", bankHost) + caddyrig.GatedSite(portL, e.policy, "", bankHost)
	gS, err := e.runCaddy(cfg, portS, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	gL := &gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", portL)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	bindWithPassword := func(g *gateway, u bank.User) (int, string) {
		b := newBrowser()
		resp, _, err := b.post(ctx, g.URL+"/login", loginBody(u))
		if err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("password-only login of %s at %s: %v %v", u.UserID, g.URL, err, resp)
		}
		phone := newPhone(t, g)
		st, page, err := phone.Enrol(ctx, b.Client, g.URL+"/onepush/enroll", nil)
		if err != nil {
			t.Fatal(err)
		}
		return st, page
	}
	// The strict site: bob's password alone must not bind a phone.
	if st, page := bindWithPassword(gS, bob); st == http.StatusOK {
		t.Errorf("strict site (first: activation_code): bob's phone was bound with the password alone: %d %.200q", st, page)
	}
	// The retail site: carol binds her first phone with her password, as its policy says.
	if st, page := bindWithPassword(gL, carol); st != http.StatusOK {
		t.Errorf("retail site (first: password): carol's first phone was refused: %d %.300q", st, page)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
