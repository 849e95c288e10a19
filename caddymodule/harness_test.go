package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
	examplepolicy "github.com/onepush/onepush/examples/policy"
	"github.com/onepush/onepush/internal/caddyrig"
)

// caddyBin is Caddy built from this repository (examples/caddy) once per
// test run: the end-to-end tests drive a real Caddy process.
var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "onepush-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if caddyBin, err = caddyrig.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output for assertions while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is one legacy bank behind one or more real Caddy processes.
type env struct {
	t       *testing.T
	dir     string
	bank    *bank.Bank
	bankURL string
	policy  string
}

type envOptions struct {
	// policy replaces the example policy; edit rewrites it (e.g. timeouts).
	policy []byte
	edit   func(string) string
	// users replaces the bank's DefaultUsers.
	users []bank.User
	// bank adjusts the bank's config (a bank that keeps its session ID…).
	bank func(*bank.Config)
	// passwordFirst keeps the example policy's login rule as it is
	// (after_success on a waiting page with code transfer). Without it,
	// the tests run the login as a held request (approve-only), the mode
	// most of them are about; edit then sees the policy as it was before
	// the example switched.
	passwordFirst bool
}

// passwordFirstLines are the example login rule's lines that make it
// password-first with code transfer.
const passwordFirstLines = "    challenge: after_success   # the bank checks the password first\n" +
	"    mode: interstitial         # a waiting page with a 6-digit code (code_digits)\n" +
	"    logout: {method: POST, path: /logout}   # ends a bank session the phone did not approve\n"

// heldLogin is the example policy with its login held until the phone
// approves (approve-only).
func heldLogin(t *testing.T, s string) string {
	t.Helper()
	if !strings.Contains(s, passwordFirstLines) {
		t.Fatal("the example policy's login rule no longer has the password-first lines this harness removes")
	}
	return strings.Replace(s, passwordFirstLines, "", 1)
}

func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	users := opts.users
	if users == nil {
		users = bank.DefaultUsers()
	}
	cfg := bank.Config{Users: users}
	if opts.bank != nil {
		opts.bank(&cfg)
	}
	b := bank.New(cfg)
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	pol := opts.policy
	if pol == nil {
		pol = examplepolicy.Bank
	}
	text := string(pol)
	if opts.policy == nil && !opts.passwordFirst {
		text = heldLogin(t, text)
	}
	if opts.edit != nil {
		text = opts.edit(text)
	}
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, bank: b, bankURL: srv.URL, policy: policyPath}
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := caddyrig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// gateway is one running Caddy process.
type gateway struct {
	URL   string
	Admin string
	cmd   *exec.Cmd
	logs  *syncBuffer
	file  string
}

// caddyConfig is what varies between the tests' Caddyfiles.
type caddyConfig struct {
	Servers   string // lines inside the global servers block
	Global    string // lines inside the global onepush block
	SiteExtra string // directives added to the bank's site
	// AdminAPIPort, when set, adds a listener serving the onepush admin API
	// with AdminToken (a literal or a placeholder).
	AdminAPIPort int
	AdminToken   string
	// BareStore leaves the store to Caddy's default when Global names
	// none: the embedded store, whose file `caddy onepush store init` must
	// have created. Otherwise such a config gets an embedded store that
	// creates itself on first start (auto_init), in this env's data
	// directory.
	BareStore bool
}

// storeLine finds a store option among the global onepush lines.
var storeLine = regexp.MustCompile(`(?m)^\s*store\s`)

// caddyfile renders the gateway config for this env: onepush in front of
// the bank, and optionally the onepush admin API on its own listener.
func (e *env) caddyfile(port, adminPort int, c caddyConfig) string {
	if !c.BareStore && !storeLine.MatchString(c.Global) {
		c.Global = "\t\tstore embedded {\n\t\t\tauto_init\n\t\t}\n" + c.Global
	}
	cfg := caddyrig.Options(adminPort, c.Servers, c.Global) +
		caddyrig.GatedSite(port, e.policy, c.SiteExtra, strings.TrimPrefix(e.bankURL, "http://"))
	if c.AdminAPIPort != 0 {
		cfg += caddyrig.Site(c.AdminAPIPort, fmt.Sprintf("\tonepush_admin {\n\t\ttoken %s\n\t}\n\trespond 404", c.AdminToken))
	}
	return cfg
}

// startGateway runs Caddy with cfg (a Caddyfile) and waits until it serves.
func (e *env) startGateway(global string) *gateway {
	e.t.Helper()
	port, adminPort := freePort(e.t), freePort(e.t)
	g, err := e.runCaddy(e.caddyfile(port, adminPort, caddyConfig{Global: global}), port, adminPort)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

func (e *env) runCaddy(cfg string, port, adminPort int) (*gateway, error) {
	file := filepath.Join(e.dir, fmt.Sprintf("Caddyfile.%d", port))
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logs := &syncBuffer{}
	cmd := exec.Command(caddyBin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = caddyrig.Env(e.dir)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	g := &gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort), cmd: cmd, logs: logs, file: file}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if e.t.Failed() {
			e.t.Logf("caddy logs (%s):\n%s", g.URL, logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("caddy exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(g.URL + "/static/style.css")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("caddy did not come up on %s:\n%s", g.URL, logs.String())
}

// gatewayWithAlice starts a gateway (global: extra global onepush options)
// with a poll-mode phone enrolled for alice through the enrolment page.
func (e *env) gatewayWithAlice(global string) (*gateway, *device.Phone) {
	e.t.Helper()
	g := e.startGateway(global)
	phone := newPhone(e.t, g)
	enroll(e.t, g, alice, phone)
	return g, phone
}

// newAliceEnv is an env whose gateway (started with global) has alice
// enrolled with a poll-mode phone, and whose bank has an empty log.
func newAliceEnv(t *testing.T, opts envOptions, global string) (*env, *gateway, *device.Phone) {
	t.Helper()
	e := newEnv(t, opts)
	g, phone := e.gatewayWithAlice(global)
	e.resetOps(t)
	return e, g, phone
}

// newPhone registers a poll-mode phone with the gateway's device API.
func newPhone(t *testing.T, g *gateway) *device.Phone {
	t.Helper()
	p, err := device.New(g.URL + "/onepush/device/v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Register(ctx, "none", ""); err != nil {
		t.Fatal(err)
	}
	return p
}

// browser is a PC browser: its own cookie jar, no redirect following, so
// tests see the bank's own response.
type browser struct {
	*http.Client
}

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{&http.Client{
		Jar:           jar,
		Timeout:       3 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) post(ctx context.Context, target, body string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.send(req)
}

// send does req and returns the response with its whole body.
func (b *browser) send(req *http.Request) (*http.Response, string, error) {
	resp, err := b.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, string(data), err
}

type result struct {
	resp *http.Response
	body string
	err  error
}

// postAsync starts a post that the gateway is expected to hold.
func (b *browser) postAsync(ctx context.Context, target, body string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, data, err := b.post(ctx, target, body)
		ch <- result{resp, data, err}
	}()
	return ch
}

func loginBody(u bank.User) string {
	return url.Values{"contract_no": {u.ContractNo}, "user_id": {u.UserID}, "password": {u.Password}}.Encode()
}

// enroll binds phone to user through the real enrolment page.
func enroll(t *testing.T, g *gateway, u bank.User, phone *device.Phone) {
	t.Helper()
	b := newBrowser()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, _, err := b.post(ctx, g.URL+"/login", loginBody(u))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login before enrolment: %v %v", err, resp)
	}
	status, body, err := phone.Enrol(ctx, b.Client, g.URL+"/onepush/enroll", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("enrolment: %v %d %.400s", err, status, body)
	}
}

// waitChallenge waits for the phone's next pending challenge.
func waitChallenge(t *testing.T, p *device.Phone) *device.Challenge {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ch, err := p.WaitPending(ctx, 20*time.Millisecond)
	if err != nil {
		t.Fatalf("waiting for a challenge: %v", err)
	}
	return ch
}

// ops reads the bank's operations log straight from the bank.
func (e *env) ops(t *testing.T) []bank.Op {
	t.Helper()
	resp, err := http.Get(e.bankURL + "/ops/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Ops []bank.Op `json:"ops"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Ops
}

// opsOf filters the log by operation.
func opsOf(ops []bank.Op, op string) []bank.Op {
	var out []bank.Op
	for _, o := range ops {
		if o.Op == op {
			out = append(out, o)
		}
	}
	return out
}

func (e *env) resetOps(t *testing.T) {
	t.Helper()
	e.bank.ResetOps()
}

// caddyReload runs `caddy reload` of file against the admin endpoint admin
// (host:port) with this env's directories.
func (e *env) caddyReload(t *testing.T, file, admin string) {
	t.Helper()
	cmd := exec.Command(caddyBin, "reload", "--config", file, "--adapter", "caddyfile", "--address", admin)
	cmd.Env = caddyrig.Env(e.dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
}

// adminCall sends method path to the admin API at api with the bearer
// token, as actor when one is named, and body as JSON when set. The caller
// closes the answer's body.
func adminCall(t *testing.T, api, token, actor, method, path string, body any) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, api+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if actor != "" {
		req.Header.Set("X-Onepush-Actor", actor)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}
