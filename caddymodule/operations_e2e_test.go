package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/notifysink"
	"github.com/onepush/onepush/internal/caddyrig"
)

// The bank's operators in the tests of #22: two support staff and a
// supervisor, each with their own token.
var testOperators = map[string]struct{ role, token string }{
	"ops1": {"support", "ops1-token-0123456789abcdef"},
	"ops2": {"support", "ops2-token-0123456789abcdef"},
	"sup1": {"supervisor", "sup1-token-0123456789abcdef"},
}

// operatorsBlock is an onepush_admin block naming testOperators, with
// extra lines.
func operatorsBlock(extra string) string {
	var b strings.Builder
	b.WriteString("\tonepush_admin {\n")
	for _, name := range []string{"ops1", "ops2", "sup1"} {
		o := testOperators[name]
		fmt.Fprintf(&b, "\t\toperator %s {\n\t\t\ttoken %s\n\t\t\trole %s\n\t\t}\n", name, o.token, o.role)
	}
	b.WriteString(extra)
	b.WriteString("\t}\n\trespond 404")
	return b.String()
}

// opsGateway is a gateway whose admin API knows named operators, with the
// bank's notification system (a sink) attached.
type opsGateway struct {
	*gateway
	api  string
	sink *notifysink.Sink
	port int
}

func startOpsGateway(t *testing.T, e *env, c caddyConfig, adminExtra string) *opsGateway {
	t.Helper()
	secret := newNotifySecret(t)
	sink := notifysink.New(secret)
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	c.Global = fmt.Sprintf("\t\tnotify {\n\t\t\turl %s/\n\t\t\tsecret %s\n\t\t}\n%s", srv.URL, secret, c.Global)
	port, adminPort, internal := freePort(t), freePort(t), freePort(t)
	cfg := e.caddyfile(port, adminPort, c) + caddyrig.Site(internal, operatorsBlock(adminExtra))
	g, err := e.runCaddy(cfg, port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	return &opsGateway{gateway: g, api: fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", internal), sink: sink, port: port}
}

// as calls the admin API as operator name (declaring actor in the header
// the single-token form trusts) and decodes the JSON answer.
func (g *opsGateway) as(t *testing.T, name, actor, method, path string, body any) (int, map[string]any) {
	t.Helper()
	resp := adminCall(t, g.api, testOperators[name].token, actor, method, path, body)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// adminEvents are the trail's admin events about key.
func (g *opsGateway) adminEvents(t *testing.T, key string) []map[string]any {
	t.Helper()
	st, out := g.as(t, "sup1", "", http.MethodGet, "/audit?"+url.Values{"user": {key}, "type": {"admin"}}.Encode(), nil)
	if st != http.StatusOK {
		t.Fatalf("audit: %d %v", st, out)
	}
	var evs []map[string]any
	for _, e := range out["events"].([]any) {
		evs = append(evs, e.(map[string]any))
	}
	return evs
}

// TestOneOperatorCannotBindAlone is the insider: a support operator binds
// a phone of their own to a customer, approves it themselves (even naming
// the supervisor in the header the old single token trusted), then asks a
// colleague of the same role. Nothing changes, nothing is announced, until
// the supervisor approves; then the audit names both. A request nobody
// decides expires and changes nothing either.
func TestOneOperatorCannotBindAlone(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := startOpsGateway(t, e, caddyConfig{}, "\t\trequest_ttl 6s\n")
	key := keyOf(alice)
	phone := newPhone(t, g.gateway)

	bound := func() string {
		t.Helper()
		st, out := g.as(t, "sup1", "", http.MethodGet, "/user?key="+url.QueryEscape(key), nil)
		if st != http.StatusOK && st != http.StatusNotFound {
			t.Fatalf("user: %d %v", st, out)
		}
		s, _ := out["credential_id"].(string)
		return s
	}

	st, out := g.as(t, "ops1", "", http.MethodPost, "/user/bind", map[string]string{"key": key, "credential_id": phone.CredentialID()})
	if st != http.StatusAccepted {
		t.Fatalf("bind by ops1 = %d %v, want 202 (waiting for a supervisor)", st, out)
	}
	id, _ := out["request_id"].(string)
	if id == "" {
		t.Fatalf("202 without a request_id: %v", out)
	}
	if c := bound(); c != "" {
		t.Fatalf("the user has credential %q after a request alone", c)
	}

	// ops1 approves their own request, claiming to be sup1; ops2 (support) tries too.
	if st, out := g.as(t, "ops1", "sup1", http.MethodPost, "/requests/"+id+"/approve", nil); st != http.StatusForbidden {
		t.Fatalf("ops1 approving their own request = %d %v, want 403", st, out)
	}
	if st, out := g.as(t, "ops2", "", http.MethodPost, "/requests/"+id+"/approve", nil); st != http.StatusForbidden {
		t.Fatalf("ops2 (support) approving = %d %v, want 403", st, out)
	}
	if c := bound(); c != "" {
		t.Fatalf("the user has credential %q after refused approvals", c)
	}
	// The customer hears of the request at once, of a binding only once approved.
	(&bindingGateway{sink: g.sink}).waitMessage(t, key, "change.requested")
	for _, m := range g.sink.Messages() {
		if m.Type == "phone.bound" {
			t.Fatalf("the bank was told of a binding nobody approved: %+v", m)
		}
	}

	st, out = g.as(t, "sup1", "", http.MethodPost, "/requests/"+id+"/approve", nil)
	if st != http.StatusOK || out["status"] != "done" || out["decided_by"] != "sup1" {
		t.Fatalf("sup1 approving = %d %v, want 200 done by sup1", st, out)
	}
	if c := bound(); c != phone.CredentialID() {
		t.Fatalf("after sup1's approval the user has credential %q, want %q", c, phone.CredentialID())
	}
	// A second approval (another instance, a double click) changes nothing.
	if st, out := g.as(t, "sup1", "", http.MethodPost, "/requests/"+id+"/approve", nil); st != http.StatusConflict {
		t.Fatalf("approving a done request = %d %v, want 409", st, out)
	}
	(&bindingGateway{sink: g.sink}).waitMessage(t, key, "phone.bound")

	// The trail: ops1 asked (their own name, not the one they declared),
	// ops1's self-approval was refused, sup1 approved, the binding names both.
	var created, refused, approved, bind bool
	for _, ev := range g.adminEvents(t, key) {
		actor, _ := ev["actor"].(string)
		switch ev["outcome"] {
		case "request.created":
			created = created || strings.HasPrefix(actor, "ops1@")
		case "request.refused":
			refused = refused || strings.HasPrefix(actor, "ops1@")
			if strings.Contains(actor, "sup1") {
				t.Fatalf("the trail took the declared name: %v", ev)
			}
		case "request.approved":
			approved = approved || strings.HasPrefix(actor, "sup1@")
		case "bind":
			bind = bind || (strings.Contains(actor, "ops1") && strings.Contains(actor, "sup1"))
		}
	}
	if !created || !refused || !approved || !bind {
		t.Fatalf("audit: created by ops1 %v, self-approval refused %v, approved by sup1 %v, binding naming both %v:\n%v",
			created, refused, approved, bind, g.adminEvents(t, key))
	}

	// A request left alone: unbind, never decided.
	st, out = g.as(t, "ops1", "", http.MethodPost, "/user/unbind", map[string]string{"key": key})
	if st != http.StatusAccepted {
		t.Fatalf("unbind by ops1 = %d %v, want 202", st, out)
	}
	late, _ := out["request_id"].(string)
	expires, _ := time.Parse(time.RFC3339, fmt.Sprint(out["expires_at"]))
	time.Sleep(time.Until(expires) + 200*time.Millisecond)
	st, list := g.as(t, "sup1", "", http.MethodGet, "/requests", nil)
	if st != http.StatusOK {
		t.Fatalf("requests: %d %v", st, list)
	}
	listed := false
	for _, r := range list["requests"].([]any) {
		r := r.(map[string]any)
		if r["id"] == late {
			listed = true
			if r["status"] != "expired" {
				t.Fatalf("a request past its expiry is listed as %v", r["status"])
			}
		}
	}
	if !listed {
		t.Fatalf("request %s not listed: %v", late, list)
	}
	if st, out := g.as(t, "sup1", "", http.MethodPost, "/requests/"+late+"/approve", nil); st != http.StatusGone {
		t.Fatalf("approving an expired request = %d %v, want 410", st, out)
	}
	if c := bound(); c != phone.CredentialID() {
		t.Fatalf("an expired unbind request changed the binding to %q", c)
	}
}

// TestActivationCodeUnderDualControlReachesOnlyItsRequester: an
// activation code lets whoever holds it and the customer's password bind a
// phone, so under dual control it is issued only when the operator who
// asked for it collects it, once, after a supervisor approved: the
// supervisor's answer never holds it, nor does the store. Driven with
// `caddy onepush`.
func TestActivationCodeUnderDualControlReachesOnlyItsRequester(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := startOpsGateway(t, e, caddyConfig{}, "")
	key := keyOf(alice)
	as := func(name string, args ...string) (string, int) {
		t.Helper()
		return cli(t, append(args, "--admin", g.api, "--token", testOperators[name].token, "--actor", "sup1")...)
	}
	out, code := as("ops1", "user", "activation-code", key)
	m := regexp.MustCompile(`request (\S+) waits for a supervisor`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("activation-code by ops1: exit %d\n%s", code, out)
	}
	id := m[1]
	if strings.Contains(out, "code:") {
		t.Fatalf("a code was shown before any approval:\n%s", out)
	}
	if out, code := as("ops1", "requests", "approve", id); code == 0 || !strings.Contains(out, "403") {
		t.Fatalf("ops1 approving their own request: exit %d\n%s", code, out)
	}
	out, code = as("sup1", "requests", "approve", id, "--json")
	if code != 0 || !strings.Contains(out, `"status":"approved"`) || strings.Contains(out, `"code"`) {
		t.Fatalf("sup1 approving: exit %d, want the approved request without a code:\n%s", code, out)
	}
	if out, code := as("sup1", "requests", "collect", id); code == 0 || !strings.Contains(out, "403") {
		t.Fatalf("sup1 collecting ops1's code: exit %d\n%s", code, out)
	}
	out, code = as("ops1", "requests", "collect", id)
	if code != 0 || !regexp.MustCompile(`code:\s+\S{6,}`).MatchString(out) {
		t.Fatalf("ops1 collecting: exit %d\n%s", code, out)
	}
	if out, code := as("ops1", "requests", "collect", id); code == 0 {
		t.Fatalf("a code collected twice:\n%s", out)
	}
	list, code := as("sup1", "requests", "list")
	if code != 0 || !strings.Contains(list, id+"  done") {
		t.Fatalf("requests list: exit %d, want %s done:\n%s", code, id, list)
	}
	var collected bool
	for _, ev := range g.adminEvents(t, key) {
		collected = collected || (ev["outcome"] == "code.collected" && strings.HasPrefix(fmt.Sprint(ev["actor"]), "ops1@"))
	}
	if !collected {
		t.Fatalf("the trail does not show ops1 collecting the code: %v", g.adminEvents(t, key))
	}
}
