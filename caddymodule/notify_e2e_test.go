package caddymodule_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/notifysink"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// Announcements reach the bank's notification system (a real HTTP sink
// that verifies each signature): a binding, a lock and a fraud report;
// through failures of the sink; and across a SIGKILL of Caddy.

// TestNotificationsReachTheBankSigned: a sink that fails twice gets the
// binding on the third try; a lock and a fraud report follow; every
// message verifies, says how to repudiate, and carries no secret; every
// delivery attempt is in the audit trail.
func TestNotificationsReachTheBankSigned(t *testing.T) {
	e := newEnv(t, envOptions{passwordFirst: true}) // logins with code transfer
	g := startBindingGateway(t, e, bindingOptions{})
	aliceKey, bobKey := keyOf(alice), keyOf(bob)
	g.sink.FailNext(2)
	phone := newPhone(t, g.gateway)
	enroll(t, g.gateway, alice, phone)
	bound := g.waitMessage(t, aliceKey, "phone.bound")
	all, rejected := g.sink.Attempts()
	if all != 3 || rejected != 0 || bound.Deliveries != 1 || bound.Credential != phone.CredentialID() || bound.Via != "password" {
		t.Fatalf("binding after two failures: %d attempts (%d rejected), message %+v; want it on the third", all, rejected, bound)
	}
	// Each attempt is audited (the delivery once the sink has answered).
	var deliveries []string
	for deadline := time.Now().Add(10 * time.Second); len(deliveries) < 3 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		deliveries = deliveries[:0]
		for _, ev := range g.audit(t, aliceKey, "notification") {
			deliveries = append(deliveries, fmt.Sprint(ev["outcome"]))
			if ev["outcome"] == "delivered" && !strings.Contains(fmt.Sprint(ev["detail"]), "attempt 3") {
				t.Errorf("delivery audited as %v", ev["detail"])
			}
		}
	}
	if strings.Join(deliveries, ",") != "failed,failed,delivered" {
		t.Fatalf("delivery audit: %v, want two failures then the delivery", deliveries)
	}

	// Five wrong codes lock alice (a denial is no failure).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 5 {
		w := startWait(t, ctx, newBrowser(), g.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, phone)
		if st, _ := phone.DecideWithCode(ctx, ch, device.Approve, otherCode(w.code)); st != http.StatusOK {
			t.Fatalf("wrong code %d: %d", i+1, st)
		}
	}
	locked := g.waitMessage(t, aliceKey, "user.locked")
	if !strings.Contains(locked.Detail, "5 consecutive failures") {
		t.Fatalf("user.locked: %+v", locked)
	}

	// bob reports a login as fraud.
	bobPhone := newPhone(t, g.gateway)
	enroll(t, g.gateway, bob, bobPhone)
	startWait(t, ctx, newBrowser(), g.URL+"/login", loginBody(bob))
	if st, _ := bobPhone.Decide(ctx, waitChallenge(t, bobPhone), device.Fraud, 0); st != http.StatusOK {
		t.Fatalf("login reported as fraud: %d", st)
	}
	fraud := g.waitMessage(t, bobKey, "fraud.reported")
	if fraud.ClientIP != "127.0.0.1" || fraud.Credential != bobPhone.CredentialID() {
		t.Fatalf("fraud.reported: %+v", fraud)
	}
	g.waitMessage(t, bobKey, "user.locked")

	ids := map[string]bool{}
	for _, m := range g.sink.Messages() {
		if ids[m.ID] || !strings.HasPrefix(m.ID, "evt_") {
			t.Errorf("message id %q repeated or malformed", m.ID)
		}
		ids[m.ID] = true
		if m.Repudiation == "" {
			t.Errorf("%s for %s says nothing about repudiating it", m.Type, m.User)
		}
	}
	resp, err := http.Get(g.sinkURL + "messages.json")
	if err != nil {
		t.Fatal(err)
	}
	raw := readAll(t, resp)
	for _, secret := range []string{alice.Password, bob.Password, phone.OTPSecret(), bobPhone.OTPSecret(), "BANKSESSION"} {
		if strings.Contains(raw, secret) {
			t.Fatalf("a notification carries a secret (%q)", secret)
		}
	}
}

// embeddedGlobal names the embedded store, which creates itself at the
// first start in the env's data directory and keeps its file across
// restarts.
const embeddedGlobal = "\t\tstore embedded {\n\t\t\tauto_init\n\t\t}\n"

// stopGateway signals g's Caddy and waits until it is gone: its port
// closed and the process (with its file locks) reaped.
func (e *env) stopGateway(t *testing.T, g *gateway, sig syscall.Signal) {
	t.Helper()
	pid := g.cmd.Process.Pid
	if err := g.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(g.URL, "http://")
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil && syscall.Kill(pid, 0) != nil {
			return // gone; the harness reaped it
		}
		if c != nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("Caddy (pid %d) still there 30s after %v", pid, sig)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startAgain runs a new Caddy on g's Caddyfile and ports.
func (e *env) startAgain(t *testing.T, g *gateway) *gateway {
	t.Helper()
	var port, adminPort int
	_, _ = fmt.Sscan(strings.TrimPrefix(g.URL, "http://127.0.0.1:"), &port)
	_, _ = fmt.Sscan(strings.TrimPrefix(g.Admin, "http://127.0.0.1:"), &adminPort)
	cfg, err := os.ReadFile(g.file)
	if err != nil {
		t.Fatal(err)
	}
	ng, err := e.runCaddy(string(cfg), port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	return ng
}

// TestNotificationSurvivesSIGKILL: messages queued while the bank's
// notification system is down, in a Caddy that is then killed with
// SIGKILL, are delivered by the Caddy that starts after it, each once.
// Rows are the durable stores.
func TestNotificationSurvivesSIGKILL(t *testing.T) {
	stores := []struct {
		name   string
		global func(t *testing.T) string
	}{
		{"embedded", func(t *testing.T) string { return embeddedGlobal }},
		{"redis", func(t *testing.T) string {
			return redisGlobal(redistest.Start(t), "prefix kill-test:") + "\n"
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			global := st.global(t)
			secret := newNotifySecret(t)
			sink := notifysink.New(secret)
			srv := httptest.NewServer(sink)
			t.Cleanup(srv.Close)
			sink.FailNext(1 << 30) // down until further notice
			g := startBindingGateway(t, e, bindingOptions{global: global, secret: secret, sinkURL: srv.URL + "/"})
			users := []struct {
				key   string
				phone *device.Phone
			}{}
			for _, u := range []bank.User{alice, bob} {
				p := newPhone(t, g.gateway)
				enroll(t, g.gateway, u, p)
				users = append(users, struct {
					key   string
					phone *device.Phone
				}{keyOf(u), p})
			}
			// Each binding was tried and refused by the sink at least once.
			deadline := time.Now().Add(20 * time.Second)
			for all, _ := sink.Attempts(); all < len(users); all, _ = sink.Attempts() {
				if time.Now().After(deadline) {
					t.Fatalf("%d delivery attempts, want at least %d", all, len(users))
				}
				time.Sleep(20 * time.Millisecond)
			}
			e.stopGateway(t, g.gateway, syscall.SIGKILL)
			if n := len(sink.Messages()); n != 0 {
				t.Fatalf("%d messages accepted while the sink was down", n)
			}
			sink.FailNext(0)
			e.startAgain(t, g.gateway) // the same Caddyfile, a new process
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for _, u := range users {
				m, err := sink.Wait(ctx, func(m notifysink.Message) bool { return m.User == u.key && m.Type == "phone.bound" })
				if err != nil {
					t.Fatalf("the binding of %s was lost with the killed Caddy (messages: %+v)", u.key, sink.Messages())
				}
				if m.Credential != u.phone.CredentialID() {
					t.Fatalf("phone.bound of %s: %+v", u.key, m)
				}
			}
			for _, m := range sink.Messages() {
				if m.Type == "phone.bound" && m.Deliveries != 1 {
					t.Logf("%s delivered %d times (at least once; the receiver de-duplicates by id)", m.ID, m.Deliveries)
				}
			}
		})
	}
}
