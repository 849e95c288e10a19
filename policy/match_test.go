package policy

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

func loadBank(tb testing.TB) *Policy {
	tb.Helper()
	p, err := Load(filepath.Join("..", "examples", "policy", "bank.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func mustParse(tb testing.TB, src string) *Policy {
	tb.Helper()
	p, err := Parse("test.yaml", []byte(src))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// parseOrRefused parses src; with wantErr set it fails unless Parse
// refuses src with an error containing wantErr, and returns nil.
func parseOrRefused(tb testing.TB, src, wantErr string) *Policy {
	tb.Helper()
	p, err := Parse("test.yaml", []byte(src))
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			tb.Fatalf("error = %v, want it to contain %q", err, wantErr)
		}
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

const matchPolicy = `version: 1
session: {cookie: S}
rules:
  - name: login-json
    kind: login
    match: {path: {exact: /login}, hosts: [bank.example.com], content_types: [application/json]}
    user: {template: "{form.u}"}
  - name: login
    kind: login
    match: {path: {exact: /login}, hosts: [bank.example.com]}
    user: {template: "{form.u}"}
  - name: transfer
    kind: transaction
    match: {path: {prefix: /transfer}}
    user: {session: true}
  - name: settings
    kind: transaction
    match: {path: {prefix: /settings/}}
    user: {session: true}
  - name: pay
    kind: transaction
    match: {methods: [POST, PUT], path: {regex: "/pay/[0-9]+"}}
    user: {session: true}
  - name: logout
    kind: logout
    match: {methods: [POST, GET], path: {exact: /logout}}
    user: {session: true}
`

func newReq(method, target, host, ct string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if host != "" {
		r.Host = host
	}
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

func TestMatch(t *testing.T) {
	p := mustParse(t, matchPolicy)
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name, method, target, host, ct string
		want                           string // rule name, "" for nil
	}{
		{"login form", "POST", "/login", "bank.example.com", form, "login"},
		{"login json picks the json rule", "POST", "/login", "bank.example.com", "application/json", "login-json"},
		{"content type with charset", "POST", "/login", "bank.example.com", "application/x-www-form-urlencoded; charset=Shift_JIS", "login"},
		{"content type case", "POST", "/login", "bank.example.com", "Application/X-WWW-Form-Urlencoded", "login"},
		{"host with port", "POST", "/login", "bank.example.com:8443", form, "login"},
		{"host upper case, trailing dot", "POST", "/login", "BANK.example.com.", form, "login"},
		{"other host", "POST", "/login", "evil.example.com", form, ""},
		{"GET login page", "GET", "/login", "bank.example.com", "", ""},
		{"method lower case", "post", "/login", "bank.example.com", form, "login"},
		{"dot-dot", "POST", "/x/../login", "bank.example.com", form, "login"},
		{"encoded", "POST", "/log%69n", "bank.example.com", form, "login"},
		{"jsessionid", "POST", "/login;jsessionid=1", "bank.example.com", form, "login"},
		{"trailing slash", "POST", "/login/", "bank.example.com", form, "login"},
		{"case differs, case-sensitive policy", "POST", "/LOGIN", "bank.example.com", form, ""},
		{"exact is not prefix", "POST", "/login2", "bank.example.com", form, ""},
		{"prefix", "POST", "/transfer/confirm", "", form, "transfer"},
		{"prefix is a string prefix", "POST", "/transferConfirm.do", "", form, "transfer"},
		{"dir prefix matches the dir itself", "POST", "/settings", "", form, "settings"},
		{"dir prefix below", "POST", "/settings/mail", "", form, "settings"},
		{"dir prefix is not a string prefix", "POST", "/settingsx", "", form, ""},
		{"regex", "PUT", "/pay/123", "", form, "pay"},
		{"regex anchored", "PUT", "/x/pay/123", "", form, ""},
		{"regex anchored end", "PUT", "/pay/123/x", "", form, ""},
		{"regex method", "PATCH", "/pay/123", "", form, ""},
		{"wrong content type falls back to the path rule", "POST", "/transfer", "", "text/plain", "transfer"},
		{"no content type falls back to the path rule", "POST", "/transfer", "", "", "transfer"},
		{"GET logout without body", "GET", "/logout", "", "", "logout"},
		{"no rule", "POST", "/about", "", form, ""},
		{"static GET", "GET", "/static/app.css", "", "", ""},
		{"NUL refused", "POST", "/login%00", "bank.example.com", form, "unnormalizable-path"},
		{"NUL refused before any path rule", "POST", "/about%00", "", form, "unnormalizable-path"},
		{"invalid UTF-8 refused", "POST", "/transfer/%ff", "", form, "unnormalizable-path"},
		{"double encoding refused", "POST", "/%252e%252e/login", "", form, "unnormalizable-path"},
		{"NUL with unlisted method ignored", "DELETE", "/login%00", "", form, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Match(newReq(tt.method, tt.target, tt.host, tt.ct))
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tt.want {
				t.Errorf("Match(%s %s host=%q ct=%q) = %q, want %q", tt.method, tt.target, tt.host, tt.ct, name, tt.want)
			}
		})
	}
}

func TestMatchUnnormalizableRawPath(t *testing.T) {
	p := loadBank(t)
	r := newReq("POST", "/login%00", "", "application/x-www-form-urlencoded")
	if got := p.Match(r); got != Unnormalizable || got.Kind != KindRefuse {
		t.Fatalf("Match = %v, want Unnormalizable", got)
	}
	if _, err := Unnormalizable.Extract(r, nil); err == nil {
		t.Fatal("Extract on Unnormalizable must fail")
	}
}

func TestMatchCaseInsensitive(t *testing.T) {
	p := mustParse(t, `version: 1
paths: {case_insensitive: true}
rules:
  - name: login
    kind: login
    match: {path: {exact: /Login.aspx}}
    user: {template: "{form.u}"}
  - name: pay
    kind: transaction
    match: {path: {regex: "/Pay/[a-z]+"}}
    user: {header: X-User}
`)
	for _, tc := range []struct{ target, want string }{
		{"/login.aspx", "login"},
		{"/LOGIN.ASPX", "login"},
		{`/x/..\LoGiN.aspx`, "login"},
		{"/pay/ABC", "pay"},
		{"/PAY/abc", "pay"},
		{"/other", ""},
	} {
		r := newReq("POST", "/", "", "application/x-www-form-urlencoded")
		r.URL.Path = strings.ReplaceAll(tc.target, `\`, "/")
		r.URL.RawPath = tc.target
		if tc.target == `/x/..\LoGiN.aspx` {
			r.URL.Path, r.URL.RawPath = tc.target, ""
		}
		got := p.Match(r)
		name := ""
		if got != nil {
			name = got.Name
		}
		if name != tc.want {
			t.Errorf("Match(%s) = %q, want %q", tc.target, name, tc.want)
		}
	}
}

// TestMatchNoRuleDoesNotAllocate proves the gate adds no garbage for ordinary traffic.
func TestMatchNoRuleDoesNotAllocate(t *testing.T) {
	p := loadBank(t)
	for _, r := range []*http.Request{
		newReq("GET", "/static/app.css", "bank.example.com", ""),
		newReq("POST", "/about", "bank.example.com:443", "application/x-www-form-urlencoded"),
		newReq("POST", "/transfers-history/list", "bank.example.com", "application/json"),
	} {
		var got *Rule
		allocs := testing.AllocsPerRun(1000, func() { got = p.Match(r) })
		if got != nil && !strings.HasPrefix(r.URL.Path, "/transfer") {
			t.Errorf("Match(%s %s) = %s, want nil", r.Method, r.URL.Path, got.Name)
		}
		if allocs != 0 {
			t.Errorf("Match(%s %s) allocates %v times, want 0", r.Method, r.URL.Path, allocs)
		}
	}
}

func BenchmarkMatchNoRule(b *testing.B) {
	p := loadBank(b)
	reqs := []*http.Request{
		newReq("GET", "/static/app.css", "bank.example.com", ""),
		newReq("POST", "/about", "bank.example.com", "application/x-www-form-urlencoded"),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if p.Match(reqs[i&1]) != nil {
			b.Fatal("matched")
		}
	}
}

func BenchmarkMatchAndExtract(b *testing.B) {
	p := loadBank(b)
	body := []byte("payee_account=1234567&amount=50000&txn_password=secret")
	r := newReq("POST", "/transfer", "bank.example.com", "application/x-www-form-urlencoded")
	r.AddCookie(&http.Cookie{Name: "BANKSESSION", Value: "abc123"})
	b.ReportAllocs()
	for b.Loop() {
		rule := p.Match(r)
		if rule == nil {
			b.Fatal("no match")
		}
		if _, err := rule.Extract(r, body); err != nil {
			b.Fatal(err)
		}
	}
}
