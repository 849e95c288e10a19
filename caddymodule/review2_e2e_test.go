package caddymodule_test

// Review 2 (issues #14/#15) through real Caddy processes on the default,
// embedded store. See the report of review-2.

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
)

// TestEmbeddedStoreKeepsNoSecretInClearOrReadable: after an enrolment, an
// interstitial login and an interstitial transfer through a real Caddy on
// the embedded store, neither the data file, nor a backup taken through
// `caddy onepush store backup`, nor Caddy's own log holds the login
// password, the transaction password, the bank's session cookie or the
// phone's security-code secret (in clear or base64 at any alignment), the
// log does not hold the generated sealing key, and none of the files the
// store and its commands write (data file, identity, key, backup) can be
// read by another user.
func TestEmbeddedStoreKeepsNoSecretInClearOrReadable(t *testing.T) {
	e := newEnv(t, envOptions{edit: func(s string) string { return interstitialLogins(interstitialTransfers(s)) }})
	sg := newStoreGateway(t, e, "")
	phone := newPhone(t, sg.gateway)
	enrolWithCode(t, sg.gateway, alice, phone)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	cookie, _ := loginAndTransfer(t, ctx, sg.URL, phone)
	if transfersOf(e.ops(t))[alice.UserID] != 1 {
		t.Fatal("the transfer did not reach the bank")
	}

	backupDir := t.TempDir()
	backup := filepath.Join(backupDir, "onepush.db")
	if out, code := cli(t, "store", "backup", backup, "--admin", sg.adminAPI, "--actor", "e2e-operator"); code != 0 {
		t.Fatalf("store backup: exit %d\n%s", code, out)
	}
	sg.stop(t, syscall.SIGTERM)

	var keyText string
	secrets := []string{alice.Password, alice.TxnPassword, cookie, phone.OTPSecret()}
	names := []string{"login password", "transaction password", "bank session cookie", "security-code secret"}
	report := secretReporter(t, secrets, names)
	var files []string
	err := filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(path, string(filepath.Separator)+"onepush"+string(filepath.Separator)) {
			return err
		}
		files = append(files, path)
		if strings.HasSuffix(path, ".key") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			keyText = strings.TrimSpace(string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, backup)
	var sawDB, sawKey, sawIdentity bool
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: readable by others", f, fi.Mode().Perm())
		}
		if d, err := os.Stat(filepath.Dir(f)); err == nil && f != backup && d.Mode().Perm()&0o077 != 0 {
			t.Errorf("the directory of %s has mode %v", f, d.Mode().Perm())
		}
		sawDB = sawDB || strings.HasSuffix(f, "store.db")
		sawKey = sawKey || strings.HasSuffix(f, ".key")
		sawIdentity = sawIdentity || strings.HasSuffix(f, ".json")
		blob, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(f, ".key") {
			report(f, blob)
		}
	}
	if !sawDB || !sawKey || !sawIdentity {
		t.Fatalf("files found: %v; want the data file, the key file and the identity", files)
	}
	logs := sg.logs.String()
	report("caddy's log", []byte(logs))
	if keyText == "" || strings.Contains(logs, keyText) {
		t.Errorf("the generated key (%d chars) is in caddy's log, or was not found", len(keyText))
	}
	t.Logf("checked %d files and %d bytes of log", len(files), len(logs))
}

// TestOlderCopyPutBackAfterACrashIsRefused: the end-to-end form of
// pushauth/store/embedded TestOlderCopyIsRefusedAfterAnUncleanStop. A
// backup is taken (`caddy onepush store backup`); then the bank removes
// alice's stolen phone (admin API unbind); the gateway is killed (SIGKILL:
// a crash, an OOM kill, a power loss); the backup is copied over the data
// file by hand. Caddy starts on it without a word and alice's stolen phone
// approves her logins again; the README says such a copy is refused and
// only `store restore` rolls back, listing what it undoes.
func TestOlderCopyPutBackAfterACrashIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	sg := newStoreGateway(t, e, "")
	stolen := newPhone(t, sg.gateway)
	enrolWithCode(t, sg.gateway, alice, stolen)
	backup := filepath.Join(t.TempDir(), "before-the-theft.db")
	if out, code := cli(t, "store", "backup", backup, "--admin", sg.adminAPI, "--actor", "e2e-operator"); code != 0 {
		t.Fatalf("store backup: exit %d\n%s", code, out)
	}
	if st := sg.adminDo(t, http.MethodPost, "/user/unbind", map[string]string{"key": "1001/alice"}, nil); st != http.StatusOK {
		t.Fatalf("unbind alice: %d", st)
	}
	if v, _ := sg.user(t, "1001/alice"); v.Enrolled {
		t.Fatalf("control: alice still enrolled after the unbind: %+v", v)
	}
	sg.stop(t, syscall.SIGKILL)
	storeFile := filepath.Join(e.dir, "caddy", "onepush", "store.db")
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(storeFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sg.start(); err != nil {
		if strings.Contains(err.Error(), "older") {
			return // refused: the defence holds
		}
		t.Fatalf("start on the older copy: %v", err)
	}
	v, _ := sg.user(t, "1001/alice")
	if v.Enrolled && v.CredentialID == stolen.CredentialID() {
		t.Errorf("Caddy started on an older copy put back by hand after a crash: alice's removed (stolen) phone is bound again: %+v", v)
	}
}

// TestHeldRequestsPerIPCountAnIPv6HostOnce: max_held_per_ip (and
// max_polls_per_ip) count Caddy's client IP as a string, so one IPv6 host
// — which is given a whole /64 and picks a new address per request — is
// a new client each time: the per-address bound does not bound it, and
// one attacker who knows enough enrolled user IDs fills max_held (503 for
// everybody else's logins). The registration limiter already counts IPv6
// by /64, /56 and /48. Here max_held_per_ip is 1: from one IPv4 address
// the second held login is refused, from three addresses of one /64 all
// three are held (each pushing a customer's phone).
func TestHeldRequestsPerIPCountAnIPv6HostOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.startCustomGateway("\t\ttrusted_proxies static 127.0.0.1/32\n\t\tclient_ip_headers X-Forwarded-For", "\t\tmax_held_per_ip 1")
	users := []bank.User{alice, bob, carol}
	for _, u := range users {
		enroll(t, g, u, newPhone(t, g))
	}
	hold := func(ctx context.Context, u bank.User, ip string) <-chan int {
		out := make(chan int, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/login", strings.NewReader(loginBody(u)))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Forwarded-For", ip)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out <- 0
				return
			}
			resp.Body.Close()
			out <- resp.StatusCode
		}()
		return out
	}
	// answeredWithin reports the status if the request was answered within
	// d (refused), or 0 when it is still held.
	answeredWithin := func(ch <-chan int, d time.Duration) int {
		select {
		case st := <-ch:
			return st
		case <-time.After(d):
			return 0
		}
	}
	for _, tc := range []struct {
		name string
		ips  []string
		want int // held
	}{
		{"control: one IPv4 address", []string{"198.51.100.7", "198.51.100.7", "198.51.100.7"}, 1},
		{"one IPv6 host's /64", []string{"2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:2::c"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // the held logins go away
			held := 0
			var refused []int
			for i, u := range users {
				st := answeredWithin(hold(ctx, u, tc.ips[i]), 700*time.Millisecond)
				if st == 0 {
					held++
				} else {
					refused = append(refused, st)
				}
			}
			t.Logf("%s: %d held, refused %v", tc.name, held, refused)
			if held > tc.want {
				t.Errorf("%s: %d logins held at once with max_held_per_ip 1", tc.name, held)
			}
			cancel()
			time.Sleep(300 * time.Millisecond)
		})
	}
}
