package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// health asks the admin API's /health, without a token.
func health(t *testing.T, api string) (int, map[string]any) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(api + "/health")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

// TestHealthFollowsTheRedisServer: /health answers without a token, 200
// while the store answers; with the Redis server gone, 503 within the
// check's bound, and it says nothing about users or secrets.
func TestHealthFollowsTheRedisServer(t *testing.T) {
	srv := redistest.StartServer(t)
	e := newEnv(t, envOptions{})
	t.Setenv("ONEPUSH_ADMIN_TOKEN", e2eAdminToken)
	port, adminPort, internal := freePort(t), freePort(t), freePort(t)
	g, err := e.runCaddy(e.caddyfile(port, adminPort, caddyConfig{Global: redisGlobal(srv.Addr(), "prefix health:"),
		AdminAPIPort: internal, AdminToken: "{env.ONEPUSH_ADMIN_TOKEN}"}), port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	enroll(t, g, alice, newPhone(t, g))
	api := fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", internal)
	st, out := health(t, api)
	if st != http.StatusOK || out["store"] != "ok" || out["engine"] != "ok" {
		t.Fatalf("health with Redis up = %d %v, want 200 store ok", st, out)
	}
	srv.Kill()
	start := time.Now()
	st, out = health(t, api)
	if st != http.StatusServiceUnavailable || out["store"] != "unavailable" {
		t.Fatalf("health with Redis killed = %d %v, want 503 store unavailable", st, out)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("health took %s to answer with Redis gone", took)
	}
	raw, _ := json.Marshal(out)
	for _, leak := range []string{"alice", "1001", srv.Addr(), testEncryptionKey} {
		if strings.Contains(string(raw), leak) {
			t.Fatalf("health tells %q: %s", leak, raw)
		}
	}
}

// TestSIGTERMDrainsHeldRequests: Caddy gets SIGTERM while 20 logins wait
// for their phones. The instance stops creating challenges at once (a new
// login: 503 with Retry-After and a page; /health 503 for the balancer),
// the logins approved within drain_timeout reach the bank exactly once,
// the others get a page at the deadline and never reach the bank.
func TestSIGTERMDrainsHeldRequests(t *testing.T) {
	const held, approved = 20, 10
	users := make([]bank.User, held+1)
	for i := range users {
		id := fmt.Sprintf("d%02d", i)
		users[i] = bank.User{ContractNo: "5005", UserID: id, Password: id + "-pass", TxnPassword: id + "-txn", Name: "User " + id}
	}
	key := func(i int) string { return "5005/" + users[i].UserID }
	e := newEnv(t, envOptions{users: users})
	t.Setenv("ONEPUSH_ADMIN_TOKEN", e2eAdminToken)
	port, adminPort, internal := freePort(t), freePort(t), freePort(t)
	cfg := e.caddyfile(port, adminPort, caddyConfig{Global: "\t\tstore memory\n\t\tdrain_timeout 5s",
		AdminAPIPort: internal, AdminToken: "{env.ONEPUSH_ADMIN_TOKEN}"})
	// The balancer's view: the listener stays open 12s after the signal.
	cfg = strings.Replace(cfg, "\tpersist_config off\n", "\tpersist_config off\n\tshutdown_delay 12s\n", 1)
	g, err := e.runCaddy(cfg, port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	api := fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", internal)
	phones := make([]*device.Phone, 4)
	for i := range phones {
		phones[i] = newPhone(t, g)
	}
	for i := range users {
		resp := adminCall(t, api, e2eAdminToken, "clerk", http.MethodPost, "/user/bind", map[string]string{"key": key(i), "credential_id": phones[i%len(phones)].CredentialID()})
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("bind %s: %d", key(i), resp.StatusCode)
		}
	}
	e.resetOps(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results := make([]<-chan result, held)
	for i := range held {
		results[i] = newBrowser().postAsync(ctx, g.URL+"/login", loginBody(users[i]))
	}
	// Every login waits for its phone.
	pending := map[string]device.Challenge{} // user key → challenge
	for deadline := time.Now().Add(30 * time.Second); len(pending) < held; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d logins are waiting for a phone", len(pending), held)
		}
		for _, p := range phones {
			chs, err := p.Pending(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range chs {
				pending[ch.Parsed.User] = ch
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	// The balancer notices.
	for st, _ := health(t, api); st != http.StatusServiceUnavailable; st, _ = health(t, api) {
		if time.Since(signalled) > 3*time.Second {
			t.Fatalf("/health still %d 3s after SIGTERM", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A new login is refused at once, not held.
	start := time.Now()
	resp, body, err := newBrowser().post(ctx, g.URL+"/login", loginBody(users[held]))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Nothing was sent to the bank") {
		t.Fatalf("a new login while draining = %d (Retry-After %q):\n%.300s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the refused login took %s", took)
	}
	// Half of the held logins are approved within drain_timeout.
	approvedUsers := map[string]bool{}
	for i := range approved {
		ch := pending[key(i)]
		if st, err := phones[i%len(phones)].Decide(ctx, &ch, "approve", 0); err != nil || st != http.StatusOK {
			t.Fatalf("approving %s while draining: %d %v", key(i), st, err)
		}
		approvedUsers[users[i].UserID] = true
	}
	for i, ch := range results {
		r := <-ch
		if r.err != nil {
			t.Fatalf("login %s: %v", key(i), r.err)
		}
		if i < approved {
			if r.resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("approved login %s = %d, want the bank's 303:\n%.300s", key(i), r.resp.StatusCode, r.body)
			}
			continue
		}
		if r.resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.body, "Nothing was sent to the bank") {
			t.Fatalf("unapproved login %s at the drain deadline = %d:\n%.300s", key(i), r.resp.StatusCode, r.body)
		}
	}
	if since := time.Since(signalled); since > 11*time.Second {
		t.Fatalf("the held logins ended %s after SIGTERM, want about drain_timeout (5s)", since)
	}
	logins := opsOf(e.ops(t), bank.OpLogin)
	seen := map[string]int{}
	for _, op := range logins {
		seen[op.UserID]++
	}
	for id := range seen {
		if !approvedUsers[id] || seen[id] != 1 {
			t.Fatalf("the bank logged in %s %d times (approved: %v); log: %+v", id, seen[id], approvedUsers[id], logins)
		}
	}
	if len(seen) != approved {
		t.Fatalf("%d of %d approved logins reached the bank: %+v", len(seen), approved, logins)
	}
}

// TestReloadAwayDrainsHeldRequests: a reload to a config without onepush
// (the bank's site served directly) releases the held logins within
// drain_timeout with a page, and none of them reaches the bank.
func TestReloadAwayDrainsHeldRequests(t *testing.T) {
	e := newEnv(t, envOptions{})
	port, adminPort := freePort(t), freePort(t)
	g, err := e.runCaddy(e.caddyfile(port, adminPort, caddyConfig{Global: "\t\tstore memory\n\t\tdrain_timeout 3s"}), port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	phone := newPhone(t, g)
	enroll(t, g, alice, phone)
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	held := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
	waitChallenge(t, phone)

	away := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tauto_https off\n\tpersist_config off\n}\n:%d {\n\tbind 127.0.0.1\n\trespond \"maintenance\" 503\n}\n", adminPort, port)
	file := g.file + ".away"
	if err := os.WriteFile(file, []byte(away), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.caddyReload(t, file, fmt.Sprintf("127.0.0.1:%d", adminPort))
	r := <-held
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.body, "Nothing was sent to the bank") {
		t.Fatalf("the held login after a reload-away = %d:\n%.300s", r.resp.StatusCode, r.body)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("the held login ended %s after the reload, want about drain_timeout (3s)", took)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 0 {
		t.Fatalf("a login reached the bank unapproved: %+v", logins)
	}
}
