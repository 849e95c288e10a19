package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/notifysink"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/internal/caddyrig"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// The embedded store (the default) through real Caddy processes: what a
// gateway that runs alone must remember across a restart, what it does
// when its file is gone, and a backup taken under load restored.

// storeCLI runs `caddy onepush store args...` with this env's Caddy
// directories, as the gateway runs.
func (e *env) storeCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	for _, v := range []string{"HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"} {
		t.Setenv(v, e.dir)
	}
	return cli(t, append([]string{"store"}, args...)...)
}

// storeGateway is a gateway on the default store, with the admin API on
// its own listener; its ports stay the same across restarts, so phones and
// browsers keep talking to it.
type storeGateway struct {
	*lifecycleGateway
	e                        *env
	cfg                      string
	port, adminPort, apiPort int
}

// newStoreGateway writes a config that names no store (the default:
// embedded), creates its store with `caddy onepush store init` and starts
// Caddy.
func newStoreGateway(t *testing.T, e *env, global string) *storeGateway {
	t.Helper()
	t.Setenv("ONEPUSH_ADMIN_TOKEN", e2eAdminToken)
	sg := &storeGateway{e: e, port: freePort(t), adminPort: freePort(t), apiPort: freePort(t)}
	sg.cfg = e.caddyfile(sg.port, sg.adminPort, caddyConfig{Global: global, BareStore: true, AdminAPIPort: sg.apiPort, AdminToken: "{env.ONEPUSH_ADMIN_TOKEN}"})
	file := filepath.Join(e.dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(sg.cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := e.storeCLI(t, "init", "--config", file, "--adapter", "caddyfile"); code != 0 || !strings.Contains(out, "created store") {
		t.Fatalf("store init: exit %d\n%s", code, out)
	}
	if err := sg.start(); err != nil {
		t.Fatal(err)
	}
	return sg
}

func (sg *storeGateway) start() error {
	g, err := sg.e.runCaddy(sg.cfg, sg.port, sg.adminPort)
	if err != nil {
		return err
	}
	sg.lifecycleGateway = &lifecycleGateway{gateway: g, adminAPI: fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", sg.apiPort)}
	return nil
}

// stop signals Caddy and waits until the process is gone (and its file
// lock with it).
func (sg *storeGateway) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	pid := sg.cmd.Process.Pid
	if err := sg.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	// The harness reaps the process; until then it answers signal 0.
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("caddy (pid %d) still running 30s after %v", pid, sig)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// adminDo calls the admin API; out, when set, receives the JSON answer.
func (sg *storeGateway) adminDo(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	resp := adminCall(t, sg.adminAPI, e2eAdminToken, "e2e-operator", method, path, body)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

type userView struct {
	Key          string    `json:"key"`
	State        string    `json:"state"`
	Enrolled     bool      `json:"enrolled"`
	CredentialID string    `json:"credential_id"`
	Until        time.Time `json:"until"`
	Failures     int       `json:"failures"`
}

func (sg *storeGateway) user(t *testing.T, key string) (userView, int) {
	t.Helper()
	var v userView
	st := sg.adminDo(t, http.MethodGet, "/user?key="+url.QueryEscape(key), nil, &v)
	return v, st
}

type auditEvent struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	User    string    `json:"user"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail"`
}

func (sg *storeGateway) audit(t *testing.T, query string) []auditEvent {
	t.Helper()
	var out struct {
		Events []auditEvent `json:"events"`
	}
	if st := sg.adminDo(t, http.MethodGet, "/audit?"+query, nil, &out); st != http.StatusOK {
		t.Fatalf("GET /audit?%s: %d", query, st)
	}
	return out.Events
}

// enrolWithCode logs u in and binds phone with a code the gateway accepts
// now and has not seen; it returns that code.
func enrolWithCode(t *testing.T, g *gateway, u bank.User, phone *device.Phone) string {
	t.Helper()
	b := newBrowser()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if resp, _, err := b.post(ctx, g.URL+"/login", loginBody(u)); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login of %s before enrolment: %v %v", u.UserID, err, resp)
	}
	code := unusedCode(t, phone)
	// Through the gateway's own form (its anti-forgery token), with that
	// code.
	status, body, err := phone.Enrol(ctx, b.Client, g.URL+"/onepush/enroll", url.Values{"code": {code}})
	if err != nil || status != http.StatusOK {
		t.Fatalf("enrolment of %s: %v %d %.300s", u.UserID, err, status, body)
	}
	usedCodes[phone.CredentialID()+code] = true
	return code
}

// usedDeviceToken is a device token of phone that the gateway has
// accepted once: a replay of it must be refused.
func usedDeviceToken(t *testing.T, g *gateway, phone *device.Phone) string {
	t.Helper()
	token, err := phone.DeviceToken()
	if err != nil {
		t.Fatal(err)
	}
	if st := deviceGet(t, g, token); st != http.StatusOK {
		t.Fatalf("first use of a device token: %d", st)
	}
	return token
}

// deviceGet calls the device API with a given device token.
func deviceGet(t *testing.T, g *gateway, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/onepush/device/v1/challenges", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

var (
	dave = bank.User{ContractNo: "3003", UserID: "dave", Password: "dave-pass-1", TxnPassword: "dave-txn-1", Name: "Dave Ito"}
	erin = bank.User{ContractNo: "3003", UserID: "erin", Password: "erin-pass-1", TxnPassword: "erin-txn-1", Name: "Erin Kato"}
)

// Bind alice, lock bob, suspend carol, learn alice's session, use a
// security code and a device token; stop Caddy gracefully or kill it; on
// restart every one of those is still in force.
func TestEmbeddedStoreSurvivesRestart(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) { restartScenario(t, sig) })
	}
}

func restartScenario(t *testing.T, sig syscall.Signal) {
	e := newEnv(t, envOptions{users: append(bank.DefaultUsers(), dave, erin)})
	sg := newStoreGateway(t, e, "")
	pa, pb, pc := newPhone(t, sg.gateway), newPhone(t, sg.gateway), newPhone(t, sg.gateway)
	enrolWithCode(t, sg.gateway, alice, pa)
	enrolWithCode(t, sg.gateway, bob, pb)
	enrolWithCode(t, sg.gateway, carol, pc)
	aliceBrowser := loggedIn(t, e, sg.gateway, pa)
	if st := pushed(t, sg.gateway, bob, pb, device.Fraud); st != http.StatusForbidden {
		t.Fatalf("bob's login reported as fraud: %d, want 403", st)
	}
	if v, _ := sg.user(t, "1001/bob"); v.State != "locked" {
		t.Fatalf("bob after the fraud report: %+v, want locked", v)
	}
	token := usedDeviceToken(t, sg.gateway, pa)
	if st := deviceGet(t, sg.gateway, token); st != http.StatusUnauthorized {
		t.Fatalf("second use of a device token before the restart: %d, want 401", st)
	}
	sg.admin(t, "user", "suspend", "2002/carol", "--grace", "1h")
	// The last thing before the stop: dave binds alice's phone (one phone,
	// several users) with the security code it shows now.
	used := enrolWithCode(t, sg.gateway, dave, pa)
	stopped := time.Now()

	sg.stop(t, sig)
	if err := sg.start(); err != nil {
		t.Fatalf("restart after %v: %v", sig, err)
	}
	e.resetOps(t)

	t.Run("a security code used before the restart is refused after it", func(t *testing.T) {
		b := newBrowser()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if resp, _, err := b.post(ctx, sg.URL+"/login", loginBody(erin)); err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("erin's login: %v %v", err, resp)
		}
		stillValid := false // the code must still be one TOTP accepts, or this proves nothing
		for _, off := range []time.Duration{-30 * time.Second, 0, 30 * time.Second} {
			if c, _, _ := pa.SecurityCodeAt(time.Now().Add(off)); c == used {
				stillValid = true
			}
		}
		if !stillValid {
			t.Fatalf("the restart took longer than a security code lives (%s): nothing left to prove", time.Since(stopped))
		}
		status, body, err := pa.Enrol(ctx, b.Client, sg.URL+"/onepush/enroll", url.Values{"code": {used}})
		if err != nil || status != http.StatusBadRequest || !strings.Contains(body, "Security code not accepted") {
			t.Fatalf("enrolment with the code used before the restart: %v %d %.300s; want 400", err, status, body)
		}
		if v, st := sg.user(t, "3003/erin"); st == http.StatusOK && v.Enrolled {
			t.Fatalf("erin got bound with a used code: %+v", v)
		}
	})

	t.Run("a device token used before the restart is refused after it", func(t *testing.T) {
		if st := deviceGet(t, sg.gateway, token); st != http.StatusUnauthorized {
			t.Fatalf("device token replayed after the restart: %d, want 401", st)
		}
	})

	t.Run("alice's next login is held for her phone", func(t *testing.T) {
		e.resetOps(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res := newBrowser().postAsync(ctx, sg.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, pa)
		if ch.Parsed.User != "1001/alice" {
			t.Fatalf("challenge for %q", ch.Parsed.User)
		}
		if n := len(opsOf(e.ops(t), bank.OpLogin)); n != 0 {
			t.Fatalf("the bank executed %d logins before alice approved", n)
		}
		if st, err := pa.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
			t.Fatalf("approve: %d %v", st, err)
		}
		if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("approved login: %v %v", r.err, r.resp)
		}
	})

	t.Run("her learned session still attributes her transfers", func(t *testing.T) {
		e.resetOps(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		body := url.Values{"payee_account": {"1234567"}, "amount": {"90000"}, "txn_password": {alice.TxnPassword}}.Encode()
		res := aliceBrowser.postAsync(ctx, sg.URL+"/transfer", body)
		ch := waitChallenge(t, pa)
		if ch.Kind != "transaction" || ch.Parsed.User != "1001/alice" {
			t.Fatalf("transfer challenge: kind %q user %q, want alice's transaction", ch.Kind, ch.Parsed.User)
		}
		if st, err := pa.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
			t.Fatalf("approve: %d %v", st, err)
		}
		r := <-res
		if r.err != nil || r.resp.StatusCode != http.StatusOK {
			t.Fatalf("approved transfer: %v %v %.300q", r.err, r.resp, r.body)
		}
		if tr := opsOf(e.ops(t), bank.OpTransfer); len(tr) != 1 || tr[0].UserID != "alice" || tr[0].Body != body {
			t.Fatalf("bank transfers = %+v", tr)
		}
	})

	t.Run("bob's lock survives", func(t *testing.T) {
		e.resetOps(t)
		refused(t, sg.gateway, bob, pb, "locked")
		if n := len(opsOf(e.ops(t), bank.OpLogin)); n != 0 {
			t.Fatalf("the bank executed bob's login: %d", n)
		}
	})

	t.Run("carol's suspension survives", func(t *testing.T) {
		v, st := sg.user(t, "2002/carol")
		if st != http.StatusOK || v.State != "suspended" || v.CredentialID != pc.CredentialID() || v.Until.Before(time.Now().Add(50*time.Minute)) {
			t.Fatalf("carol after the restart: %d %+v; want suspended for about an hour, phone kept", st, v)
		}
		passwordOnly(t, sg.gateway, carol, pc)
	})

	t.Run("the audit trail shows the events from before", func(t *testing.T) {
		evs := sg.audit(t, "until="+url.QueryEscape(stopped.UTC().Format(time.RFC3339Nano)))
		var got []string
		for _, ev := range evs {
			got = append(got, ev.Type+" "+ev.User+" "+ev.Outcome)
		}
		for _, want := range []string{
			"enrolment 1001/alice bound", "enrolment 1001/bob bound", "enrolment 2002/carol bound", "enrolment 3003/dave bound",
			"challenge.decided 1001/alice approved", "challenge.decided 1001/bob denied",
			"user.state 1001/bob locked", "admin 2002/carol suspend",
		} {
			if !slices.Contains(got, want) {
				t.Errorf("audit before the restart lacks %q; has:\n%s", want, strings.Join(got, "\n"))
			}
		}
	})
}

// The data file, or the whole data directory, disappears under a running
// gateway: it goes on challenging alice, and once stopped, Caddy refuses
// to start and says which file and what to do; it never starts with every
// user looking not enrolled.
func TestEmbeddedStoreLossStopsCaddy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		global string
		lose   func(e *env) string
	}{
		{"data file", "", func(e *env) string { return filepath.Join(e.dir, "caddy", "onepush", "store.db") }},
		{"data directory", "", func(e *env) string { return filepath.Join(e.dir, "caddy") }},
		{"data file, config with auto_init", "\t\tstore embedded {\n\t\t\tauto_init\n\t\t}", func(e *env) string {
			return filepath.Join(e.dir, "caddy", "onepush", "store.db")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			sg := newStoreGateway(t, e, tc.global)
			autoInit := strings.Contains(tc.global, "auto_init")
			if warned := strings.Contains(sg.logs.String(), "auto_init is set"); warned != autoInit {
				t.Errorf("Caddy's log warns of auto_init: %v; auto_init configured: %v", warned, autoInit)
			}
			phone := newPhone(t, sg.gateway)
			enroll(t, sg.gateway, alice, phone)
			if err := os.RemoveAll(tc.lose(e)); err != nil {
				t.Fatal(err)
			}
			// The running gateway still knows alice: her login waits for
			// her phone (denied here), it is not let through as if she
			// had none.
			e.resetOps(t)
			if st := pushed(t, sg.gateway, alice, phone, device.Deny); st != http.StatusForbidden {
				t.Fatalf("alice's login after the loss: %d, want her denial's 403", st)
			}
			sg.stop(t, syscall.SIGTERM)
			err := sg.start()
			if err == nil {
				t.Fatal("Caddy started after its store file was lost")
			}
			file := filepath.Join(e.dir, "caddy", "onepush", "store.db")
			for _, want := range []string{file, "refusing to start", "caddy onepush store restore"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal does not say %q:\n%.3000s", want, err)
				}
			}
			if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused start created %s: %v", file, err)
			}
			if n := len(opsOf(e.ops(t), bank.OpLogin)); n != 0 {
				t.Errorf("the bank executed %d logins", n)
			}
		})
	}
}

// A backup taken with `caddy onepush store backup` while 100 logins are
// being approved restores, with --accept-rollback, to a store with every
// binding made before it; bindings and revocations made after it are
// listed first and undone.
func TestEmbeddedBackupUnderLoadRestores(t *testing.T) {
	const nUsers, nLogins, nPhones = 130, 100, 10
	users := make([]bank.User, nUsers)
	for i := range users {
		id := fmt.Sprintf("u%03d", i)
		users[i] = bank.User{ContractNo: "4004", UserID: id, Password: id + "-pass", TxnPassword: id + "-txn", Name: "User " + id}
	}
	key := func(i int) string { return "4004/" + users[i].UserID }
	e := newEnv(t, envOptions{users: users})
	sg := newStoreGateway(t, e, "")
	phones := make([]*device.Phone, nPhones)
	for i := range phones {
		phones[i] = newPhone(t, sg.gateway)
	}
	phoneOf := func(i int) *device.Phone { return phones[i%nPhones] }
	bind := func(i int) {
		t.Helper()
		if st := sg.adminDo(t, http.MethodPost, "/user/bind", map[string]string{"key": key(i), "credential_id": phoneOf(i).CredentialID()}, nil); st != http.StatusOK {
			t.Fatalf("bind %s: %d", key(i), st)
		}
	}
	for i := range nLogins {
		bind(i)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// One approver for all phones, about 20 approvals a second, so the
	// logins are still being approved while the backup is taken.
	approved := make(chan int, nLogins)
	go func() {
		n := 0
		for ctx.Err() == nil && n < nLogins {
			for _, p := range phones {
				pending, err := p.Pending(ctx)
				if err != nil || len(pending) == 0 {
					continue
				}
				if st, _ := p.Decide(ctx, &pending[0], device.Approve, 0); st == http.StatusOK {
					n++
					approved <- n
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	results := make(chan result, nLogins)
	for i := range nLogins {
		go func() {
			resp, body, err := newBrowser().post(ctx, sg.URL+"/login", loginBody(users[i]))
			results <- result{resp, body, err}
		}()
	}
	// Bindings made before the backup starts: present after the restore.
	for i := nLogins; i < nLogins+10; i++ {
		bind(i)
	}
	for n := 0; n < 10; {
		select {
		case n = <-approved:
		case <-ctx.Done():
			t.Fatal("logins were not approved")
		}
	}
	backup := filepath.Join(t.TempDir(), "store-backup.db")
	out, code := cli(t, "store", "backup", backup, "--admin", sg.adminAPI, "--actor", "e2e-operator")
	if code != 0 || !strings.Contains(out, "backup of store") {
		t.Fatalf("store backup: exit %d\n%s", code, out)
	}
	atBackup := len(opsOf(e.ops(t), bank.OpLogin))
	if atBackup == 0 || atBackup >= nLogins {
		t.Fatalf("%d of %d logins had reached the bank when the backup was done: it was not taken under load", atBackup, nLogins)
	}
	// After the backup: ten new bindings, and u005's phone removed.
	for i := nLogins + 20; i < nUsers; i++ {
		bind(i)
	}
	if st := sg.adminDo(t, http.MethodPost, "/user/unbind", map[string]string{"key": key(5)}, nil); st != http.StatusOK {
		t.Fatalf("unbind u005: %d", st)
	}
	for range nLogins {
		r := <-results
		if r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("a login under load: %v %v", r.err, r.resp)
		}
	}
	if n := len(opsOf(e.ops(t), bank.OpLogin)); n != nLogins {
		t.Fatalf("bank logins = %d, want %d", n, nLogins)
	}

	sg.stop(t, syscall.SIGTERM)
	file := filepath.Join(e.dir, "Caddyfile")
	storeFile := filepath.Join(e.dir, "caddy", "onepush", "store.db")
	before, err := os.ReadFile(storeFile)
	if err != nil {
		t.Fatal(err)
	}
	plan, code := e.storeCLI(t, "restore", backup, "--config", file)
	if code == 0 || !strings.Contains(plan, "--accept-rollback") {
		t.Fatalf("restore without --accept-rollback: exit %d\n%s", code, plan)
	}
	for i := nLogins + 20; i < nUsers; i++ {
		if !regexpLine(plan, `binding\s+`+key(i)+`: now active, phone `+phoneOf(i).CredentialID()) {
			t.Errorf("the plan does not list %s's binding made after the backup:\n%s", key(i), plan)
		}
	}
	if !regexpLine(plan, `revocation\s+`+key(5)+`: now deregistered, no phone.*restored: active, phone `+phoneOf(5).CredentialID()) {
		t.Errorf("the plan does not list the removal of u005's phone:\n%s", plan)
	}
	if after, _ := os.ReadFile(storeFile); !bytes.Equal(before, after) {
		t.Fatal("restore without --accept-rollback changed the store file")
	}
	if out, code := e.storeCLI(t, "restore", backup, "--config", file, "--accept-rollback", "--actor", "e2e-operator"); code != 0 || !strings.Contains(out, "restored "+storeFile) {
		t.Fatalf("restore --accept-rollback: exit %d\n%s", code, out)
	}

	if err := sg.start(); err != nil {
		t.Fatalf("start on the restored store: %v", err)
	}
	for i := range nLogins + 10 {
		v, st := sg.user(t, key(i))
		if st != http.StatusOK || !v.Enrolled || v.CredentialID != phoneOf(i).CredentialID() {
			t.Errorf("%s, bound before the backup, after the restore: %d %+v", key(i), st, v)
		}
	}
	for i := nLogins + 20; i < nUsers; i++ {
		if v, st := sg.user(t, key(i)); st == http.StatusOK && v.Enrolled {
			t.Errorf("%s, bound after the backup, is still bound after the restore: %+v", key(i), v)
		}
	}
	evs := sg.audit(t, "type=admin")
	var restored, rolledBack []string
	for _, ev := range evs {
		switch ev.Outcome {
		case "store.restored":
			restored = append(restored, ev.Detail)
		case "store.rollback":
			rolledBack = append(rolledBack, ev.User)
		}
	}
	if len(restored) != 1 || !strings.Contains(restored[0], "undid 10 bindings, 1 revocations") {
		t.Errorf("audit of the restore = %q", restored)
	}
	for _, i := range []int{5, nLogins + 20, nUsers - 1} {
		if !slices.Contains(rolledBack, key(i)) {
			t.Errorf("the audit does not record the rollback of %s: %q", key(i), rolledBack)
		}
	}
	// A binding restored is a binding in force: the login waits for the phone.
	e.resetOps(t)
	if st := pushed(t, sg.gateway, users[5], phoneOf(5), device.Approve); st != http.StatusSeeOther {
		t.Fatalf("u005's login after the restore: %d", st)
	}
}

func regexpLine(text, pattern string) bool {
	for _, l := range strings.Split(text, "\n") {
		if ok, _ := regexp.MatchString(pattern, l); ok {
			return true
		}
	}
	return false
}

// A reload that keeps the store keeps its engine; one that changes the
// embedded store's keys or settings is refused (they take a restart), and
// the running config goes on holding logins.
func TestEmbeddedStoreChangesNeedARestart(t *testing.T) {
	e := newEnv(t, envOptions{})
	sg := newStoreGateway(t, e, "")
	phone := newPhone(t, sg.gateway)
	enrolWithCode(t, sg.gateway, alice, phone)
	reload := func(global string) (string, error) {
		file := filepath.Join(e.dir, "Caddyfile.reload")
		cfg := e.caddyfile(sg.port, sg.adminPort, caddyConfig{Global: global, BareStore: true, AdminAPIPort: sg.apiPort, AdminToken: "{env.ONEPUSH_ADMIN_TOKEN}"})
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(caddyBin, "reload", "--config", file, "--adapter", "caddyfile", "--address", fmt.Sprintf("127.0.0.1:%d", sg.adminPort))
		cmd.Env = caddyrig.Env(e.dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := reload("\t\tpush_rate 6"); err != nil {
		t.Fatalf("a reload that keeps the store: %v\n%s", err, out)
	}
	other := filepath.Join(e.dir, "other.db")
	for _, tc := range []struct{ global, want string }{
		{"\t\tencryption_key AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "needs a restart"},
		{"\t\tstore embedded {\n\t\t\tauto_init\n\t\t}", "needs a restart"},
		{"\t\tstore embedded {\n\t\t\tpath " + other + "\n\t\t}", other + " does not exist"},
	} {
		out, err := reload(tc.global)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Fatalf("reload with %q: %v, want a refusal saying %q\n%s", tc.global, err, tc.want, out)
		}
	}
	e.resetOps(t)
	if st := pushed(t, sg.gateway, alice, phone, device.Approve); st != http.StatusSeeOther {
		t.Fatalf("alice's login after the refused reloads: %d", st)
	}
}

// store memory is for tests and demos: an operator who runs it sees, at
// every start, that a restart forgets every binding and lock.
func TestMemoryStoreWarnsAtStart(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.startGateway("\t\tstore memory")
	if logs := g.logs.String(); !strings.Contains(logs, `"level":"warn"`) || !strings.Contains(logs, "store memory: nothing survives a restart") {
		t.Fatalf("no warning in Caddy's log:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "caddy", "onepush", "store.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("store memory created a store file: %v", err)
	}
}

// A gateway that outgrows one machine moves to Redis with `caddy onepush
// store migrate`: on Redis, alice is still challenged, bob still locked,
// alice's session still hers, a used device token still used, and the
// audit trail keeps its history; the announcements the bank's notification
// system never took (the gateway had no notify block) are delivered from
// Redis; alice's activation code, with the wrong try counted against her,
// replaces her phone there, once.
func TestEmbeddedStoreMigratesToRedis(t *testing.T) {
	addr := redistest.Start(t)
	e := newEnv(t, envOptions{})
	sg := newStoreGateway(t, e, "")
	pa, pb := newPhone(t, sg.gateway), newPhone(t, sg.gateway)
	enrolWithCode(t, sg.gateway, alice, pa)
	enrolWithCode(t, sg.gateway, bob, pb)
	aliceBrowser := loggedIn(t, e, sg.gateway, pa)
	if st := pushed(t, sg.gateway, bob, pb, device.Fraud); st != http.StatusForbidden {
		t.Fatalf("bob's login reported as fraud: %d", st)
	}
	token := usedDeviceToken(t, sg.gateway, pa)
	// The bank hands alice an activation code for a new phone; a wrong one
	// is tried in her session.
	var issued struct {
		Code string `json:"code"`
	}
	if st := sg.adminDo(t, http.MethodPost, "/user/activation-code", map[string]string{"key": "1001/alice"}, &issued); st != http.StatusOK || issued.Code == "" {
		t.Fatalf("activation code: %d %+v", st, issued)
	}
	fresh := newPhone(t, sg.gateway)
	{
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, page, _ := fresh.Enrol(ctx, aliceBrowser.Client, sg.URL+"/onepush/enroll", url.Values{"activation_code": {"ZZZZZ-ZZZZZ"}})
		cancel()
		if st != http.StatusBadRequest || !strings.Contains(page, "Activation code not accepted") {
			t.Fatalf("a wrong activation code: %d %.300s", st, page)
		}
	}
	failures := func() int {
		v, st := sg.user(t, "1001/alice")
		if st != http.StatusOK {
			t.Fatalf("alice: %d", st)
		}
		return v.Failures
	}
	failedBefore := failures()
	if failedBefore == 0 {
		t.Fatal("the wrong activation code was not counted")
	}
	sg.stop(t, syscall.SIGTERM)

	secret := newNotifySecret(t)
	sink := notifysink.New(secret)
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	redisGlobalNotify := redisGlobal(addr) + fmt.Sprintf("\n\t\tnotify {\n\t\t\turl %s/\n\t\t\tsecret %s\n\t\t}\n", srv.URL, secret)
	redisCfg := e.caddyfile(sg.port, sg.adminPort, caddyConfig{Global: redisGlobalNotify,
		AdminAPIPort: sg.apiPort, AdminToken: "{env.ONEPUSH_ADMIN_TOKEN}"})
	redisFile := filepath.Join(e.dir, "Caddyfile.redis")
	if err := os.WriteFile(redisFile, []byte(redisCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	migrate := func() (string, int) {
		return e.storeCLI(t, "migrate", "--config", filepath.Join(e.dir, "Caddyfile"), "--adapter", "caddyfile", "--to", redisFile, "--to-adapter", "caddyfile")
	}
	if out, code := migrate(); code != 0 || !strings.Contains(out, "2 users, 1 activation codes, 5 undelivered notifications") {
		t.Fatalf("store migrate: exit %d\n%s", code, out)
	}
	sg.cfg = redisCfg
	if err := sg.start(); err != nil {
		t.Fatalf("start on Redis: %v", err)
	}
	e.resetOps(t)
	if f := failures(); f != failedBefore {
		t.Errorf("alice's failures on Redis: %d (an approval resets them: checked first), want the %d counted before the move", f, failedBefore)
	}

	if st := deviceGet(t, sg.gateway, token); st != http.StatusUnauthorized {
		t.Errorf("a device token used before the move, replayed on Redis: %d, want 401", st)
	}
	refused(t, sg.gateway, bob, pb, "locked")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := url.Values{"payee_account": {"7654321"}, "amount": {"5000"}, "txn_password": {alice.TxnPassword}}.Encode()
	res := aliceBrowser.postAsync(ctx, sg.URL+"/transfer", body)
	ch := waitChallenge(t, pa)
	if ch.Parsed.User != "1001/alice" {
		t.Fatalf("transfer on Redis attributed to %q", ch.Parsed.User)
	}
	if n := len(opsOf(e.ops(t), bank.OpTransfer)); n != 0 {
		t.Fatalf("the bank executed a transfer before alice approved")
	}
	if st, err := pa.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
		t.Fatalf("approve: %d %v", st, err)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusOK {
		t.Fatalf("approved transfer: %v %v", r.err, r.resp)
	}
	var got []string
	for _, ev := range sg.audit(t, "") {
		got = append(got, ev.Type+" "+ev.User+" "+ev.Outcome)
	}
	for _, want := range []string{"enrolment 1001/alice bound", "user.state 1001/bob locked", "admin  store.migrated"} {
		if !slices.Contains(got, want) {
			t.Errorf("audit on Redis lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
	// Announced before the move, delivered from Redis.
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	for _, want := range []struct{ user, typ string }{
		{"1001/alice", "phone.bound"}, {"1001/alice", "binding.refused"},
		{"1001/bob", "phone.bound"}, {"1001/bob", "fraud.reported"}, {"1001/bob", "user.locked"},
	} {
		if _, err := sink.Wait(wctx, func(m notifysink.Message) bool { return m.User == want.user && m.Type == want.typ }); err != nil {
			t.Fatalf("%s of %s, queued before the move, never reached the bank (got %+v)", want.typ, want.user, sink.Messages())
		}
	}
	// alice's code, issued before the move, replaces her phone on Redis.
	next, _, _ := fresh.SecurityCodeAt(time.Now().Add(30 * time.Second))
	if st, page, _ := fresh.Enrol(ctx, aliceBrowser.Client, sg.URL+"/onepush/enroll", url.Values{"activation_code": {issued.Code}, "code": {next}}); st != http.StatusOK || !strings.Contains(page, "Phone registered") {
		t.Fatalf("alice's enrolment on Redis with the code issued before the move: %d %.300s", st, page)
	}
	if m, err := sink.Wait(wctx, func(m notifysink.Message) bool { return m.User == "1001/alice" && m.Type == "phone.replaced" }); err != nil || m.Credential != fresh.CredentialID() {
		t.Fatalf("phone.replaced of alice: %+v %v", m, err)
	}
	other := newPhone(t, sg.gateway)
	if st, page, _ := other.Enrol(ctx, aliceBrowser.Client, sg.URL+"/onepush/enroll", url.Values{"activation_code": {issued.Code}}); st == http.StatusOK {
		t.Fatalf("the activation code worked twice: %d %.300s", st, page)
	}
	if _, rejected := sink.Attempts(); rejected != 0 {
		t.Errorf("%d messages from Redis did not verify", rejected)
	}
	// The same store again into the Redis that now holds its users: refused.
	if out, code := migrate(); code == 0 || !strings.Contains(out, "already holds user") {
		t.Fatalf("a second migration: exit %d\n%s", code, out)
	}
}
