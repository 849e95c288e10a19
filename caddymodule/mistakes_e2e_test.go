package caddymodule_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/internal/caddyrig"
)

// TestCaddyfileMistakesSayWhatToDo: the mistakes people make writing a
// Caddyfile for onepush each stop Caddy with a message naming the fix,
// never a gateway that starts and protects nothing.
func TestCaddyfileMistakesSayWhatToDo(t *testing.T) {
	e := newEnv(t, envOptions{})
	backend := strings.TrimPrefix(e.bankURL, "http://")
	tests := []struct {
		name, site string
		// adapt: the mistake shows already in `caddy adapt`; else in `caddy run`.
		adapt bool
		want  string
	}{
		{"onepush after reverse_proxy inside route",
			fmt.Sprintf("\troute {\n\t\treverse_proxy %s\n\t\tonepush {\n\t\t\tpolicy %s\n\t\t}\n\t}", backend, e.policy), false,
			"onepush comes after reverse_proxy in the same routes (as in route { reverse_proxy …; onepush … }), so it never sees a request and protects nothing: put onepush first inside the route block"},
		{"a global option in a site's onepush block",
			fmt.Sprintf("\tonepush {\n\t\tpolicy %s\n\t\tmax_held 10\n\t}\n\treverse_proxy %s", e.policy, backend), true,
			"onepush: max_held is a global option: put it in the global options block at the top of the Caddyfile, { onepush { max_held … } }"},
		{"a path as the first argument",
			fmt.Sprintf("\tonepush /etc/onepush/policy.yaml\n\treverse_proxy %s", backend), true,
			`onepush: "/etc/onepush/policy.yaml" is read by Caddy as a path matcher, not as the policy file (a first argument starting with / always is): name the file in the block, onepush { policy /etc/onepush/policy.yaml }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, admin := freePort(t), freePort(t)
			cfg := caddyrig.Options(admin, "", "\t\tstore memory") + caddyrig.Site(port, tt.site)
			file := filepath.Join(t.TempDir(), "Caddyfile")
			if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			out, code := runCaddyCommand(t, e.dir, "adapt", "--config", file, "--adapter", "caddyfile")
			if tt.adapt {
				if code == 0 || !strings.Contains(out, tt.want) {
					t.Fatalf("caddy adapt: exit %d, want non-zero with %q:\n%s", code, tt.want, out)
				}
				return
			}
			if code != 0 {
				t.Fatalf("caddy adapt: exit %d:\n%s", code, out)
			}
			out, code = runCaddyCommand(t, e.dir, "run", "--config", file, "--adapter", "caddyfile")
			if code == 0 || !strings.Contains(out, tt.want) {
				t.Fatalf("caddy run: exit %d, want non-zero with %q:\n%s", code, tt.want, out)
			}
		})
	}

	for name, site := range map[string]string{
		"the same gate first in the route block runs": fmt.Sprintf("\troute {\n\t\tonepush {\n\t\t\tpolicy %s\n\t\t}\n\t\treverse_proxy %s\n\t}", e.policy, backend),
		// A matched reverse_proxy does not answer every request: the gate
		// after it still sees the rest.
		"a gate after a matched reverse_proxy runs": fmt.Sprintf("\troute {\n\t\treverse_proxy /static/* %s\n\t\tonepush {\n\t\t\tpolicy %s\n\t\t}\n\t\treverse_proxy %s\n\t}", backend, e.policy, backend),
	} {
		t.Run(name, func(t *testing.T) {
			port, admin := freePort(t), freePort(t)
			if _, err := e.runCaddy(caddyrig.Options(admin, "", "\t\tstore memory")+caddyrig.Site(port, site), port, admin); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		})
	}
}

// TestCLIRefusesUnknownSubcommands: a typo in a script's `caddy onepush`
// command fails instead of printing help and passing for success.
func TestCLIRefusesUnknownSubcommands(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"user", "frobnicate"}, {"policy", "frobnicate"}, {"store", "frobnicate"}} {
		out, code := cli(t, args...)
		if code == 0 || !strings.Contains(out, `unknown command "frobnicate"`) {
			t.Errorf("caddy onepush %s: exit %d, want non-zero naming the unknown command:\n%s", strings.Join(args, " "), code, out)
		}
	}
	if out, code := cli(t, "user"); code != 0 || !strings.Contains(out, "show") {
		t.Errorf("caddy onepush user (no subcommand): exit %d, want its help:\n%s", code, out)
	}
}

// runCaddyCommand runs the repository's Caddy with args, at most 60 s,
// and returns what it printed and its exit code.
func runCaddyCommand(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(caddyBin, args...)
	cmd.Env = caddyrig.Env(dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("caddy %v still running after 60s:\n%s", args, out.String())
	}
	// Caddy logs the error as JSON: read its quotes as written.
	return strings.ReplaceAll(out.String(), `\"`, `"`), cmd.ProcessState.ExitCode()
}

// TestUserShowWithoutPhone: a customer of the bank without a phone is
// shown as such, not as an unknown user, and the command succeeds.
func TestUserShowWithoutPhone(t *testing.T) {
	e := newEnv(t, envOptions{})
	n := e.startAdminNode(t, "")
	out, code := cli(t, "user", "show", "1001/nophone", "--admin", n.adminAPI, "--token", clusterAdminToken)
	if code != 0 || !strings.Contains(out, "state:      no phone registered with onepush") || !strings.Contains(out, "enrolled:   false") {
		t.Fatalf("user show without a phone: exit %d:\n%s", code, out)
	}
}
