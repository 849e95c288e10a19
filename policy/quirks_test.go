package policy

import (
	"bufio"
	"errors"
	"net/http"
	"strings"
	"testing"
)

const quirksPolicy = `version: 1
session: {cookie: S}
app: {fields_in_query: true}
protected: {prefix: /, except: [/search]}
rules:
  - name: login
    kind: login
    match: {path: {exact: /login}, fields: [user_id, password]}
    user: {template: "{form.user_id}"}
  - name: transfer
    kind: transaction
    match: {methods: [POST, PUT], path: {prefix: /transfer}, fields: [amount]}
    user: {session: true}
`

func qreq(t testing.TB, method, target string, hdr map[string]string, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, "http://bank.example"+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		r.Body, r.ContentLength = http.NoBody, 0
	}
	for k, v := range hdr {
		r.Header[k] = append(r.Header[k], v)
	}
	return r
}

func TestMethodOverrideIsMatchedAsTheOverriddenMethod(t *testing.T) {
	p := mustParse(t, strings.Replace(quirksPolicy, "protected: {prefix: /, except: [/search]}\n", "", 1))
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	cases := []struct {
		name   string
		method string
		target string
		hdr    map[string]string
		want   *Rule
	}{
		{"plain GET passes", "GET", "/login", nil, nil},
		{"GET with X-HTTP-Method-Override: POST", "GET", "/login", map[string]string{"X-Http-Method-Override": "POST"}, p.Rules[0]},
		{"PATCH with X-Method-Override: post", "PATCH", "/login", map[string]string{"X-Method-Override": "post"}, p.Rules[0]},
		{"DELETE with X-HTTP-Method: POST", "DELETE", "/transfer", map[string]string{"X-Http-Method": "POST"}, p.Rules[1]},
		{"underscore spelling", "GET", "/login", map[string]string{"X_http_method_override": "POST"}, p.Rules[0]},
		{"_method in the query", "GET", "/login?_method=POST", nil, p.Rules[0]},
		{"escaped _method in the query", "GET", "/login?%5Fmethod=P%4FST", nil, p.Rules[0]},
		{"override to an uncovered method", "GET", "/login", map[string]string{"X-Http-Method-Override": "PUT"}, nil},
		{"disagreeing overrides", "GET", "/static/x.css", map[string]string{"X-Http-Method-Override": "GET", "X-Method-Override": "POST"}, AmbiguousMethod},
		{"header and query disagree", "POST", "/login?_method=DELETE", map[string]string{"X-Http-Method-Override": "POST"}, AmbiguousMethod},
	}
	for _, tc := range cases {
		r := qreq(t, tc.method, tc.target, tc.hdr, "")
		for k, v := range form {
			r.Header.Set(k, v)
		}
		if got := p.Match(r); got != tc.want {
			t.Errorf("%s: Match = %v, want %v", tc.name, ruleName(got), ruleName(tc.want))
		}
	}
}

func ruleName(r *Rule) string {
	if r == nil {
		return "<nil>"
	}
	return r.Name
}

func TestProtectedPrefixRefusesUnknownVariants(t *testing.T) {
	p := mustParse(t, quirksPolicy)
	cases := []struct {
		name   string
		method string
		target string
		body   string
		want   *Rule
	}{
		{"GET under the prefix passes", "GET", "/transfer", "", nil},
		{"HEAD passes", "HEAD", "/login", "", nil},
		{"POST to a path no rule covers", "POST", "/account/close", "a=1", Unprotected},
		{"PATCH to a covered path", "PATCH", "/transfer", "amount=1", Unprotected},
		{"DELETE without body", "DELETE", "/account", "", Unprotected},
		{"GET with a body", "GET", "/account", "amount=1", Unprotected},
		{"excepted path", "POST", "/search", "q=1", nil},
		{"excepted path by another spelling", "POST", "/x/../search/", "q=1", nil},
		{"unnormalisable path with a body", "POST", "/a%00b", "x", Unnormalizable},
		{"covered post still matches its rule", "POST", "/login", "user_id=a&password=b", p.Rules[0]},
	}
	for _, tc := range cases {
		r := qreq(t, tc.method, tc.target, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, tc.body)
		if got := p.Match(r); got != tc.want {
			t.Errorf("%s: Match = %v, want %v", tc.name, ruleName(got), ruleName(tc.want))
		}
	}
}

func TestProtectedParseErrors(t *testing.T) {
	for src, want := range map[string]string{
		"protected: {}":                             "protected.prefix: required",
		"protected: {prefix: x}":                    "protected.prefix: must start with /",
		"protected: {prefix: /a, except: [/b]}":     `protected.except[0]: "/b" is not under`,
		"protected: {prefix: /a, except: [/a/%00]}": "protected.except[0]: path cannot be normalised",
		"app: {fields_in_query: yes please}":        "app.fields_in_query: must be true or false",
	} {
		_, err := Parse("p.yaml", []byte("version: 1\n"+src+"\nrules: [{name: a, kind: login, match: {path: {exact: /l}}, user: {template: \"{form.u}\"}}]\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", src, err, want)
		}
	}
}

func TestFieldsInQuery(t *testing.T) {
	p := mustParse(t, quirksPolicy)
	login := p.Rules[0]
	cases := []struct {
		name, target, ct, body, user string
	}{
		{"all fields in the query, no body", "/login?user_id=alice&password=x", "", "", "alice"},
		{"split across query and body", "/login?user_id=alice", "application/x-www-form-urlencoded", "password=x", "alice"},
		{"repeated across query and body", "/login?user_id=alice", "application/x-www-form-urlencoded", "user_id=bob&password=x", ""},
		{"case variant across query and body", "/login?USER_ID=bob", "application/x-www-form-urlencoded", "user_id=alice&password=x", ""},
		{"repeated in the query", "/login?user_id=a&user_id=b&password=x", "", "", ""},
		{"semicolon in the query", "/login?user_id=a;user_id=b&password=x", "", "", ""},
	}
	for _, tc := range cases {
		r := qreq(t, "POST", tc.target, nil, tc.body)
		if tc.ct != "" {
			r.Header.Set("Content-Type", tc.ct)
		}
		x, err := login.Extract(r, []byte(tc.body))
		switch {
		case tc.user == "" && err == nil:
			t.Errorf("%s: accepted as user %q, want refusal", tc.name, x.UserKey)
		case tc.user == "" && !errors.Is(err, ErrBadRequest):
			t.Errorf("%s: error %v does not wrap ErrBadRequest", tc.name, err)
		case tc.user != "" && (err != nil || x.UserKey != tc.user):
			t.Errorf("%s: %v %v, want user %q", tc.name, x, err, tc.user)
		}
	}
	// Without the quirk a rule field in the query is refused even when the body lacks it.
	plain := mustParse(t, strings.Replace(quirksPolicy, "app: {fields_in_query: true}\n", "", 1)).Rules[0]
	r := qreq(t, "POST", "/login?user_id=alice&password=x", nil, "")
	if _, err := plain.Extract(r, nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("query fields without the quirk: %v, want a refusal", err)
	}
}

func TestMatchDoesNotAllocateForPlainGets(t *testing.T) {
	p := mustParse(t, quirksPolicy)
	r := qreq(t, "GET", "/static/style.css", map[string]string{"Accept": "*/*", "X-Requested-With": "x"}, "")
	if n := testing.AllocsPerRun(100, func() { _ = p.Match(r) }); n != 0 {
		t.Fatalf("Match allocates %v times for a plain GET", n)
	}
}

// FuzzMatch feeds raw HTTP/1.1 requests through Go's own parser into Match and Extract:
// whatever the request line, headers and body, neither panics, and a request with a body
// under the protected prefix is never let through without a rule.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{
		"POST /login HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\nuser_id=a&password=b",
		"GET /login?_method=POST HTTP/1.1\r\nHost: a\r\nX-HTTP-Method-Override: post\r\n\r\n",
		"PUT /TRANSFER/..;x=1/%2e/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST http://other/transfer HTTP/1.1\r\nHost: a\r\nX_Method_Override: PATCH\r\nX-HTTP-Method: GET\r\n\r\n",
	} {
		f.Add(s)
	}
	p := mustParse(f, quirksPolicy)
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		rule := p.Match(r)
		if rule == nil {
			if carriesBody(r, "") && r.URL != nil && r.URL.Opaque == "" {
				if path, err := NormalizePath(r.URL.EscapedPath(), false); err == nil && path != "/search" {
					t.Fatalf("%q with a body matched nothing under the protected prefix", raw)
				}
			}
			return
		}
		if rule.Kind == KindRefuse {
			return
		}
		body := make([]byte, 0, 64)
		buf := make([]byte, 64)
		for len(body) < 4096 {
			n, err := r.Body.Read(buf)
			body = append(body, buf[:n]...)
			if err != nil {
				break
			}
		}
		if _, err := rule.Extract(r, body); err != nil && !errors.Is(err, ErrBadRequest) {
			t.Fatalf("Extract error %v does not wrap ErrBadRequest", err)
		}
	})
}
