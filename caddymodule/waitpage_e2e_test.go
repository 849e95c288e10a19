package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
)

// Helpers for the tests that drive the interstitial waiting page through
// real Caddy processes, and for gateways with an admin API and their own
// global options.

// interstitialTransfers makes the example policy's transfer rule store the
// request and answer with the waiting page.
func interstitialTransfers(s string) string {
	const match = "    match: {path: {prefix: /transfer}, fields: [payee_account, amount]}\n"
	return strings.Replace(s, match, match+"    mode: interstitial\n", 1)
}

// interstitialLogins does the same for the login rule (no number matching).
func interstitialLogins(s string) string {
	return strings.Replace(s, "    timeout: 90s\n", "    timeout: 90s\n    mode: interstitial\n", 1)
}

// startAdminNode runs a gateway with the onepush admin API on its own
// listener and global, the lines of the global onepush block.
func (e *env) startAdminNode(t *testing.T, global string) *clusterNode {
	t.Helper()
	n := &clusterNode{port: freePort(t), admin: freePort(t), internal: freePort(t)}
	cfg := e.caddyfile(n.port, n.admin, caddyConfig{Global: global, AdminAPIPort: n.internal, AdminToken: clusterAdminToken})
	g, err := e.runCaddy(cfg, n.port, n.admin)
	if err != nil {
		t.Fatal(err)
	}
	n.gateway = g
	n.adminAPI = fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", n.internal)
	return n
}

// userState reads a user through the admin API.
func (n *clusterNode) userState(t *testing.T, key string) (state string, failures int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.adminAPI+"/user?key="+url.QueryEscape(key), nil)
	req.Header.Set("Authorization", "Bearer "+clusterAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("reading user %s: %v", key, err)
	}
	defer resp.Body.Close()
	var v struct {
		State    string `json:"state"`
		Failures int    `json:"failures"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		t.Fatalf("reading user %s: status %d", key, resp.StatusCode)
	}
	return v.State, v.Failures
}

// waitPage is an interstitial challenge as the browser that started it
// holds it: its cookie jar carries the onepush_wait cookie.
type waitPage struct {
	b  *browser
	id string
	// code is the code the page shows for the user to type into the app
	// (code transfer), "" when it shows none.
	code string
	// ocra is the challenge number of a transaction's offline fallback,
	// "" when the page offers none.
	ocra string
}

var shownOCRARE = regexp.MustCompile(`id="ocra-challenge"[^>]*>([0-9 ]+)<`)

// ocraOnPage is the challenge number of a waiting page's offline
// fallback, without its group space; "" when none.
func ocraOnPage(page string) string {
	if m := shownOCRARE.FindStringSubmatch(page); m != nil {
		return strings.ReplaceAll(m[1], " ", "")
	}
	return ""
}

var shownCodeRE = regexp.MustCompile(`id="code"[^>]*>([0-9]+)<`)

// codeOnPage is the code a waiting page shows, "" when none.
func codeOnPage(page string) string {
	if m := shownCodeRE.FindStringSubmatch(page); m != nil {
		return m[1]
	}
	return ""
}

// startWait posts body to target and expects the waiting page.
func startWait(t *testing.T, ctx context.Context, b *browser, target, body string) waitPage {
	t.Helper()
	resp, page, err := b.post(ctx, target, body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %v %v %.300q, want the waiting page", target, err, resp, page)
	}
	u, _ := url.Parse(target)
	u.Path = "/onepush/wait/x"
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == "onepush_wait" {
			id, _, _ := strings.Cut(c.Value, ".")
			return waitPage{b: b, id: id, code: codeOnPage(page), ocra: ocraOnPage(page)}
		}
	}
	t.Fatalf("POST %s: no onepush_wait cookie: %.300q", target, page)
	return waitPage{}
}

// post sends an action of the waiting page (continue, otp, cancel) to the
// gateway at base.
func (w waitPage) post(ctx context.Context, base, action string, form url.Values) (*http.Response, string, error) {
	return w.b.post(ctx, base+"/onepush/wait/"+w.id+"/"+action, form.Encode())
}

// status long-polls the challenge's status once.
func (w waitPage) status(ctx context.Context, base string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/onepush/wait/"+w.id+"/status", nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := w.b.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var v struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v.Status, nil
}

// transfersOf counts the bank's executed transfers per user ID.
func transfersOf(ops []bank.Op) map[string]int {
	out := map[string]int{}
	for _, o := range opsOf(ops, bank.OpTransfer) {
		out[o.UserID]++
	}
	return out
}

// wrongCode is a 6-digit code that is not phone's code at any step a
// gateway accepts around now.
func wrongCode(t *testing.T, valid func(time.Time) (string, error)) string {
	t.Helper()
	used := map[string]bool{}
	for _, d := range []time.Duration{-60 * time.Second, -30 * time.Second, 0, 30 * time.Second, 60 * time.Second} {
		c, err := valid(time.Now().Add(d))
		if err != nil {
			t.Fatal(err)
		}
		used[c] = true
	}
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		if !used[c] {
			return c
		}
	}
	t.Fatal("no wrong code found")
	return ""
}
