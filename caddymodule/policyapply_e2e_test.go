package caddymodule_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/internal/caddyrig"
)

// applyPolicy runs `caddy onepush policy apply` with args against the
// gateways' admin endpoints and returns its output and exit error.
func (e *env) applyPolicy(t *testing.T, args []string, gws ...*gateway) (string, error) {
	t.Helper()
	cmdArgs := append([]string{"onepush", "policy", "apply"}, args...)
	for _, g := range gws {
		cmdArgs = append(cmdArgs, "--address", strings.TrimPrefix(g.Admin, "http://"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, cmdArgs...)
	cmd.Env = caddyrig.Env(e.dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// tryLogin posts alice's login (she has no phone) through g and returns
// the status and how many operations the bank executed meanwhile.
func (e *env) tryLogin(t *testing.T, g *gateway) (int, []bank.Op) {
	t.Helper()
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, _, err := newBrowser().post(ctx, g.URL+"/login", loginBody(alice))
	// A reload swaps listeners: a connection caught in between is reset
	// and tried again (bounded).
	for i := 0; err != nil && i < 5; i++ {
		time.Sleep(100 * time.Millisecond)
		resp, _, err = newBrowser().post(ctx, g.URL+"/login", loginBody(alice))
	}
	if err != nil {
		t.Fatalf("login through %s: %v", g.URL, err)
	}
	return resp.StatusCode, e.ops(t)
}

// stopGateway ends g's Caddy and waits until its port is free.
func stopGateway(t *testing.T, g *gateway) {
	t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(g.URL, "http://")
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("caddy on %s did not stop", addr)
}

// TestPolicyApply is the security team's workflow against two running
// gateways in front of the real bank: a policy that does not lint changes
// nothing; a dry run shows the change and changes nothing; apply switches
// the login rule from allow to deny on both gateways without a restart,
// nothing reaches the bank after it, and a restart keeps it.
func TestPolicyApply(t *testing.T) {
	e := newEnv(t, envOptions{})
	running, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	const allow = "    not_enrolled: allow   # users without a phone keep password-only login\n"
	if !bytes.Contains(running, []byte(allow)) {
		t.Fatal("the example policy's login rule no longer has the not_enrolled line this test switches")
	}
	deny := strings.Replace(string(running), allow, "    not_enrolled: deny\n", 1)
	g1 := e.startGateway("\t\tstore memory")
	g2 := e.startGateway("\t\tstore memory")

	for _, g := range []*gateway{g1, g2} {
		if st, ops := e.tryLogin(t, g); st != http.StatusSeeOther || len(opsOf(ops, bank.OpLogin)) != 1 {
			t.Fatalf("before apply, alice's password-only login through %s: %d, bank ops %+v; want 303 and one login", g.URL, st, ops)
		}
	}
	unchanged := func(when string) {
		t.Helper()
		now, err := os.ReadFile(e.policy)
		if err != nil || !bytes.Equal(now, running) {
			t.Fatalf("%s: the policy file changed (%v):\n%s", when, err, now)
		}
		if st, ops := e.tryLogin(t, g1); st != http.StatusSeeOther || len(opsOf(ops, bank.OpLogin)) != 1 {
			t.Fatalf("%s: login through g1: %d, bank ops %+v; want the old policy: 303 and one login", when, st, ops)
		}
	}

	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// A misspelt field: lint's message, nothing written, nothing reloaded.
	broken := write("broken.yaml", strings.Replace(deny, "    not_enrolled: deny\n", "    not_enroled: deny\n", 1))
	out, err := e.applyPolicy(t, []string{broken}, g1, g2)
	t.Logf("refused:\n%s", out)
	if err == nil || !strings.Contains(out, "not_enroled: unknown field") || !strings.Contains(out, "nothing was written or reloaded") {
		t.Fatalf("apply of a policy that does not lint: %v\n%s", err, out)
	}
	unchanged("after a refused apply")

	// Two gateways that read different files: stop before changing anything.
	other := newEnv(t, envOptions{})
	g3 := other.startGateway("\t\tstore memory")
	good := write("deny.yaml", deny)
	out, err = e.applyPolicy(t, []string{good}, g1, g3)
	if err == nil || !strings.Contains(out, other.policy) || !strings.Contains(out, "nothing was written or reloaded") {
		t.Fatalf("apply to gateways naming different policy files: %v\n%s", err, out)
	}
	unchanged("after an apply to gateways that disagree")

	// A policy file that cannot be written (its directory is gone): said
	// so, by the dry run too, and nothing reloaded.
	moved := filepath.Dir(other.policy) + ".moved"
	if err := os.Rename(filepath.Dir(other.policy), moved); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--dry-run", good}, other.policy + " cannot be written"},
		{[]string{good}, "writing " + other.policy},
	} {
		out, err = e.applyPolicy(t, tt.args, g3)
		if err == nil || !strings.Contains(out, tt.want) || strings.Contains(out, "reloaded,") {
			t.Fatalf("apply %v where the policy cannot be written: %v\n%s\nwant %q and no reload", tt.args, err, out, tt.want)
		}
	}
	if err := os.Rename(moved, filepath.Dir(other.policy)); err != nil {
		t.Fatal(err)
	}
	if st, ops := other.tryLogin(t, g3); st != http.StatusSeeOther || len(opsOf(ops, bank.OpLogin)) != 1 {
		t.Fatalf("after an apply that could not write, login through g3: %d, bank ops %+v; want the old policy", st, ops)
	}

	out, err = e.applyPolicy(t, []string{"--dry-run", good}, g1, g2)
	if err != nil || !strings.Contains(out, "rule login: changed (not_enrolled)") || !strings.Contains(out, "dry run: nothing was written") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	unchanged("after a dry run")

	out, err = e.applyPolicy(t, []string{good}, g1, g2)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Logf("caddy onepush policy apply:\n%s", out)
	for _, g := range []*gateway{g1, g2} {
		if want := fmt.Sprintf("%s: reloaded, rules changed: login", strings.TrimPrefix(g.Admin, "http://")); !strings.Contains(out, want) {
			t.Fatalf("apply output lacks %q:\n%s", want, out)
		}
	}
	if now, _ := os.ReadFile(e.policy); string(now) != deny {
		t.Fatalf("the running gateways' policy file after apply:\n%s", now)
	}
	for _, g := range []*gateway{g1, g2} {
		if st, ops := e.tryLogin(t, g); st < 400 || len(ops) != 0 {
			t.Fatalf("after apply, login through %s: %d, bank ops %+v; want a refusal and nothing forwarded", g.URL, st, ops)
		}
	}

	// A restart of the same configuration reads the applied file.
	cfg, err := os.ReadFile(g1.file)
	if err != nil {
		t.Fatal(err)
	}
	stopGateway(t, g1)
	var port, adminPort int
	fmt.Sscanf(g1.URL, "http://127.0.0.1:%d", &port)
	fmt.Sscanf(g1.Admin, "http://127.0.0.1:%d", &adminPort)
	g1b, err := e.runCaddy(string(cfg), port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	if st, ops := e.tryLogin(t, g1b); st < 400 || len(ops) != 0 {
		t.Fatalf("after a restart, login: %d, bank ops %+v; want the applied policy: a refusal and nothing forwarded", st, ops)
	}
}

// TestPolicyApplyRestoresWhenNoInstanceReloads: when the only instance
// refuses the reload (here a wait_template its configuration names has
// been deleted since it started), apply says so, puts the previous policy
// file back, so that a restart does not start a policy nobody runs, and
// the gateway keeps serving the old policy.
func TestPolicyApplyRestoresWhenNoInstanceReloads(t *testing.T) {
	e := newEnv(t, envOptions{})
	running, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	wait := filepath.Join(e.dir, "wait.html")
	if err := os.WriteFile(wait, []byte("<p>{{.}}</p>"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, adminPort := freePort(t), freePort(t)
	cfg := caddyrig.Options(adminPort, "", "\t\tstore memory") + caddyrig.Site(port, fmt.Sprintf(
		"\tonepush_device\n\tonepush {\n\t\tpolicy %s\n\t\twait_template %s\n\t}\n\treverse_proxy %s",
		e.policy, wait, strings.TrimPrefix(e.bankURL, "http://")))
	g, err := e.runCaddy(cfg, port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(wait); err != nil {
		t.Fatal(err)
	}
	deny := filepath.Join(t.TempDir(), "deny.yaml")
	if err := os.WriteFile(deny, bytes.Replace(running, []byte("not_enrolled: allow"), []byte("not_enrolled: deny"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := e.applyPolicy(t, []string{deny}, g)
	if err == nil || !strings.Contains(out, "FAILED") || !strings.Contains(out, "restored to the policy they run") {
		t.Fatalf("apply to an instance that refuses the reload: %v\n%s", err, out)
	}
	if now, _ := os.ReadFile(e.policy); !bytes.Equal(now, running) {
		t.Fatalf("the policy file after no instance reloaded:\n%s", now)
	}
	if st, ops := e.tryLogin(t, g); st != http.StatusSeeOther || len(opsOf(ops, bank.OpLogin)) != 1 {
		t.Fatalf("login after a failed apply: %d, bank ops %+v; want the old policy", st, ops)
	}
}
