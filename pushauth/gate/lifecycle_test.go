package gate_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/enrol"
	"github.com/onepush/onepush/pushauth/gate"
	"github.com/onepush/onepush/pushauth/httpapi"
	"github.com/onepush/onepush/pushauth/push/webhook"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// The lifecycle points of the bank's FAQ, through the real Gate, device
// API and admin API on a MemoryStore, with an injected clock for every
// deadline (grace periods, security codes, the push budget).

const lifecyclePolicy = `version: 1
session: {cookie: BANKSESSION, ttl: 30m}
step_up_required:
  users: ["1001/boss"]
  pattern: "9[0-9]*/.*"
deregistration_grace: 1h
rules:
  - name: login
    kind: login
    match: {path: {exact: /login}, fields: [contract_no, user_id, password]}
    user: {template: "{form.contract_no}/{form.user_id}"}
    display: [{label: User, value: "{form.user_id}"}]
    not_enrolled: allow
    success: {status: [303], set_cookie: BANKSESSION, location_prefix: /dashboard}
    timeout: 10s
  - name: transfer
    kind: transaction
    match: {path: {prefix: /transfer}, fields: [amount]}
    user: {session: true}
    display: [{label: Amount, value: "{form.amount}"}]
    not_enrolled: deny
  - name: logout
    kind: logout
    match: {methods: [POST, GET], path: {exact: /logout}}
    user: {session: true}
`

const adminToken = "test-admin-token-0123456789"

// fakeBank accepts any password except "wrong" and records what reached it.
type fakeBank struct {
	mu  sync.Mutex
	ops []string
}

func (b *fakeBank) serve(w http.ResponseWriter, r *http.Request) error {
	_ = r.ParseForm()
	b.mu.Lock()
	b.ops = append(b.ops, r.URL.Path+" "+r.PostForm.Get("user_id")+r.PostForm.Get("amount"))
	b.mu.Unlock()
	switch r.URL.Path {
	case "/login":
		if r.PostForm.Get("password") == "wrong" {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "bank: wrong password")
			return nil
		}
		var sid [12]byte
		_, _ = rand.Read(sid[:])
		http.SetCookie(w, &http.Cookie{Name: "BANKSESSION", Value: hex.EncodeToString(sid[:]), Path: "/"})
		w.Header().Set("Location", "/dashboard")
		w.WriteHeader(http.StatusSeeOther)
	default:
		_, _ = io.WriteString(w, "bank: ok")
	}
	return nil
}

func (b *fakeBank) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.ops
	b.ops = nil
	return out
}

type countingMetrics struct {
	pushauth.NopMetrics
	mu       sync.Mutex
	outcomes map[string]int
	held     int
	approved int
}

func (m *countingMetrics) ChallengeOutcome(rule, outcome string) {
	m.mu.Lock()
	m.outcomes[rule+"/"+outcome]++
	m.mu.Unlock()
}
func (m *countingMetrics) Held(d int) { m.mu.Lock(); m.held += d; m.mu.Unlock() }
func (m *countingMetrics) ApprovalLatency(time.Duration) {
	m.mu.Lock()
	m.approved++
	m.mu.Unlock()
}
func (m *countingMetrics) get(k string) int { m.mu.Lock(); defer m.mu.Unlock(); return m.outcomes[k] }

type pushSink struct {
	mu   sync.Mutex
	msgs []map[string]string
}

func (s *pushSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m map[string]string
	_ = json.NewDecoder(r.Body).Decode(&m)
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *pushSink) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		out = append(out, m["kind"])
	}
	return out
}

type rig struct {
	t       *testing.T
	clk     *pushauthtest.Clock
	eng     *pushauth.Engine
	bank    *fakeBank
	srv     *httptest.Server
	sink    *httptest.Server
	pushes  *pushSink
	metrics *countingMetrics
}

func newRig(t *testing.T) *rig { return newRigWith(t, nil) }

// newRigWith runs the gateway on the lifecycle policy as edit rewrites it.
func newRigWith(t *testing.T, edit func(string) string) *rig {
	t.Helper()
	clk := pushauthtest.NewClock(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC))
	store := memory.New(clk.Now)
	t.Cleanup(func() { _ = store.Close() })
	pushes := &pushSink{}
	sink := httptest.NewServer(pushes)
	t.Cleanup(sink.Close)
	wp, err := webhook.New([]string{sink.URL + "/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &countingMetrics{outcomes: map[string]int{}}
	eng, err := pushauth.NewEngine(pushauth.Config{
		Store: store, Now: clk.Now, Logger: pushauthtest.Quiet(),
		Pushers: map[string]pushauth.Pusher{"webhook": wp}, Metrics: m, Backstop: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	text := lifecyclePolicy
	if edit != nil {
		text = edit(text)
	}
	pol, err := policy.Parse("lifecycle.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.AddPolicy(pol))
	pages, err := gate.NewPages("", "/")
	if err != nil {
		t.Fatal(err)
	}
	bank := &fakeBank{}
	binder := enrol.New(eng)
	gate := &gate.Gate{Engine: eng, Policy: pol, Pages: pages, Log: pushauthtest.Quiet(), EnrollPath: "/onepush/enroll", Binder: binder, WaitPath: "/onepush/wait/"}
	dev := httpapi.NewDevice(eng, "", 0) // the policy's grace must win over this 0
	admin, err := httpapi.NewAdmin(eng, "", adminToken, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case dev.Handles(r.URL.Path):
			dev.ServeHTTP(w, r)
		case admin.Handles(r.URL.Path):
			admin.ServeHTTP(w, r)
		default:
			if err := gate.Route(w, r, bank.serve); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
			}
		}
	}))
	t.Cleanup(srv.Close)
	return &rig{t: t, clk: clk, eng: eng, bank: bank, srv: srv, sink: sink, pushes: pushes, metrics: m}
}

func (g *rig) phone(platform string) *device.Phone {
	g.t.Helper()
	p, err := device.New(g.srv.URL+"/onepush/device/v1", device.WithClock(g.clk.Now))
	if err != nil {
		g.t.Fatal(err)
	}
	token := ""
	if platform == "webhook" {
		token = g.sink.URL + "/phone"
	}
	if err := p.Register(context.Background(), platform, token); err != nil {
		g.t.Fatal(err)
	}
	return p
}

type br struct{ *http.Client }

func newBr() *br {
	jar, _ := cookiejar.New(nil)
	return &br{&http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type answer struct {
	status int
	body   string
	resp   *http.Response
}

func (b *br) post(t *testing.T, target string, form url.Values) answer {
	t.Helper()
	resp, err := b.PostForm(target, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(data), resp}
}

func (b *br) postAsync(t *testing.T, target string, form url.Values) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		resp, err := b.PostForm(target, form)
		if err != nil {
			ch <- answer{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		ch <- answer{resp.StatusCode, string(data), resp}
	}()
	return ch
}

func loginForm(key string) url.Values {
	c, u, _ := strings.Cut(key, "/")
	return url.Values{"contract_no": {c}, "user_id": {u}, "password": {"pw"}}
}

// passwordLogin logs in a user the gateway lets through without a push.
func (g *rig) passwordLogin(b *br, key string) {
	g.t.Helper()
	a := b.post(g.t, g.srv.URL+"/login", loginForm(key))
	if a.status != http.StatusSeeOther {
		g.t.Fatalf("password-only login of %s: %d %.200q", key, a.status, a.body)
	}
}

// enrol logs key in (password only) and binds phone through the page.
func (g *rig) enrol(key string, p *device.Phone) answer {
	g.t.Helper()
	b := newBr()
	g.passwordLogin(b, key)
	return g.enrolPost(b, p, nil)
}

// enrolPost is b's user on the enrolment page: the page's form, filled in
// with p's credential ID and current code unless form says otherwise.
func (g *rig) enrolPost(b *br, p *device.Phone, form url.Values) answer {
	g.t.Helper()
	st, page, err := p.Enrol(context.Background(), b.Client, g.srv.URL+"/onepush/enroll", form)
	if err != nil {
		g.t.Fatal(err)
	}
	return answer{status: st, body: page}
}

func (g *rig) mustEnrol(key string, p *device.Phone) {
	g.t.Helper()
	if a := g.enrol(key, p); a.status != http.StatusOK || !strings.Contains(a.body, "Phone registered") {
		g.t.Fatalf("enrolment of %s: %d %.300q", key, a.status, a.body)
	}
	g.clk.Advance(31 * time.Second) // the next enrolment needs the next code
}

// getStatus answers the status of a GET of target with header set to
// value (not sent when value is "").
func getStatus(t *testing.T, target, header, value string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	if value != "" {
		req.Header.Set(header, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// alice enrols a poll-mode phone for 1001/alice and returns it.
func (g *rig) alice() *device.Phone {
	g.t.Helper()
	p := g.phone("none")
	g.mustEnrol("1001/alice", p)
	return p
}

func (g *rig) pendingCount(p *device.Phone) int {
	g.t.Helper()
	list, err := p.Pending(context.Background())
	if err != nil {
		g.t.Fatal(err)
	}
	return len(list)
}

func waitFor(t *testing.T, p *device.Phone) *device.Challenge {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := p.WaitPending(ctx, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// pushLogin logs key in and answers the push with decision; it returns
// the browser's answer.
func (g *rig) pushLogin(b *br, key string, p *device.Phone, decision string) answer {
	g.t.Helper()
	res := b.postAsync(g.t, g.srv.URL+"/login", loginForm(key))
	ch := waitFor(g.t, p)
	if ch.Parsed.User != key {
		g.t.Fatalf("challenge for %q, want %q", ch.Parsed.User, key)
	}
	if st, err := p.Decide(context.Background(), ch, decision, 0); err != nil || st != http.StatusOK {
		g.t.Fatalf("%s: %d %v", decision, st, err)
	}
	return <-res
}

func (g *rig) admin(method, path string, body any) (int, map[string]any) {
	g.t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = strings.NewReader(string(data))
	}
	req, _ := http.NewRequest(method, g.srv.URL+"/onepush/admin/v1"+path, rd)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set(httpapi.ActorHeader, "ops-tanaka")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (g *rig) state(key string) map[string]any {
	g.t.Helper()
	st, out := g.admin(http.MethodGet, "/user?key="+url.QueryEscape(key), nil)
	if st != http.StatusOK {
		g.t.Fatalf("show %s: %d %v", key, st, out)
	}
	return out
}

func TestEnrolmentWithRightAndWrongCode(t *testing.T) {
	g := newRig(t)
	p := g.phone("webhook")
	b := newBr()
	g.passwordLogin(b, "1001/alice")
	resp, err := b.Get(g.srv.URL + "/onepush/enroll")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `name="credential_id"`) {
		t.Fatalf("enrol page: %d %.200q", resp.StatusCode, page)
	}
	code, _ := p.SecurityCode()
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	a := g.enrolPost(b, p, url.Values{"code": {wrong}})
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, "Security code not accepted") || !strings.Contains(a.body, `name="code"`) {
		t.Fatalf("wrong code: %d %.300q", a.status, a.body)
	}
	// The app ID she typed stays in the form: only the code is typed again.
	if !strings.Contains(a.body, `value="`+p.CredentialID()+`"`) {
		t.Fatalf("after a wrong code the form lost the typed app ID %s: %s", p.CredentialID(), a.body)
	}
	a = g.enrolPost(b, p, url.Values{"credential_id": {"OPNOSUCHCREDENTIAL"}, "code": {code}})
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, "App ID not found") {
		t.Fatalf("unknown credential: %d %.300q", a.status, a.body)
	}
	// Both count toward the lock, the unknown credential ID too.
	if s := g.state("1001/alice"); s["enrolled"] != false || s["failures"] != float64(2) {
		t.Fatalf("after a wrong code and an unknown credential: %v, want not enrolled with 2 failures", s)
	}
	// The right code, typed in lower case with spaces: bound, and the phone
	// gets a test push.
	a = g.enrolPost(b, p, url.Values{"credential_id": {" " + strings.ToLower(p.CredentialID()) + " "}, "code": {code}})
	if a.status != http.StatusOK || !strings.Contains(a.body, "test notification was sent") {
		t.Fatalf("right code: %d %.300q", a.status, a.body)
	}
	if k := g.pushes.kinds(); len(k) != 1 || k[0] != pushauth.TestPushKind {
		t.Fatalf("pushes after binding: %v, want one test push", k)
	}
	if s := g.state("1001/alice"); s["enrolled"] != true || s["credential_id"] != p.CredentialID() || s["failures"] != float64(0) {
		t.Fatalf("after enrolment: %v", s)
	}
	// The same code again (another user trying to reuse it) is refused.
	b2 := newBr()
	g.passwordLogin(b2, "1001/bob")
	if a := g.enrolPost(b2, p, url.Values{"code": {code}}); a.status != http.StatusBadRequest {
		t.Fatalf("reused code: %d, want 400", a.status)
	}
	// From now on alice's login waits for the phone.
	g.bank.take()
	if a := g.pushLogin(newBr(), "1001/alice", p, device.Approve); a.status != http.StatusSeeOther {
		t.Fatalf("login after enrolment: %d", a.status)
	}
	// Without a session nobody can enrol.
	if a := g.enrolPost(newBr(), p, url.Values{"code": {code}}); a.status != http.StatusForbidden {
		t.Fatalf("enrolment without a session: %d", a.status)
	}
	// The first refusal is audited as it happens; the second, seconds
	// later, is counted into one summary when the window ends (here: when
	// the engine stops).
	_ = g.eng.Close()
	evs, err := g.eng.Audit().Query(context.Background(), pushauth.AuditQuery{User: "1001/alice", Type: pushauth.AuditEnrolment})
	if err != nil || len(evs) != 3 || evs[0].Outcome != "bad_code" || evs[1].Outcome != "bound" ||
		evs[2].Outcome != "repeated" || !strings.Contains(evs[2].Detail, "unknown_credential 1") {
		t.Fatalf("enrolment audit: %+v %v", evs, err)
	}
}

func TestOnePhoneForTwoUsers(t *testing.T) {
	g := newRig(t)
	p := g.phone("none")
	g.mustEnrol("1001/alice", p)
	g.mustEnrol("1001/bob", p)
	for _, key := range []string{"1001/alice", "1001/bob"} {
		if a := g.pushLogin(newBr(), key, p, device.Approve); a.status != http.StatusSeeOther {
			t.Fatalf("%s login approved on the shared phone: %d", key, a.status)
		}
	}
	if a := g.pushLogin(newBr(), "1001/bob", p, device.Deny); a.status != http.StatusForbidden {
		t.Fatalf("bob's denied login: %d", a.status)
	}
	// bob's denial is bob's failure only.
	if s := g.state("1001/alice"); s["failures"] != float64(0) {
		t.Fatalf("alice's failures after bob's denial: %v", s["failures"])
	}
}

func TestSecondCredentialForABoundUserIsRefused(t *testing.T) {
	g := newRig(t)
	first, second := g.phone("none"), g.phone("none")
	g.mustEnrol("1001/alice", first)
	b := newBr()
	if a := g.pushLogin(b, "1001/alice", first, device.Approve); a.status != http.StatusSeeOther {
		t.Fatalf("login: %d", a.status)
	}
	a := g.enrolPost(b, second, nil)
	if a.status != http.StatusConflict || !strings.Contains(a.body, "already") {
		t.Fatalf("second phone: %d %.300q", a.status, a.body)
	}
	if s := g.state("1001/alice"); s["credential_id"] != first.CredentialID() {
		t.Fatalf("alice is bound to %v, want her first phone", s["credential_id"])
	}
	// Support staff cannot bind it either while the first is bound.
	if st, out := g.admin(http.MethodPost, "/user/bind", map[string]string{"key": "1001/alice", "credential_id": second.CredentialID()}); st != http.StatusConflict {
		t.Fatalf("admin bind of a second phone: %d %v", st, out)
	}
}

func TestSuspendGraceRequiredUserResume(t *testing.T) {
	g := newRig(t)
	p := g.phone("none")
	g.mustEnrol("1001/boss", p)  // step-up required (listed)
	g.mustEnrol("1001/alice", p) // not required
	for _, key := range []string{"1001/boss", "1001/alice"} {
		if st, out := g.admin(http.MethodPost, "/user/suspend", map[string]string{"key": key, "grace": "2h"}); st != http.StatusOK || out["state"] != "suspended" {
			t.Fatalf("suspend %s: %d %v", key, st, out)
		}
	}
	g.bank.take()
	// Within the grace period: the password alone, no push.
	g.passwordLogin(newBr(), "1001/boss")
	if n := g.pendingCount(p); n != 0 {
		t.Fatalf("%d challenges during the suspension grace", n)
	}
	if ops := g.bank.take(); len(ops) != 1 {
		t.Fatalf("bank saw %v, want the login", ops)
	}
	// After it: the required user is refused and nothing reaches the bank;
	// the others follow the rule (login: allow).
	g.clk.Advance(2*time.Hour + time.Second)
	a := newBr().post(t, g.srv.URL+"/login", loginForm("1001/boss"))
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "suspended") {
		t.Fatalf("required user after the grace: %d %.300q", a.status, a.body)
	}
	if ops := g.bank.take(); len(ops) != 0 {
		t.Fatalf("bank saw %v for a refused login", ops)
	}
	g.passwordLogin(newBr(), "1001/alice")
	// Resume: the push is back.
	if st, out := g.admin(http.MethodPost, "/user/resume", map[string]string{"key": "1001/boss"}); st != http.StatusOK || out["state"] != "active" {
		t.Fatalf("resume: %d %v", st, out)
	}
	if a := g.pushLogin(newBr(), "1001/boss", p, device.Approve); a.status != http.StatusSeeOther {
		t.Fatalf("login after resume: %d", a.status)
	}
	// Resuming an active user is a conflict, not a silent success.
	if st, _ := g.admin(http.MethodPost, "/user/resume", map[string]string{"key": "1001/boss"}); st != http.StatusConflict {
		t.Fatalf("resume of an active user: %d, want 409", st)
	}
	evs, _ := g.eng.Audit().Query(context.Background(), pushauth.AuditQuery{User: "1001/boss", Type: pushauth.AuditAdmin})
	if len(evs) != 2 || evs[0].Outcome != "suspend" || evs[1].Outcome != "resume" || !strings.HasPrefix(evs[0].Actor, "ops-tanaka@") {
		t.Fatalf("admin audit: %+v", evs)
	}
}

// TestDenialsDoNotLockWrongCodesDo: a denial is the customer refusing a
// request she did not make, not a failed authentication; counting it let
// whoever rang her phone lock her out. Nine denials leave her active with
// no failures; five wrong codes in a row (code transfer) lock her until
// the bank unlocks.
func TestDenialsDoNotLockWrongCodesDo(t *testing.T) {
	g := newRigWith(t, interstitialLogin)
	held := newRig(t)
	hp := held.phone("none")
	held.mustEnrol("1001/alice", hp)
	for round := 0; round < 3; round++ {
		for i := 0; i < 3; i++ {
			if a := held.pushLogin(newBr(), "1001/alice", hp, device.Deny); a.status != http.StatusForbidden {
				t.Fatalf("denial: %d", a.status)
			}
		}
		held.clk.Advance(time.Minute) // the per-minute push budget
	}
	if s := held.state("1001/alice"); s["state"] != "active" || s["failures"] != float64(0) {
		t.Fatalf("after 9 denials: %v, want active with no failures", s)
	}
	if got := held.metrics.get("login/denied"); got != 9 {
		t.Errorf("denied challenges counted %d, want 9", got)
	}
	if a := held.pushLogin(newBr(), "1001/alice", hp, device.Approve); a.status != http.StatusSeeOther {
		t.Fatalf("her own login after 9 denials: %d", a.status)
	}

	p := g.alice()
	g.bank.take()
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		g.wrongCodeLogin(p, i)
		if i == 4 {
			if s := g.state("1001/alice"); s["state"] != "active" || s["failures"] != float64(4) {
				t.Fatalf("after 4 wrong codes: %v", s)
			}
			g.clk.Advance(time.Minute) // the per-minute push budget
		}
	}
	if s := g.state("1001/alice"); s["state"] != "locked" {
		t.Fatalf("after 5 wrong codes: %v", s)
	}
	a := newBr().post(t, g.srv.URL+"/login", loginForm("1001/alice"))
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "locked") {
		t.Fatalf("locked login: %d %.200q", a.status, a.body)
	}
	if n := g.pendingCount(p); n != 0 || len(g.bank.take()) != 0 {
		t.Fatal("a locked user's login rang the phone or reached the bank")
	}
	if st, out := g.admin(http.MethodPost, "/user/unlock", map[string]string{"key": "1001/alice"}); st != http.StatusOK || out["state"] != "active" || out["failures"] != float64(0) {
		t.Fatalf("unlock: %d %v", st, out)
	}
	g.clk.Advance(time.Minute)
	b := &codeBrowser{br: newBr()}
	code, ch := g.startCodeLogin(b, "1001/alice", p)
	if st, _ := p.DecideWithCode(ctx, ch, device.Approve, code); st != http.StatusOK {
		t.Fatalf("approval after unlock: %d", st)
	}
	if a := g.continueWait(b, ch); a.status != http.StatusSeeOther {
		t.Fatalf("login after unlock: %d", a.status)
	}
	if g.metrics.held != 0 || held.metrics.held != 0 {
		t.Errorf("held gauges end at %d and %d, want 0", g.metrics.held, held.metrics.held)
	}
}

func TestOneFraudReportLocksAtOnce(t *testing.T) {
	g := newRig(t)
	p := g.alice()
	if a := g.pushLogin(newBr(), "1001/alice", p, device.Fraud); a.status != http.StatusForbidden {
		t.Fatalf("fraud report: %d", a.status)
	}
	if s := g.state("1001/alice"); s["state"] != "locked" || s["failures"] != float64(1) {
		t.Fatalf("after one fraud report: %v, want locked", s)
	}
	evs, _ := g.eng.Audit().Query(context.Background(), pushauth.AuditQuery{User: "1001/alice", Type: pushauth.AuditStateChange})
	if len(evs) != 1 || evs[0].Outcome != "locked" || !strings.Contains(evs[0].Detail, "fraud") {
		t.Fatalf("lock not audited with its reason: %+v", evs)
	}
}

func TestWrongCodesAtEnrolmentLock(t *testing.T) {
	g := newRig(t)
	p := g.phone("none")
	b := newBr()
	g.passwordLogin(b, "1001/alice")
	code, _ := p.SecurityCode()
	wrong := "123456"
	if code == wrong {
		wrong = "654321"
	}
	for i := 0; i < 5; i++ {
		g.enrolPost(b, p, url.Values{"code": {wrong}})
	}
	a := g.enrolPost(b, p, url.Values{"code": {code}})
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "locked") {
		t.Fatalf("right code after 5 wrong ones: %d %.200q", a.status, a.body)
	}
	if s := g.state("1001/alice"); s["state"] != "locked" || s["enrolled"] != false {
		t.Fatalf("after 5 wrong codes: %v", s)
	}
}

// enrolLogin makes the login rule check the password at the bank for
// users it refuses, and offer them the enrolment form.
func enrolLogin(s string) string {
	return strings.Replace(s, "    not_enrolled: allow\n", "    not_enrolled: enrol\n    logout: {method: POST, path: /logout}\n", 1)
}

func TestDeregisterGraceReenrol(t *testing.T) {
	g := newRig(t)
	old := g.phone("none")
	g.mustEnrol("9001/director", old) // step-up required (pattern)
	// No deadline given: the policy's deregistration_grace (1h).
	st, out := g.admin(http.MethodPost, "/user/deregister", map[string]string{"key": "9001/director"})
	if st != http.StatusOK || out["state"] != "deregistered" || out["in_grace"] != true {
		t.Fatalf("deregister: %d %v", st, out)
	}
	if until, _ := time.Parse(time.RFC3339, out["until"].(string)); !until.Equal(g.clk.Now().Add(time.Hour)) {
		t.Fatalf("grace until %v, want the policy's 1h from now", out["until"])
	}
	g.passwordLogin(newBr(), "9001/director")
	if g.pendingCount(old) != 0 {
		t.Fatal("a deregistered user's login rang the old phone")
	}
	g.clk.Advance(time.Hour + time.Second)
	g.bank.take()
	// After the grace the login is refused, and under not_enrolled: allow
	// it never reaches the bank, right password or wrong.
	bad := loginForm("9001/director")
	bad.Set("password", "wrong")
	for _, form := range []url.Values{bad, loginForm("9001/director")} {
		if a := newBr().post(t, g.srv.URL+"/login", form); a.status != http.StatusForbidden || !strings.Contains(a.body, "register your phone again") {
			t.Fatalf("required user after the grace: %d %.300q", a.status, a.body)
		}
	}
	if ops := g.bank.take(); len(ops) != 0 {
		t.Fatalf("the bank saw %q for refused logins", ops)
	}
}

// TestReenrolThroughEnrolRule: with not_enrolled: enrol the bank checks
// the password of a refused login and the browser gets the form, but the
// phone that follows a deregistered one needs an activation code.
func TestReenrolThroughEnrolRule(t *testing.T) {
	g := newRigWith(t, enrolLogin)
	old := g.phone("none")
	// A user's first phone: the password (here, the ticket of the login
	// the bank accepted) is enough.
	b := newBr()
	if a := b.post(t, g.srv.URL+"/login", loginForm("9001/director")); a.status != http.StatusForbidden || !strings.Contains(a.body, `name="form_token"`) {
		t.Fatalf("first login of an unenrolled user: %d %.300q", a.status, a.body)
	}
	if a := g.enrolPost(b, old, nil); a.status != http.StatusOK {
		t.Fatalf("first phone through the ticket: %d %.300q", a.status, a.body)
	}
	g.clk.Advance(31 * time.Second)
	if st, out := g.admin(http.MethodPost, "/user/deregister", map[string]string{"key": "9001/director", "grace": "0s"}); st != http.StatusOK {
		t.Fatalf("deregister: %d %v", st, out)
	}
	g.bank.take()
	// A wrong password gets the bank's own answer.
	bad := loginForm("9001/director")
	bad.Set("password", "wrong")
	if a := newBr().post(t, g.srv.URL+"/login", bad); a.status != http.StatusOK || a.body != "bank: wrong password" {
		t.Fatalf("wrong password after the grace: %d %.200q", a.status, a.body)
	}
	// The right one: refused with the page asking to enrol again and the
	// form; the bank's session is logged out and never reaches the browser.
	b = newBr()
	a := b.post(t, g.srv.URL+"/login", loginForm("9001/director"))
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "register your phone again") || !strings.Contains(a.body, `name="credential_id"`) {
		t.Fatalf("required user after the grace: %d %.300q", a.status, a.body)
	}
	for _, c := range a.resp.Cookies() {
		if c.Name == "BANKSESSION" {
			t.Fatal("the refused login's bank session reached the browser")
		}
	}
	if ops := g.bank.take(); len(ops) != 3 || !strings.HasPrefix(ops[2], "/logout") {
		t.Fatalf("bank saw %q, want the two logins and the logout of the accepted one", ops)
	}
	// A transfer with no session is refused as before.
	if a := b.post(t, g.srv.URL+"/transfer", url.Values{"amount": {"100"}}); a.status != http.StatusForbidden {
		t.Fatalf("transfer after a refused login: %d", a.status)
	}
	// The password is not enough for a user who had a phone.
	fresh := g.phone("none")
	if a := g.enrolPost(b, fresh, nil); a.status != http.StatusForbidden || !strings.Contains(a.body, "Activation code needed") {
		t.Fatalf("re-enrolment without an activation code: %d %.300q", a.status, a.body)
	}
	g.clk.Advance(31 * time.Second)
	st, issued := g.admin(http.MethodPost, "/user/activation-code", map[string]string{"key": "9001/director"})
	code, _ := issued["code"].(string)
	if st != http.StatusOK || len(code) != 11 || issued["kind"] != pushauth.ActivationBinding {
		t.Fatalf("activation code: %d %v", st, issued)
	}
	wrong := "00000-00000"
	if a := g.enrolPost(b, fresh, url.Values{"activation_code": {wrong}}); a.status != http.StatusBadRequest || !strings.Contains(a.body, "Activation code not accepted") {
		t.Fatalf("wrong activation code: %d %.300q", a.status, a.body)
	}
	g.clk.Advance(31 * time.Second)
	// Typed in lower case without the hyphen: the same code.
	typed := strings.ToLower(strings.ReplaceAll(code, "-", ""))
	if a := g.enrolPost(b, fresh, url.Values{"activation_code": {typed}}); a.status != http.StatusOK || !strings.Contains(a.body, "Phone registered") {
		t.Fatalf("re-enrolment with the activation code: %d %.300q", a.status, a.body)
	}
	if s := g.state("9001/director"); s["credential_id"] != fresh.CredentialID() || s["failures"] != float64(0) {
		t.Fatalf("after re-enrolment: %v", s)
	}
	if a := g.pushLogin(newBr(), "9001/director", fresh, device.Approve); a.status != http.StatusSeeOther {
		t.Fatalf("login after re-enrolment: %d", a.status)
	}
	// The ticket was used up.
	if a := g.enrolPost(b, fresh, nil); a.status != http.StatusForbidden {
		t.Fatalf("second use of the enrolment ticket: %d", a.status)
	}
}

// TestActivationCodeReplacesAPhoneOnce: with an activation code a bound
// user replaces the phone; the code works once, and the old phone is told.
func TestActivationCodeReplacesAPhoneOnce(t *testing.T) {
	g := newRig(t)
	old, fresh, third := g.phone("webhook"), g.phone("none"), g.phone("none")
	g.mustEnrol("1001/alice", old)
	b := newBr()
	if a := g.pushLogin(b, "1001/alice", old, device.Approve); a.status != http.StatusSeeOther {
		t.Fatalf("login: %d", a.status)
	}
	st, issued := g.admin(http.MethodPost, "/user/activation-code", map[string]string{"key": "1001/alice", "kind": "recovery"})
	code, _ := issued["code"].(string)
	if st != http.StatusOK || issued["kind"] != pushauth.ActivationRecovery {
		t.Fatalf("activation code: %d %v", st, issued)
	}
	if exp, _ := time.Parse(time.RFC3339, issued["expires_at"].(string)); !exp.Equal(g.clk.Now().Add(14 * 24 * time.Hour)) {
		t.Fatalf("recovery code expires %v, want the default 14 days", issued["expires_at"])
	}
	before := len(g.pushes.kinds())
	if a := g.enrolPost(b, fresh, url.Values{"activation_code": {code}}); a.status != http.StatusOK {
		t.Fatalf("replacement with the recovery code: %d %.300q", a.status, a.body)
	}
	if s := g.state("1001/alice"); s["credential_id"] != fresh.CredentialID() {
		t.Fatalf("after replacement: %v", s)
	}
	if k := g.pushes.kinds()[before:]; len(k) != 1 || k[0] != pushauth.ReplacedPushKind {
		t.Fatalf("pushes to the old phone after replacement: %v", k)
	}
	g.clk.Advance(31 * time.Second)
	if a := g.enrolPost(b, third, url.Values{"activation_code": {code}}); a.status != http.StatusBadRequest {
		t.Fatalf("second use of the code: %d %.300q", a.status, a.body)
	}
	if s := g.state("1001/alice"); s["credential_id"] != fresh.CredentialID() || s["failures"] != float64(1) {
		t.Fatalf("after the second use: %v", s)
	}
	// The admin API never shows the code again, and the store has no copy.
	if _, issued2 := g.admin(http.MethodGet, "/user?key=1001/alice", nil); strings.Contains(fmt.Sprint(issued2), code) {
		t.Fatal("the user view shows the activation code")
	}
}

func TestUninstallDeregistersEveryUserOfThePhone(t *testing.T) {
	g := newRig(t)
	p := g.phone("none")
	g.mustEnrol("1001/boss", p)
	g.mustEnrol("1001/alice", p)
	// A login waiting on the phone when the app is uninstalled is answered
	// at once, not left to its timeout, and never forwarded.
	held := newBr().postAsync(t, g.srv.URL+"/login", loginForm("1001/alice"))
	waitFor(t, p)
	g.bank.take()
	if err := p.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-held:
		if a.status != http.StatusConflict || !strings.Contains(a.body, "cancelled") {
			t.Fatalf("held login at uninstall: %d %.200q", a.status, a.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held login still waiting 5s after the app was uninstalled")
	}
	if ops := g.bank.take(); len(ops) != 0 {
		t.Fatalf("bank saw %v after the uninstall", ops)
	}
	for _, key := range []string{"1001/boss", "1001/alice"} {
		s := g.state(key)
		until, _ := time.Parse(time.RFC3339, s["until"].(string))
		if s["state"] != "deregistered" || s["credential_id"] != nil || !until.Equal(g.clk.Now().Add(time.Hour)) {
			t.Fatalf("%s after uninstall: %v (want deregistered with the policy's 1h grace)", key, s)
		}
	}
	// The credential is gone: it can no longer call the device API.
	if _, err := p.Pending(context.Background()); err == nil {
		t.Fatal("an uninstalled credential can still poll")
	}
	g.passwordLogin(newBr(), "1001/boss")
	g.clk.Advance(2 * time.Hour)
	if a := newBr().post(t, g.srv.URL+"/login", loginForm("1001/boss")); a.status != http.StatusForbidden {
		t.Fatalf("required user after the uninstall grace: %d", a.status)
	}
	g.passwordLogin(newBr(), "1001/alice") // not required: the rule allows
}

func TestAdminAPIAuthAndAuditQuery(t *testing.T) {
	g := newRig(t)
	p := g.alice()
	for _, auth := range []string{"", "Bearer wrong-token", "Basic " + adminToken, "Bearer " + adminToken + "x"} {
		if st := getStatus(t, g.srv.URL+"/onepush/admin/v1/user?key=1001/alice", "Authorization", auth); st != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, st)
		}
	}
	if st, _ := g.admin(http.MethodGet, "/user?key=nobody", nil); st != http.StatusNotFound {
		t.Errorf("unknown user: %d", st)
	}
	if st, _ := g.admin(http.MethodPost, "/user/suspend", map[string]string{"key": "1001/alice", "until": "tomorrow"}); st != http.StatusBadRequest {
		t.Errorf("bad deadline: %d", st)
	}
	g.pushLogin(newBr(), "1001/alice", p, device.Approve)
	mid := g.clk.Now()
	g.clk.Advance(time.Minute)
	g.pushLogin(newBr(), "1001/alice", p, device.Deny)
	// Unbind and bind back (support staff).
	if st, out := g.admin(http.MethodPost, "/user/unbind", map[string]string{"key": "1001/alice"}); st != http.StatusOK || out["enrolled"] != false {
		t.Fatalf("unbind: %d %v", st, out)
	}
	if st, out := g.admin(http.MethodPost, "/user/bind", map[string]string{"key": "1001/alice", "credential_id": p.CredentialID()}); st != http.StatusOK || out["enrolled"] != true {
		t.Fatalf("bind: %d %v", st, out)
	}
	st, out := g.admin(http.MethodGet, "/audit?user=1001/alice&type=challenge.decided&since="+url.QueryEscape(mid.Add(time.Second).Format(time.RFC3339)), nil)
	evs, _ := out["events"].([]any)
	if st != http.StatusOK || len(evs) != 1 || evs[0].(map[string]any)["outcome"] != "denied" || evs[0].(map[string]any)["client_ip"] != "127.0.0.1" {
		t.Fatalf("audit since the approval: %d %v", st, out)
	}
	st, out = g.admin(http.MethodGet, "/user?key=1001/alice", nil)
	recent, _ := out["recent"].([]any)
	if st != http.StatusOK || len(recent) < 4 {
		t.Fatalf("show: recent challenges %v", out)
	}
	// Nothing secret in the trail.
	all, _ := g.eng.Audit().Query(context.Background(), pushauth.AuditQuery{})
	data, _ := json.Marshal(all)
	if strings.Contains(string(data), p.OTPSecret()) || strings.Contains(string(data), "BANKSESSION") {
		t.Fatal("audit trail holds a secret")
	}
}
