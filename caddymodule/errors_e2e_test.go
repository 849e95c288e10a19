package caddymodule_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// startGatewayWith runs a gateway whose bank site has extra directives.
func (e *env) startGatewayWith(c caddyConfig) *gateway {
	e.t.Helper()
	port, adminPort := freePort(e.t), freePort(e.t)
	g, err := e.runCaddy(e.caddyfile(port, adminPort, c), port, adminPort)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

// TestRefusalsReachHandleErrors: with handle_errors in the site, a refused
// transfer (denied on the phone, or on a session the gateway never
// learned) is Caddy's error with the refusal's status, so the bank's own
// error routes answer it; nothing reaches the bank.
func TestRefusalsReachHandleErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.startGatewayWith(caddyConfig{SiteExtra: "\thandle_errors {\n\t\trespond \"handled {err.status_code}\"\n\t}"})
	phone := newPhone(t, g)
	enroll(t, g, alice, phone)
	b := approvedLogin(t, g, alice, phone)
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	res := b.postAsync(ctx, g.URL+"/transfer/confirm", transferBody(alice))
	ch := waitChallenge(t, phone)
	if st, err := phone.Decide(ctx, ch, device.Deny, 0); err != nil || st != http.StatusOK {
		t.Fatalf("deny: %d %v", st, err)
	}
	if r := <-res; r.err != nil || r.body != "handled 403" {
		t.Fatalf("denied transfer: %v %v body %q, want \"handled 403\" from handle_errors", r.err, r.resp, r.body)
	}

	stranger := newBrowser()
	u := mustURL(t, g.URL)
	stranger.Jar.SetCookies(u, []*http.Cookie{{Name: bank.SessionCookieName, Value: "never-learned"}})
	if _, body, err := stranger.post(ctx, g.URL+"/transfer/confirm", transferBody(alice)); err != nil || body != "handled 403" {
		t.Fatalf("transfer on an unknown session: %v body %q, want \"handled 403\"", err, body)
	}
	if n := len(opsOf(e.ops(t), bank.OpTransfer)); n != 0 {
		t.Fatalf("the bank executed %d refused transfers", n)
	}
}

// TestAccessLogNamesTheApprovedUser: the access log line of an approved
// login carries the user key (user_id, from {http.auth.user.id}) and the
// gateway's placeholders; a denied one names whom it was for, never as
// the authenticated user.
func TestAccessLogNamesTheApprovedUser(t *testing.T) {
	e := newEnv(t, envOptions{})
	logFile := filepath.Join(e.dir, "access.log")
	g := e.startGatewayWith(caddyConfig{SiteExtra: "\tlog {\n\t\toutput file " + logFile + "\n\t\tformat json\n\t}\n\tlog_append rule {onepush.rule}\n\tlog_append user {onepush.user}\n\tlog_append challenge_id {onepush.challenge_id}\n\tlog_append outcome {onepush.outcome}"})
	phone := newPhone(t, g)
	enroll(t, g, alice, phone)
	_ = approvedLogin(t, g, alice, phone)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
	if st, err := phone.Decide(ctx, waitChallenge(t, phone), device.Deny, 0); err != nil || st != http.StatusOK {
		t.Fatalf("deny: %d %v", st, err)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied login: %v %v", r.err, r.resp)
	}

	var login, denied map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for (login == nil || denied == nil) && time.Now().Before(deadline) {
		data, _ := os.ReadFile(logFile)
		for _, line := range strings.Split(string(data), "\n") {
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) != nil {
				continue
			}
			req, _ := entry["request"].(map[string]any)
			switch {
			case req["uri"] == "/login" && entry["status"] == float64(http.StatusSeeOther):
				login = entry
			case req["uri"] == "/login" && entry["status"] == float64(http.StatusForbidden):
				denied = entry
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if login == nil || denied == nil {
		t.Fatalf("access log lines: approved %v, denied %v", login, denied)
	}
	if login["user_id"] != "1001/alice" || login["rule"] != "login" || login["outcome"] != "approved" || login["challenge_id"] == "" {
		t.Fatalf("access log of the approved login: user_id %v, rule %v, outcome %v, challenge_id %v", login["user_id"], login["rule"], login["outcome"], login["challenge_id"])
	}
	if denied["user_id"] != "" || denied["user"] != "1001/alice" || denied["outcome"] != "denied" {
		t.Fatalf("access log of the denied login: user_id %v (want none), user %v, outcome %v", denied["user_id"], denied["user"], denied["outcome"])
	}
}
