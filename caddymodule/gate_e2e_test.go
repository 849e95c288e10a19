package caddymodule_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/internal/caddyrig"
)

var (
	alice = bank.DefaultUsers()[0]
	bob   = bank.DefaultUsers()[1]
	carol = bank.DefaultUsers()[2]
)

// loggedIn enrols alice, approves one login and returns her browser with
// the bank's session cookie learned by the gateway.
func loggedIn(t *testing.T, e *env, g *gateway, phone *device.Phone) *browser {
	t.Helper()
	return approvedLogin(t, g, alice, phone)
}

func TestLoginIsHeldUntilThePhoneApproves(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{}, "")

	b := newBrowser()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := loginBody(alice)
	res := b.postAsync(ctx, g.URL+"/login", body)
	ch := waitChallenge(t, phone)

	if ch.Kind != "login" || ch.Parsed.User != "1001/alice" {
		t.Fatalf("challenge = kind %q user %q, want login for 1001/alice", ch.Kind, ch.Parsed.User)
	}
	// Held: the bank has seen nothing.
	time.Sleep(200 * time.Millisecond)
	if ops := e.ops(t); len(ops) != 0 {
		t.Fatalf("bank saw %d operations while the login was held: %+v", len(ops), ops)
	}
	select {
	case r := <-res:
		t.Fatalf("login answered before approval: %v %v", r.resp, r.err)
	default:
	}

	start := time.Now()
	if st, err := phone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
		t.Fatalf("approve: %d %v", st, err)
	}
	r := <-res
	t.Logf("release after approval took %s", time.Since(start))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.StatusCode != http.StatusSeeOther || r.resp.Header.Get("Location") != "/dashboard" {
		t.Fatalf("browser got %d Location %q, want the bank's 303 to /dashboard", r.resp.StatusCode, r.resp.Header.Get("Location"))
	}
	var session string
	for _, c := range r.resp.Cookies() {
		if c.Name == bank.SessionCookieName {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatalf("browser did not get the bank's session cookie: %v", r.resp.Header.Values("Set-Cookie"))
	}
	logins := opsOf(e.ops(t), bank.OpLogin)
	if len(logins) != 1 || logins[0].Body != body {
		t.Fatalf("bank logins = %+v, want exactly one with body %q", logins, body)
	}
	// A second approval of the same challenge changes nothing.
	if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusConflict {
		t.Fatalf("second decision: status %d, want 409", st)
	}
	if n := len(opsOf(e.ops(t), bank.OpLogin)); n != 1 {
		t.Fatalf("bank executed %d logins, want 1", n)
	}
	// Nothing secret reaches the gateway's logs.
	logs := g.logs.String()
	for _, secret := range []string{alice.Password, session, phone.OTPSecret()} {
		if strings.Contains(logs, secret) {
			t.Errorf("gateway logs contain a secret (%.3s…)", secret)
		}
	}
}

func TestDeniedOrTimedOutLoginNeverReachesTheBank(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{edit: func(s string) string { return strings.Replace(s, "timeout: 90s", "timeout: 2s", 1) }}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("deny", func(t *testing.T) {
		res := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, phone)
		if st, err := phone.Decide(ctx, ch, device.Deny, 0); err != nil || st != http.StatusOK {
			t.Fatalf("deny: %d %v", st, err)
		}
		r := <-res
		if r.err != nil || r.resp.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "denied on your phone") {
			t.Fatalf("denied login: %v status %v body %.200q", r.err, r.resp, r.body)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		res := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, phone)
		r := <-res
		if r.err != nil || r.resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(r.body, "timed out") {
			t.Fatalf("timed-out login: %v status %v body %.200q", r.err, r.resp, r.body)
		}
		if d := time.Since(start); d < 1500*time.Millisecond || d > 6*time.Second {
			t.Fatalf("timeout page after %s, want about the rule's 2s", d)
		}
		if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusConflict {
			t.Fatalf("approval after timeout: status %d, want 409", st)
		}
	})
	if ops := e.ops(t); len(ops) != 0 {
		t.Fatalf("bank executed %+v after a denial and a timeout", ops)
	}
}

func TestClientGoneCancelsTheChallenge(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{}, "")

	ctx, cancel := context.WithCancel(context.Background())
	res := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
	ch := waitChallenge(t, phone)
	cancel() // the browser tab closes
	<-res

	// The gateway notices and cancels; then an approval is too late.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending, err := phone.Pending(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("challenge still pending 10s after the client went away")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, _ := phone.Decide(context.Background(), ch, device.Approve, 0); st != http.StatusConflict {
		t.Fatalf("late approval: status %d, want 409", st)
	}
	time.Sleep(200 * time.Millisecond)
	if ops := e.ops(t); len(ops) != 0 {
		t.Fatalf("bank executed %+v after the client went away", ops)
	}
}

func TestTransferIsAttributedThroughTheLearnedSession(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{}, "")
	b := loggedIn(t, e, g, phone)
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	body := url.Values{"payee_account": {"9876543"}, "amount": {"250000"}, "txn_password": {alice.TxnPassword}}.Encode()
	res := b.postAsync(ctx, g.URL+"/transfer", body)
	ch := waitChallenge(t, phone)
	if ch.Kind != "transaction" || ch.Parsed.User != "1001/alice" {
		t.Fatalf("challenge kind %q user %q, want a transaction of 1001/alice", ch.Kind, ch.Parsed.User)
	}
	if tx := ch.Parsed.Transaction; tx == nil || tx.Amount != "250000" || tx.Currency != "JPY" || tx.Payee != "9876543" {
		t.Fatalf("phone shows %+v, want the posted amount and payee", tx)
	}
	if n := len(e.ops(t)); n != 0 {
		t.Fatalf("bank executed %d operations before approval", n)
	}
	if st, err := phone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
		t.Fatalf("approve: %d %v", st, err)
	}
	r := <-res
	if r.err != nil || r.resp.StatusCode != http.StatusOK || !strings.Contains(r.body, "Transfer of 250000 JPY to 9876543 accepted") {
		t.Fatalf("approved transfer: %v %v %.300q", r.err, r.resp, r.body)
	}
	transfers := opsOf(e.ops(t), bank.OpTransfer)
	if len(transfers) != 1 || transfers[0].Body != body || transfers[0].UserID != "alice" {
		t.Fatalf("bank transfers = %+v", transfers)
	}

	t.Run("unknown or missing session is refused", func(t *testing.T) {
		e.resetOps(t)
		stranger := newBrowser()
		u, _ := url.Parse(g.URL)
		stranger.Jar.SetCookies(u, []*http.Cookie{{Name: bank.SessionCookieName, Value: "not-a-session-the-gateway-learned"}})
		for name, br := range map[string]*browser{"unknown": stranger, "missing": newBrowser()} {
			resp, page, err := br.post(ctx, g.URL+"/transfer", body)
			if err != nil || resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "log in again") {
				t.Errorf("%s session: %v %v %.200q", name, err, resp, page)
			}
		}
		if ops := e.ops(t); len(ops) != 0 {
			t.Fatalf("bank executed %+v for transfers without a known session", ops)
		}
	})
	t.Run("logout forgets the session", func(t *testing.T) {
		resp, _, err := b.post(ctx, g.URL+"/logout", "")
		if err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: %v %v", err, resp)
		}
		e.resetOps(t)
		// Replay the old cookie by hand: the gateway must not attribute it.
		old := newBrowser()
		u, _ := url.Parse(g.URL)
		for _, c := range r.resp.Request.Cookies() {
			old.Jar.SetCookies(u, []*http.Cookie{c})
		}
		resp, _, err = old.post(ctx, g.URL+"/transfer", body)
		if err != nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("transfer with a logged-out session: %v %v", err, resp)
		}
		if len(e.ops(t)) != 0 {
			t.Fatal("bank executed a transfer with a logged-out session")
		}
	})
}

func TestUnmatchedRequestsPassThroughUntouched(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.startGateway("")
	for _, path := range []string{"/", "/login", "/static/style.css", "/static/logo.svg", "/transfer"} {
		direct, err := http.Get(e.bankURL + path)
		if err != nil {
			t.Fatal(err)
		}
		directBody := readAll(t, direct)
		via, err := http.Get(g.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		viaBody := readAll(t, via)
		if via.StatusCode != direct.StatusCode || viaBody != directBody || via.Header.Get("Content-Type") != direct.Header.Get("Content-Type") {
			t.Errorf("GET %s through the gateway: %d %q, directly: %d %q", path, via.StatusCode, via.Header.Get("Content-Type"), direct.StatusCode, direct.Header.Get("Content-Type"))
		}
	}
	// A not-enrolled user's login (policy: allow) passes straight to the bank.
	resp, _, err := newBrowser().post(context.Background(), g.URL+"/login", loginBody(bob))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("not-enrolled login: %v %v", err, resp)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return sb.String()
}

func TestDecisionTokenAttacksAreRejected(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.startGateway("")
	phone := newPhone(t, g)
	other := newPhone(t, g)
	enroll(t, g, alice, phone)
	enroll(t, g, carol, other)
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	res := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
	ch := waitChallenge(t, phone)
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": phone.CredentialID(), "aud": "onepush", "sub": ch.ID,
			"iat": now.Unix(), "exp": now.Add(60 * time.Second).Unix(),
			"jti": randomJTI(t), "decision": "approve", "ctx": device.ContextHash(ch.Context),
		}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(c jwt.MapClaims, key *ecdsa.PrivateKey) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodES256, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	strangerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hsToken, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString([]byte("guessable"))
	noneToken, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	replayed := sign(claims(func(c jwt.MapClaims) { c["decision"] = "deny"; c["ctx"] = "wrong" }), phone.Key())

	// carol's phone gets its own challenge; alice's phone's token for it
	// must not decide it.
	carolRes := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(carol))
	carolCh := waitChallenge(t, other)

	cases := []struct {
		name   string
		id     string
		token  string
		status int
	}{
		{"signed by another key", ch.ID, sign(claims(nil), strangerKey), 401},
		{"alg none", ch.ID, noneToken, 401},
		{"HS256", ch.ID, hsToken, 401},
		{"expired", ch.ID, sign(claims(func(c jwt.MapClaims) {
			c["iat"] = now.Add(-10 * time.Minute).Unix()
			c["exp"] = now.Add(-9 * time.Minute).Unix()
		}), phone.Key()), 401},
		{"lifetime over 120s", ch.ID, sign(claims(func(c jwt.MapClaims) { c["exp"] = now.Add(10 * time.Minute).Unix() }), phone.Key()), 401},
		{"wrong audience", ch.ID, sign(claims(func(c jwt.MapClaims) { c["aud"] = "someone-else" }), phone.Key()), 401},
		{"wrong ctx hash", ch.ID, replayed, 401},
		{"replayed jti", ch.ID, replayed, 401},
		{"sub of another challenge", ch.ID, sign(claims(func(c jwt.MapClaims) { c["sub"] = carolCh.ID }), phone.Key()), 401},
		{"another credential's challenge", carolCh.ID, sign(claims(func(c jwt.MapClaims) {
			c["sub"] = carolCh.ID
			c["ctx"] = device.ContextHash(carolCh.Context)
		}), phone.Key()), 404},
		{"unknown challenge", "AAAAAAAAAAAAAAAAAAAAAA", sign(claims(func(c jwt.MapClaims) { c["sub"] = "AAAAAAAAAAAAAAAAAAAAAA" }), phone.Key()), 404},
	}
	for _, tc := range cases {
		st, body, err := phone.PostDecisionToken(ctx, tc.id, tc.token)
		if err != nil {
			t.Fatal(err)
		}
		if st != tc.status {
			t.Errorf("%s: status %d (%s), want %d", tc.name, st, body, tc.status)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if ops := e.ops(t); len(ops) != 0 {
		t.Fatalf("bank executed %+v after forged decisions", ops)
	}
	// Both challenges are still pending and answerable by their own phones.
	if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusOK {
		t.Fatalf("genuine approval after the attacks: %d", st)
	}
	if st, _ := other.Decide(ctx, carolCh, device.Deny, 0); st != http.StatusOK {
		t.Fatalf("carol's own denial: %d", st)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("alice's login after genuine approval: %v %v", r.err, r.resp)
	}
	if r := <-carolRes; r.err != nil || r.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("carol's denied login: %v %v", r.err, r.resp)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 || logins[0].UserID != "alice" {
		t.Fatalf("bank logins = %+v, want only alice's approved one", logins)
	}
}

func randomJTI(t *testing.T) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func TestOversizedOrAmbiguousPostsAreRefused(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{}, "")
	ctx := context.Background()
	cases := []struct {
		name   string
		body   string
		status int
	}{
		{"over the 16KiB login limit", loginBody(alice) + "&pad=" + strings.Repeat("x", 17<<10), http.StatusRequestEntityTooLarge},
		{"user field repeated", loginBody(alice) + "&user_id=bob", http.StatusBadRequest},
		{"contract repeated", "contract_no=1001&contract_no=2002&user_id=alice&password=x", http.StatusBadRequest},
		{"required field missing", "contract_no=1001&user_id=alice", http.StatusBadRequest},
	}
	for _, tc := range cases {
		resp, _, err := newBrowser().post(ctx, g.URL+"/login", tc.body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	// The same field in the query string and the body.
	resp, _, err := newBrowser().post(ctx, g.URL+"/login?user_id=bob", loginBody(alice))
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("user field in query and body: %v %v, want 400", err, resp)
	}
	if pending, _ := phone.Pending(ctx); len(pending) != 0 {
		t.Errorf("refused posts created %d challenges", len(pending))
	}
	if ops := e.ops(t); len(ops) != 0 {
		t.Fatalf("bank executed %+v for refused posts", ops)
	}
}

func TestBrokenPolicyStopsCaddyWithLineAndField(t *testing.T) {
	e := newEnv(t, envOptions{edit: func(s string) string {
		return strings.Replace(s, "path: {exact: /login}", "path: {exact: login-without-slash}", 1)
	}})
	port, adminPort := freePort(t), freePort(t)
	file := filepath.Join(e.dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(e.caddyfile(port, adminPort, caddyConfig{})), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = caddyrig.Env(e.dir)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("caddy kept running with a broken policy")
	}
	if err == nil {
		t.Fatalf("caddy exited 0 with a broken policy:\n%s", out)
	}
	line := lineOf(t, e.policy, "login-without-slash")
	want := "policy.yaml:" + line + ": rules[0].match.path"
	if !strings.Contains(string(out), want) {
		t.Fatalf("caddy's error does not name %q:\n%s", want, out)
	}
}

func lineOf(t *testing.T, path, needle string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, needle) {
			return strconv.Itoa(i + 1)
		}
	}
	t.Fatalf("%q not in %s", needle, path)
	return ""
}
