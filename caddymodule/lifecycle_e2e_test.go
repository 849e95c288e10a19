package caddymodule_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// The lifecycle of the bank's FAQ through a live Caddy: enrolment,
// one phone for two users, suspend/resume, lock/unlock, deregister and
// re-enrol, uninstall, each operation done with the `caddy onepush`
// command against the admin API, and the challenge counters read from
// Caddy's own /metrics endpoint at the end. Deadlines are real and short.

const e2eAdminToken = "e2e-admin-token-0123456789abcdef"

type lifecycleGateway struct {
	*gateway
	adminAPI string // base URL of the onepush admin API (its own listener)
}

func startLifecycleGateway(t *testing.T, e *env) *lifecycleGateway {
	t.Helper()
	t.Setenv("ONEPUSH_ADMIN_TOKEN", e2eAdminToken) // read by Caddy ({env.…}) and by the CLI
	port, adminPort, internal := freePort(t), freePort(t), freePort(t)
	cfg := e.caddyfile(port, adminPort, caddyConfig{
		Global:       "\t\tpush_rate 30\n\t\tuninstall_grace 1h",
		AdminAPIPort: internal,
		AdminToken:   "{env.ONEPUSH_ADMIN_TOKEN}",
	})
	g, err := e.runCaddy(cfg, port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	return &lifecycleGateway{gateway: g, adminAPI: fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", internal)}
}

// cli runs `caddy onepush args...` and returns its output and exit code.
func cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(caddyBin, append([]string{"onepush"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("running caddy onepush %v: %v", args, err)
	return "", -1
}

// admin runs a user/audit subcommand against g and fails on a non-zero exit.
func (g *lifecycleGateway) admin(t *testing.T, args ...string) string {
	t.Helper()
	out, code := cli(t, append(args, "--admin", g.adminAPI, "--actor", "e2e-tester")...)
	if code != 0 {
		t.Fatalf("caddy onepush %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// usedCodes are the security codes the gateway has accepted in this test
// run: each is accepted once, so an enrolment picks one not used yet.
var usedCodes = map[string]bool{}

// unusedCode is a security code of phone the server accepts now (±1 step)
// and has not seen: the current one, else the next, else the previous.
func unusedCode(t *testing.T, phone *device.Phone) string {
	t.Helper()
	var code string
	for _, off := range []time.Duration{0, 30 * time.Second, -30 * time.Second} {
		c, _, err := phone.SecurityCodeAt(time.Now().Add(off))
		if err != nil {
			t.Fatal(err)
		}
		if !usedCodes[phone.CredentialID()+c] {
			code = c
			break
		}
	}
	return code
}

// enrolAt binds phone to the browser's user through the enrolment page
// with a code the server accepts now (±1 step) and has not seen: the
// current one, else the next, else the previous; extra adds fields (an
// activation_code).
func enrolAt(t *testing.T, b *browser, g *gateway, phone *device.Phone, extra ...url.Values) (int, string) {
	t.Helper()
	code := unusedCode(t, phone)
	var more url.Values
	if len(extra) > 0 {
		more = extra[0]
	}
	form := url.Values{"code": {code}}
	for k, v := range more {
		form[k] = v
	}
	status, body, err := phone.Enrol(context.Background(), b.Client, g.URL+"/onepush/enroll", form)
	if err != nil {
		t.Fatal(err)
	}
	if status == http.StatusOK {
		usedCodes[phone.CredentialID()+code] = true
	}
	return status, body
}

// passwordOnly logs u in and expects the bank's answer at once, with no
// challenge on phone.
func passwordOnly(t *testing.T, g *gateway, u bank.User, phone *device.Phone) {
	t.Helper()
	resp, _, err := newBrowser().post(context.Background(), g.URL+"/login", loginBody(u))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("password-only login of %s: %v %v", u.UserID, err, resp)
	}
	if phone != nil {
		if pending, _ := phone.Pending(context.Background()); len(pending) != 0 {
			t.Fatalf("password-only login of %s rang the phone", u.UserID)
		}
	}
}

// pushed logs u in, answers the push with decision and returns the status.
func pushed(t *testing.T, g *gateway, u bank.User, phone *device.Phone, decision string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(u))
	ch := waitChallenge(t, phone)
	if ch.Parsed.User != u.ContractNo+"/"+u.UserID {
		t.Fatalf("challenge for %q, want %s", ch.Parsed.User, u.UserID)
	}
	if st, err := phone.Decide(ctx, ch, decision, 0); err != nil || st != http.StatusOK {
		t.Fatalf("%s: %d %v", decision, st, err)
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.resp.StatusCode
}

// refused logs u in and expects a 403 page containing want, with no push.
func refused(t *testing.T, g *gateway, u bank.User, phone *device.Phone, want string) *browser {
	t.Helper()
	b := newBrowser()
	resp, body, err := b.post(context.Background(), g.URL+"/login", loginBody(u))
	if err != nil || resp.StatusCode != http.StatusForbidden || !strings.Contains(body, want) {
		t.Fatalf("login of %s: %v %v, want 403 with %q:\n%.400s", u.UserID, err, resp, want, body)
	}
	if pending, _ := phone.Pending(context.Background()); len(pending) != 0 {
		t.Fatalf("refused login of %s rang the phone", u.UserID)
	}
	return b
}

// untilGraceEnds polls `user show` until the user's grace is over.
func (g *lifecycleGateway) untilGraceEnds(t *testing.T, key string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(g.admin(t, "user", "show", key), "(grace over)") {
		if time.Now().After(deadline) {
			t.Fatalf("grace of %s did not end", key)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestLifecycleThroughLiveCaddyAndCLI(t *testing.T) {
	// alice has approval authority: no password-only login after a grace.
	e := newEnv(t, envOptions{edit: func(s string) string {
		return s + "\nstep_up_required:\n  users: [\"1001/alice\"]\nderegistration_grace: 3s\n"
	}})
	g := startLifecycleGateway(t, e)
	phone := newPhone(t, g.gateway)
	aliceKey, bobKey := "1001/alice", "1001/bob"
	approved, denied := 0, 0

	t.Run("enrolment with a wrong and a right code", func(t *testing.T) {
		b := newBrowser()
		if resp, _, err := b.post(context.Background(), g.URL+"/login", loginBody(alice)); err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login before enrolment: %v %v", err, resp)
		}
		status, body, err := phone.Enrol(context.Background(), b.Client, g.URL+"/onepush/enroll", url.Values{"code": {"000000"}})
		code, _ := phone.SecurityCode()
		if code != "000000" && (err != nil || status != http.StatusBadRequest || !strings.Contains(body, "Security code not accepted")) {
			t.Fatalf("wrong code: %v %d %.300s", err, status, body)
		}
		if st, body := enrolAt(t, b, g.gateway, phone); st != http.StatusOK || !strings.Contains(body, "Phone registered") {
			t.Fatalf("right code: %d %.300s", st, body)
		}
		if out := g.admin(t, "user", "show", aliceKey); !strings.Contains(out, "state:      active") || !strings.Contains(out, phone.CredentialID()) {
			t.Fatalf("user show after enrolment:\n%s", out)
		}
		if pushed(t, g.gateway, alice, phone, device.Approve) != http.StatusSeeOther {
			t.Fatal("approved login after enrolment refused")
		}
		approved++
	})

	t.Run("one phone for two users", func(t *testing.T) {
		b := newBrowser()
		if resp, _, err := b.post(context.Background(), g.URL+"/login", loginBody(bob)); err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("bob's login before enrolment: %v %v", err, resp)
		}
		if st, body := enrolAt(t, b, g.gateway, phone); st != http.StatusOK {
			t.Fatalf("bob's enrolment on alice's phone: %d %.300s", st, body)
		}
		if pushed(t, g.gateway, bob, phone, device.Approve) != http.StatusSeeOther {
			t.Fatal("bob's approved login refused")
		}
		approved++
	})

	t.Run("second phone for a bound user is refused", func(t *testing.T) {
		other := newPhone(t, g.gateway)
		b := newBrowser()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res := b.postAsync(ctx, g.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, phone)
		if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusOK {
			t.Fatal("approve")
		}
		if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %v %v", r.err, r.resp)
		}
		approved++
		if st, body := enrolAt(t, b, g.gateway, other); st != http.StatusConflict || !strings.Contains(body, "already registered") {
			t.Fatalf("second phone: %d %.300s", st, body)
		}
		if out := g.admin(t, "user", "show", aliceKey); !strings.Contains(out, phone.CredentialID()) {
			t.Fatalf("alice lost her phone:\n%s", out)
		}
	})

	t.Run("suspend, grace, refused, resume", func(t *testing.T) {
		g.admin(t, "user", "suspend", aliceKey, "--grace", "2s")
		passwordOnly(t, g.gateway, alice, phone)
		g.untilGraceEnds(t, aliceKey)
		e.resetOps(t)
		refused(t, g.gateway, alice, phone, "suspended")
		if ops := e.ops(t); len(ops) != 0 {
			t.Fatalf("bank saw %+v for a refused login", ops)
		}
		g.admin(t, "user", "resume", aliceKey)
		if pushed(t, g.gateway, alice, phone, device.Approve) != http.StatusSeeOther {
			t.Fatal("login after resume")
		}
		approved++
	})

	t.Run("denials do not lock, a fraud report does, unlock", func(t *testing.T) {
		// A denial is no failed authentication: whoever rings her phone
		// cannot lock her out by it.
		for i := 0; i < 5; i++ {
			if st := pushed(t, g.gateway, alice, phone, device.Deny); st != http.StatusForbidden {
				t.Fatalf("denial %d: %d", i+1, st)
			}
			denied++
		}
		if out := g.admin(t, "user", "show", aliceKey); !strings.Contains(out, "state:      active") || !strings.Contains(out, "failures:   0") {
			t.Fatalf("after 5 denials:\n%s", out)
		}
		if st := pushed(t, g.gateway, alice, phone, device.Fraud); st != http.StatusForbidden {
			t.Fatalf("fraud report: %d", st)
		}
		denied++
		if out := g.admin(t, "user", "show", aliceKey); !strings.Contains(out, "state:      locked") || !strings.Contains(out, "failures:   1") {
			t.Fatalf("after a fraud report:\n%s", out)
		}
		refused(t, g.gateway, alice, phone, "locked")
		g.admin(t, "user", "unlock", aliceKey)
		if pushed(t, g.gateway, alice, phone, device.Approve) != http.StatusSeeOther {
			t.Fatal("login after unlock")
		}
		approved++
	})

	t.Run("deregister, re-enrol in the grace with an activation code", func(t *testing.T) {
		out := g.admin(t, "user", "deregister", aliceKey) // the policy's 3s grace
		if !strings.Contains(out, "state:      deregistered") || !strings.Contains(out, "(grace running)") {
			t.Fatalf("deregister:\n%s", out)
		}
		// Within the grace the password logs in, but it does not bind.
		b := newBrowser()
		if resp, _, err := b.post(context.Background(), g.URL+"/login", loginBody(alice)); err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("password-only login in the grace: %v %v", err, resp)
		}
		if st, body := enrolAt(t, b, g.gateway, phone); st != http.StatusForbidden || !strings.Contains(body, "Activation code needed") {
			t.Fatalf("re-enrolment with the password alone: %d %.300s", st, body)
		}
		code := activationCodeOf(t, g.admin(t, "user", "activation-code", aliceKey))
		if st, body := enrolAt(t, b, g.gateway, phone, url.Values{"activation_code": {code}}); st != http.StatusOK {
			t.Fatalf("re-enrolment with the activation code: %d %.300s", st, body)
		}
		if pushed(t, g.gateway, alice, phone, device.Approve) != http.StatusSeeOther {
			t.Fatal("login after re-enrolment")
		}
		approved++
	})

	t.Run("after the grace the login never reaches the bank", func(t *testing.T) {
		g.admin(t, "user", "deregister", aliceKey)
		g.untilGraceEnds(t, aliceKey)
		e.resetOps(t)
		refused(t, g.gateway, alice, phone, "register your phone again")
		if ops := e.ops(t); len(ops) != 0 {
			t.Fatalf("bank saw %+v for a login refused after the grace", ops)
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		if err := phone.Uninstall(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{aliceKey, bobKey} {
			if out := g.admin(t, "user", "show", key); !strings.Contains(out, "state:      deregistered") || strings.Contains(out, "credential:") {
				t.Fatalf("%s after uninstall:\n%s", key, out)
			}
		}
		passwordOnly(t, g.gateway, bob, nil)
	})

	t.Run("audit trail", func(t *testing.T) {
		out := g.admin(t, "audit", "--user", aliceKey, "--since", "10m")
		for _, want := range []string{
			`enrolment`, `outcome="bound"`, `outcome="activation_code"`, `challenge.created`, `challenge.decided`, `outcome="denied"`,
			`outcome="locked"`, `actor="e2e-tester@127.0.0.1"`, `outcome="suspend"`, `outcome="unlock"`,
			`client_ip="127.0.0.1"`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("audit output lacks %s:\n%s", want, out)
			}
		}
		// bob was still on the phone when it was uninstalled.
		if bobs := g.admin(t, "audit", "--user", bobKey, "--since", "10m"); !strings.Contains(bobs, "app uninstalled") {
			t.Errorf("bob's audit output lacks app uninstalled:\n%s", bobs)
		}
		if strings.Contains(out, alice.Password) || strings.Contains(out, phone.OTPSecret()) {
			t.Error("audit output holds a secret")
		}
		// Also in Caddy's structured log.
		if !strings.Contains(g.logs.String(), `"msg":"audit"`) {
			t.Error("no audit lines in Caddy's log")
		}
	})

	t.Run("admin API refuses a wrong token", func(t *testing.T) {
		out, code := cli(t, "user", "show", aliceKey, "--admin", g.adminAPI, "--token", "not-the-token")
		if code == 0 || !strings.Contains(out, "401") {
			t.Fatalf("wrong token: exit %d\n%s", code, out)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		m := scrape(t, g.Admin+"/metrics")
		for series, want := range map[string]float64{
			`caddy_onepush_challenges_total{outcome="approved",rule="login"}`: float64(approved),
			`caddy_onepush_challenges_total{outcome="denied",rule="login"}`:   float64(denied),
			`caddy_onepush_challenges_total{outcome="created",rule="login"}`:  float64(approved + denied),
			`caddy_onepush_held_requests`:                                     0,
			`caddy_onepush_approval_latency_seconds_count`:                    float64(approved),
		} {
			if got, ok := m[series]; !ok || got != want {
				t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
			}
		}
	})
}

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) ([0-9.eE+-]+)$`)

func scrape(t *testing.T, target string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := metricLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			out[m[1]] = v
		}
	}
	return out
}

func TestPolicyLintAndTestCommands(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, envOptions{passwordFirst: true}) // the example policy as it is
	good := e.policy
	broken := filepath.Join(dir, "broken.yaml")
	data, _ := os.ReadFile(good)
	text := strings.Replace(string(data), "path: {exact: /login}", "path: {exact: login}", 1) +
		"step_up_required:\n  pattern: \"([\"\n"
	if err := os.WriteFile(broken, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	out, code := cli(t, "policy", "lint", broken)
	wantPath := "broken.yaml:" + lineOf(t, broken, "exact: login") + ": rules[0].match.path.exact: must start with /"
	wantRe := "broken.yaml:" + lineOf(t, broken, "pattern:") + ": step_up_required.pattern:"
	if code == 0 || !strings.Contains(out, wantPath) || !strings.Contains(out, wantRe) {
		t.Fatalf("lint of a broken policy: exit %d, want non-zero naming %q and %q:\n%s", code, wantPath, wantRe, out)
	}
	if out, code := cli(t, "policy", "lint", good); code != 0 || !strings.Contains(out, "OK, 9 rules") ||
		!strings.Contains(out, "enrolment: first phone by password, another phone by activation_code") || strings.Contains(out, "warning") ||
		!strings.Contains(out, "  login (line "+lineOf(t, good, "- name: login")+"): login POST exact /login, mode interstitial, ") ||
		!strings.Contains(out, "not enrolled: allow, service インターネットバンキング, assurance: code transfer\n") ||
		strings.Count(out, ", assurance: approve-only (not AAL2 under SP 800-63B rev 4)\n") != 7 {
		t.Fatalf("lint of the example policy: exit %d (want the password-first login as code transfer, the seven transaction rules approve-only)\n%s", code, out)
	}
	// The rules below start from the login as a held request.
	data = []byte(strings.Replace(string(data), passwordFirstLines, "", 1))
	// Code transfer on a waiting page, and number matching, which it
	// replaces: lint refuses the keyword, naming its line.
	codes := filepath.Join(dir, "codes.yaml")
	_ = os.WriteFile(codes, []byte(strings.Replace(strings.Replace(string(data), "    timeout: 90s\n", "    timeout: 90s\n    mode: interstitial\n    code_digits: 4\n", 1),
		"    user: {session: true}\n", "    user: {session: true}\n    mode: interstitial\n", 1)), 0o600)
	if out, code := cli(t, "policy", "lint", codes); code != 0 || !strings.Contains(out, ", assurance: code transfer (under 6 digits: below SP 800-63B rev 4)\n") ||
		!strings.Contains(out, ", assurance: code transfer\n") || !strings.Contains(out, "warning: "+codes+":"+lineOf(t, codes, "code_digits: 4")+": rules[0].code_digits:") {
		t.Fatalf("lint of code transfer rules: exit %d\n%s", code, out)
	}
	numbers := filepath.Join(dir, "numbers.yaml")
	_ = os.WriteFile(numbers, []byte(strings.Replace(string(data), "    timeout: 90s\n", "    timeout: 90s\n    mode: interstitial\n    number_matching: true\n", 1)), 0o600)
	if out, code := cli(t, "policy", "lint", numbers); code == 0 || !strings.Contains(out, numbers+":"+lineOf(t, numbers, "number_matching: true")+": rules[0].number_matching: replaced by code transfer") {
		t.Fatalf("lint of number_matching: exit %d, want non-zero naming its line\n%s", code, out)
	}
	// A login rule that lets unenrolled users in without saying how the
	// bank shows an accepted password: they cannot bind with it.
	noSuccess := filepath.Join(dir, "nosuccess.yaml")
	_ = os.WriteFile(noSuccess, []byte(strings.Replace(string(data), "    success: {status: [303], set_cookie: BANKSESSION, location_prefix: /dashboard}", "", 1)), 0o600)
	if out, code := cli(t, "policy", "lint", noSuccess); code != 0 || !strings.Contains(out, "warning: login (line "+lineOf(t, noSuccess, "- name: login")+") has no success condition") {
		t.Fatalf("lint of a login rule without success: exit %d\n%s", code, out)
	}
	// Nor can the gateway learn the session such a login was posted on
	// (a bank that keeps its session ID): lint names the line and field.
	if out, code := cli(t, "policy", "lint", noSuccess); code != 0 || !strings.Contains(out, "warning: "+noSuccess+":"+lineOf(t, noSuccess, "- name: login")+": rules[0].success: login rule \"login\" has no success condition: the gateway learns only a session the bank newly sets") {
		t.Fatalf("lint of a login rule without success, session learning: exit %d\n%s", code, out)
	}

	login := filepath.Join(dir, "login.http")
	_ = os.WriteFile(login, []byte("POST /login HTTP/1.1\r\nHost: bank.example\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\ncontract_no=1001&user_id=alice&password=secret"), 0o600)
	out, code = cli(t, "policy", "test", good, login)
	for _, want := range []string{"rule: login (line " + lineOf(t, good, "- name: login"), "user: 1001/alice", "Contract: 1001", "User: alice"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("policy test of a login: exit %d, want %q:\n%s", code, want, out)
		}
	}
	transfer := filepath.Join(dir, "transfer.http")
	_ = os.WriteFile(transfer, []byte("POST /transfer/confirm HTTP/1.1\nHost: bank.example\nCookie: BANKSESSION=abc\nContent-Type: application/x-www-form-urlencoded\n\npayee_account=9876543&amount=250000&txn_password=x"), 0o600)
	out, _ = cli(t, "policy", "test", good, transfer)
	for _, want := range []string{"rule: transfer", "from the session learned at login", "service: 振込, host: bank.example",
		`transaction: amount 250000, currency JPY, payee "9876543"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("policy test of a transfer: want %q:\n%s", want, out)
		}
	}
	static := filepath.Join(dir, "static.http")
	_ = os.WriteFile(static, []byte("GET /static/style.css HTTP/1.1\nHost: bank.example\n\n"), 0o600)
	if out, _ := cli(t, "policy", "test", good, static); !strings.Contains(out, "no rule matches") {
		t.Fatalf("policy test of a static file:\n%s", out)
	}
	ambiguous := filepath.Join(dir, "ambiguous.http")
	_ = os.WriteFile(ambiguous, []byte("POST /login HTTP/1.1\nHost: bank.example\nContent-Type: application/x-www-form-urlencoded\n\ncontract_no=1001&user_id=alice&user_id=bob&password=x"), 0o600)
	if out, _ := cli(t, "policy", "test", good, ambiguous); !strings.Contains(out, "refused") {
		t.Fatalf("policy test of a repeated user field:\n%s", out)
	}
}

// activationCodeOf reads the code out of `caddy onepush user activation-code`.
func activationCodeOf(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^code:\s+([0-9A-Z]{5}-[0-9A-Z]{5})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no activation code in:\n%s", out)
	}
	return m[1]
}
