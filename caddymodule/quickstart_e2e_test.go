package caddymodule_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
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

// TestQuickStartCaddyfileRuns: the README's quick start, as written: Caddy
// with onepush runs examples/quickstart/Caddyfile from the repository's
// root in front of the real legacy bank; the bank's pages come through and
// a customer without a phone logs in with the password. Only the file's
// {$…} defaults (addresses, store file) are moved out of the way of other
// tests on this machine.
func TestQuickStartCaddyfileRuns(t *testing.T) {
	file := filepath.Join("..", "examples", "quickstart", "Caddyfile")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(caddyBin, "fmt", file).Output(); err != nil || string(out) != string(data) {
		t.Errorf("%s is not in caddy fmt form (run caddy fmt --overwrite): %v", file, err)
	}
	b := httptest.NewServer(bank.New(bank.Config{Users: bank.DefaultUsers()}))
	t.Cleanup(b.Close)
	dir := t.TempDir()
	port, admin := freePort(t), freePort(t)
	cmd := exec.Command(caddyBin, "run", "--config", "examples/quickstart/Caddyfile")
	cmd.Dir = ".."
	cmd.Env = append(caddyrig.Env(dir),
		fmt.Sprintf("ONEPUSH_QUICKSTART_LISTEN=127.0.0.1:%d", port),
		fmt.Sprintf("ONEPUSH_QUICKSTART_ADMIN=127.0.0.1:%d", admin),
		"ONEPUSH_QUICKSTART_STORE="+filepath.Join(dir, "onepush.db"),
		"ONEPUSH_QUICKSTART_BANK="+strings.TrimPrefix(b.URL, "http://"))
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("caddy:\n%s", logs.String())
		}
	})
	gw := fmt.Sprintf("http://127.0.0.1:%d", port)
	var page string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("caddy run --config examples/quickstart/Caddyfile exited")
		default:
		}
		if resp, err := http.Get(gw + "/login"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if page = string(body); resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quick start's gateway did not serve the bank's login page within 30s: %.300s", page)
		}
	}
	if !strings.Contains(page, `name="contract_no"`) {
		t.Fatalf("GET /login through the gateway: not the bank's login form: %.500s", page)
	}
	// bob has no phone: the policy lets him in with the password only.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	bob := bank.DefaultUsers()[1]
	resp, err := client.PostForm(gw+"/login", url.Values{"contract_no": {bob.ContractNo}, "user_id": {bob.UserID}, "password": {bob.Password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/dashboard" {
		t.Fatalf("bob's login ended at %s (%d), want the dashboard", resp.Request.URL.Path, resp.StatusCode)
	}
}
