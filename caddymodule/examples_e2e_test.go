package caddymodule_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedCaddyfilesAdapt: the Caddyfiles the README points banks at
// are accepted by Caddy built with onepush, and are in caddy fmt form.
func TestShippedCaddyfilesAdapt(t *testing.T) {
	dir := t.TempDir()
	policyPath, err := filepath.Abs(filepath.Join("..", "examples", "policy", "bank.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"../Caddyfile.example", "../examples/cluster/Caddyfile.a", "../examples/cluster/Caddyfile.b"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		fmtOut, err := exec.Command(caddyBin, "fmt", file).Output()
		if err != nil || string(fmtOut) != string(data) {
			t.Errorf("%s is not in caddy fmt form (run caddy fmt --overwrite): %v", file, err)
		}
		// Point the policy at the example policy; everything else as shipped.
		text := string(data)
		for _, p := range []string{"/etc/onepush/policy.yaml", "examples/policy/bank.yaml"} {
			if strings.Contains(text, p) {
				text = strings.ReplaceAll(text, p, policyPath)
				break
			}
		}
		cfg := filepath.Join(dir, filepath.Base(file))
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"adapt", "--config", cfg, "--adapter", "caddyfile"}
		if !strings.Contains(file, "cluster") {
			// Provisioning the cluster files needs their Redis; adapting
			// them still checks every directive and option.
			args = append(args, "--validate")
		}
		env := append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", "ONEPUSH_ADMIN_TOKEN=example-token-0123456789", "OPS1_TOKEN=ops1-example-token-0123", "SUP1_TOKEN=sup1-example-token-0123", "REDIS_PASSWORD=x",
			"ONEPUSH_NOTIFY_SECRET=whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
		if !strings.Contains(file, "cluster") {
			// The example runs on the embedded store: created once, as the
			// README says, before Caddy may start on it.
			initCmd := exec.Command(caddyBin, "onepush", "store", "init", "--config", cfg, "--adapter", "caddyfile")
			initCmd.Env = env
			if out, err := initCmd.CombinedOutput(); err != nil {
				t.Errorf("caddy onepush store init --config %s: %v\n%s", file, err, out)
			}
		}
		cmd := exec.Command(caddyBin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s does not adapt: %v\n%s", file, err, out)
		}
	}
}
