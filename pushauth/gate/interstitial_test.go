package gate_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/gate"
	"github.com/onepush/onepush/pushauth/pushauthtest"
)

const interstitialPolicy = `version: 1
session: {cookie: S}
rules:
  - name: login
    kind: login
    mode: interstitial
    match: {path: {exact: /login}, fields: [user]}
    user: {template: "{form.user}"}
`

// waitGate serves a gate with interstitialPolicy and pages, alice enrolled,
// and returns it with its engine; bank is called for every request it
// forwards.
func waitGate(t *testing.T, pages *gate.Pages, bank func()) (*httptest.Server, *pushauth.Engine) {
	t.Helper()
	eng, _ := pushauthtest.Engine(t, pushauth.Config{})
	pushauthtest.Phone(t, eng, "alice")
	pol, err := policy.Parse("p.yaml", []byte(interstitialPolicy))
	if err != nil {
		t.Fatal(err)
	}
	g := &gate.Gate{Engine: eng, Policy: pol, Pages: pages, Log: pushauthtest.Quiet(), WaitPath: "/onepush/wait/"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = g.Route(w, r, func(w http.ResponseWriter, r *http.Request) error { bank(); return nil })
	}))
	t.Cleanup(srv.Close)
	return srv, eng
}

// TestWaitingPageIsBoundToItsBrowser: the interstitial page's cookie is
// HttpOnly and SameSite=Strict, the bank's own template replaces the
// built-in page, and a request without the cookie gets nothing.
func TestWaitingPageIsBoundToItsBrowser(t *testing.T) {
	pages, err := gate.NewPages("", "/")
	if err != nil {
		t.Fatal(err)
	}
	custom := filepath.Join(t.TempDir(), "wait.html")
	if err := os.WriteFile(custom, []byte(`<p>Bank of Example: please approve ({{.Ref}})</p>`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pages.LoadWaitTemplate(custom); err != nil {
		t.Fatal(err)
	}
	bankHits := 0
	srv, eng := waitGate(t, pages, func() { bankHits++ })

	resp, err := http.Post(srv.URL+"/login", "application/x-www-form-urlencoded", strings.NewReader("user=alice"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Bank of Example: please approve") {
		t.Fatalf("waiting page: %d %q", resp.StatusCode, body)
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == gate.WaitCookie {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/onepush/wait/" {
		t.Fatalf("wait cookie = %+v, want HttpOnly, SameSite=Strict, scoped to the wait path", ck)
	}
	id, _, _ := strings.Cut(ck.Value, ".")
	if ref := pushauth.Reference(id); !strings.Contains(string(body), ref) {
		t.Fatalf("page does not show its reference %s (challenge %s): %s", ref, id, body)
	}
	for name, cookie := range map[string]string{"none": "", "forged token": gate.WaitCookie + "=" + id + ".AAAA", "right": gate.WaitCookie + "=" + ck.Value} {
		want := http.StatusNotFound
		if name == "right" {
			want = http.StatusOK
		}
		if st := getStatus(t, srv.URL+"/onepush/wait/"+id, "Cookie", cookie); st != want {
			t.Errorf("%s cookie: %d, want %d", name, st, want)
		}
	}
	// Cancel from the page: audited as the browser's doing, nothing forwarded.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/onepush/wait/"+id+"/cancel", nil)
	req.Header.Set("Cookie", gate.WaitCookie+"="+ck.Value)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	evs, _ := eng.Audit().Query(context.Background(), pushauth.AuditQuery{User: "alice", Type: pushauth.AuditCancelled})
	if resp.StatusCode != http.StatusOK || len(evs) != 1 || evs[0].Actor != "browser" || evs[0].Challenge != id {
		t.Fatalf("cancel: status %d, audit %+v", resp.StatusCode, evs)
	}
	if bankHits != 0 {
		t.Fatalf("bank reached %d times without an approval", bankHits)
	}
}
