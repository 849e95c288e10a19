package caddymodule_test

// The bypass suite: an attacker who has stolen a password tries every spelling of the
// login and transfer posts that the legacy bank (or the web server in front of it) might
// still accept. Each variant goes through one real Caddy process to the real legacy bank,
// and must be either challenged (the phone gets a challenge, then denies it or lets it
// time out) or refused by the gateway; the bank must see nothing (its /ops/log stays
// empty and no request with a body or an unsafe method reaches it).
//
// HTTP/2 is exercised as h2c (cleartext HTTP/2 with prior knowledge: Caddy's
// `protocols h1 h2 h2c`, Go's http.Protocols.SetUnencryptedHTTP2). It runs through the
// same Caddy HTTP/2 server code as TLS h2, without a certificate authority in the test.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// bypassPolicy is the example policy with the quirks a hardened deployment declares:
// case-insensitive paths (IIS-style servers), host-limited rules, and the whole site as
// a protected prefix so that body-carrying variants no rule anticipates are refused.
const bypassPolicy = `version: 1
session: {cookie: BANKSESSION, ttl: 30m}
paths: {case_insensitive: true}
protected: {prefix: /}
defaults: {timeout: 3s, body_limit: 64KiB}
rules:
  - name: login
    kind: login
    match:
      methods: [POST]
      hosts: [127.0.0.1, localhost, bank.example]
      path: {exact: /login}
      content_types: [application/x-www-form-urlencoded, multipart/form-data]
      fields: [contract_no, user_id, password]
    user: {template: "{form.contract_no}/{form.user_id}"}
    display:
      - {label: User, value: "{form.user_id}"}
    not_enrolled: allow
    success: {status: [303], set_cookie: BANKSESSION, location_prefix: /dashboard}
    body_limit: 16KiB
  - name: transfer
    kind: transaction
    match:
      hosts: [127.0.0.1, localhost, bank.example]
      path: {prefix: /transfer}
      fields: [payee_account, amount]
    user: {session: true}
    display:
      - {label: Amount, value: "{form.amount} JPY"}
      - {label: Payee, value: "{form.payee_account}"}
  - name: logout
    kind: logout
    match: {methods: [POST, GET], path: {exact: /logout}}
    user: {session: true}
`

// bankRecorder sits between Caddy and the bank and remembers every request that could
// change something there: any method but GET and HEAD, or any body.
type bankRecorder struct {
	h      http.Handler
	mu     sync.Mutex
	rs     []string
	onepus []string // X-Onepush-* headers the bank received
}

func (b *bankRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		b.mu.Lock()
		b.rs = append(b.rs, r.Method+" "+r.URL.RequestURI())
		b.mu.Unlock()
	}
	for k, v := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-onepush-") {
			b.mu.Lock()
			b.onepus = append(b.onepus, k+": "+strings.Join(v, ","))
			b.mu.Unlock()
		}
	}
	b.h.ServeHTTP(w, r)
}

func (b *bankRecorder) takeOnepushHeaders() []string { return b.drain(&b.onepus) }

func (b *bankRecorder) take() []string { return b.drain(&b.rs) }

// drain empties one of the recorder's lists and returns what it held.
func (b *bankRecorder) drain(list *[]string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := *list
	*list = nil
	return out
}

// newBankEnv is newEnv with a chosen user list, policy text and a recorder in front of
// the bank.
func newBankEnv(t *testing.T, users []bank.User, policyText string) (*env, *bankRecorder) {
	t.Helper()
	b := bank.New(bank.Config{Users: users})
	rec := &bankRecorder{h: b}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, bank: b, bankURL: srv.URL, policy: path}, rec
}

// startCustomGateway runs Caddy with server options and onepush global options.
func (e *env) startCustomGateway(servers, global string) *gateway {
	e.t.Helper()
	port, adminPort := freePort(e.t), freePort(e.t)
	cfg := e.caddyfile(port, adminPort, caddyConfig{Servers: servers, Global: global})
	g, err := e.runCaddy(cfg, port, adminPort)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

func extraUsers(n int) []bank.User {
	users := bank.DefaultUsers()
	for i := range n {
		id := fmt.Sprintf("u%02d", i)
		users = append(users, bank.User{ContractNo: "3003", UserID: id, Password: id + "-pass", TxnPassword: id + "-txn", Name: "User " + id})
	}
	return users
}

// rawReq is one request spelled exactly as it goes on the wire.
type rawReq struct {
	method, target string
	host           string      // Host header; "" = the gateway's address; "-" = none
	headers        [][2]string // in order
	body           string
	chunked        bool // send the body chunked (no Content-Length)
	expect100      bool // send headers, wait for 100 Continue, then the body
	contentLength  string
	h2             bool // send over h2c instead of raw HTTP/1.1
}

type vuser struct {
	u       bank.User
	phone   *device.Phone
	session string
	pushes  int
}

type varCtx struct {
	addr string // 127.0.0.1:port
	u    bank.User
	sess string
}

type bypassVariant struct {
	name   string
	kind   string // "login" or "transfer": which user and session it needs
	want   string // "challenge" or "refuse"
	expire bool   // let the challenge time out instead of denying it
	build  func(v varCtx) rawReq
}

const formCT = "application/x-www-form-urlencoded"

func formHdr() [][2]string { return [][2]string{{"Content-Type", formCT}} }

// overridden sends the request as method with one method-override header.
func overridden(method, header, value string) func(varCtx, *rawReq) {
	return func(_ varCtx, r *rawReq) {
		r.method = method
		r.headers = append(r.headers, [2]string{header, value})
	}
}

func loginReq(target string) func(varCtx) rawReq {
	return func(v varCtx) rawReq {
		return rawReq{method: "POST", target: target, headers: formHdr(), body: loginBody(v.u)}
	}
}

func transferBody(u bank.User) string {
	return url.Values{"payee_account": {"7777777"}, "amount": {"990000"}, "txn_password": {u.TxnPassword}}.Encode()
}

func withSession(v varCtx, h ...[2]string) [][2]string {
	return append([][2]string{{"Cookie", bank.SessionCookieName + "=" + v.sess}}, h...)
}

func transferReq(method, target, ct, body string) func(varCtx) rawReq {
	return func(v varCtx) rawReq {
		if body == "" {
			body = transferBody(v.u)
		}
		return rawReq{method: method, target: target, headers: withSession(v, [2]string{"Content-Type", ct}), body: body}
	}
}

func multipartBody(fields [][2]string, file string) (string, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		if f[0] == file {
			w, _ := mw.CreateFormFile(f[0], "x.txt")
			w.Write([]byte(f[1]))
			continue
		}
		_ = mw.WriteField(f[0], f[1])
	}
	mw.Close()
	return buf.String(), mw.FormDataContentType()
}

func loginFields(u bank.User) [][2]string {
	return [][2]string{{"contract_no", u.ContractNo}, {"user_id", u.UserID}, {"password", u.Password}}
}

func bypassVariants() []bypassVariant {
	login := func(name, want, target string) bypassVariant {
		return bypassVariant{name: name, kind: "login", want: want, build: loginReq(target)}
	}
	lh := func(name, want string, f func(v varCtx, r *rawReq)) bypassVariant {
		return bypassVariant{name: name, kind: "login", want: want, build: func(v varCtx) rawReq {
			r := loginReq("/login")(v)
			f(v, &r)
			return r
		}}
	}
	th := func(name, want string, f func(v varCtx, r *rawReq)) bypassVariant {
		return bypassVariant{name: name, kind: "transfer", want: want, build: func(v varCtx) rawReq {
			r := transferReq("POST", "/transfer", formCT, "")(v)
			f(v, &r)
			return r
		}}
	}
	vs := []bypassVariant{
		// Path spellings of the login.
		login("login as written", "challenge", "/login"),
		login("upper case", "challenge", "/LOGIN"),
		login("mixed case", "challenge", "/LoGiN"),
		login("trailing slash", "challenge", "/login/"),
		login("double slash", "challenge", "//login"),
		login("dot segment", "challenge", "/./login"),
		login("dot-dot segment", "challenge", "/static/../login"),
		login("encoded dot segment", "challenge", "/%2e/login"),
		login("encoded dot-dot", "challenge", "/static/%2e%2e/login"),
		login("encoded slash", "challenge", "/%2flogin"),
		login("encoded slash and dots", "challenge", "/static%2f..%2flogin"),
		login("jsessionid path parameter", "challenge", "/login;jsessionid=0123ABC"),
		login("path parameter and query", "challenge", "/login;jsessionid=1?lang=ja"),
		login("encoded semicolon", "challenge", "/login%3bjsessionid=1"),
		login("percent-encoded letter", "challenge", "/log%69n"),
		login("percent-encoded upper-case letters", "challenge", "/LOG%49N"),
		login("encoded backslash", "challenge", "/static%5c..%5clogin"),
		login("trailing dot segment", "challenge", "/login/."),
		login("trailing encoded slash", "challenge", "/login%2f"),
		login("absolute-form request target", "challenge", "http://bank.example/login"),
		login("overlong UTF-8 slash", "refuse", "/static%c0%af..%c0%aflogin"),
		login("overlong UTF-8 dot", "refuse", "/%c0%ae/login"),
		login("invalid UTF-8", "refuse", "/login%ff"),
		login("encoded NUL", "refuse", "/login%00"),
		login("double-encoded dot", "refuse", "/%252e/login"),
		login("fullwidth letters", "refuse", "/%EF%BD%8C%EF%BD%8F%EF%BD%87%EF%BD%89%EF%BD%8E"),
		login("trailing encoded space", "refuse", "/login%20"),
		login("another extension", "refuse", "/login.do"),

		// Methods and method overrides.
		lh("lower-case method", "challenge", func(_ varCtx, r *rawReq) { r.method = "post" }),
		lh("PUT", "refuse", func(_ varCtx, r *rawReq) { r.method = "PUT" }),
		lh("PATCH", "refuse", func(_ varCtx, r *rawReq) { r.method = "PATCH" }),
		lh("GET with a body and X-HTTP-Method-Override", "challenge", overridden("GET", "X-HTTP-Method-Override", "POST")),
		lh("PUT with X-HTTP-Method-Override", "challenge", overridden("PUT", "X-HTTP-Method-Override", "POST")),
		lh("PUT with X-Method-Override", "challenge", overridden("PUT", "X-Method-Override", "post")),
		lh("DELETE with X-HTTP-Method", "challenge", overridden("DELETE", "X-HTTP-Method", "POST")),
		// Caddy drops headers spelled with underscores, so this PUT meets the protected
		// prefix without an override (policy.Match would honour the spelling too).
		lh("override header with underscores", "refuse", overridden("PUT", "X_HTTP_METHOD_OVERRIDE", "POST")),
		lh("_method in the query", "challenge", func(_ varCtx, r *rawReq) { r.method, r.target = "PUT", "/login?_method=POST" }),
		lh("_method in the body of a POST", "challenge", func(_ varCtx, r *rawReq) { r.body += "&_method=PUT" }),
		lh("_method in the body of a PUT", "refuse", func(_ varCtx, r *rawReq) { r.method, r.body = "PUT", r.body+"&_method=POST" }),
		lh("disagreeing override headers", "refuse", func(_ varCtx, r *rawReq) {
			r.headers = append(r.headers, [2]string{"X-HTTP-Method-Override", "POST"}, [2]string{"X-Method-Override", "DELETE"})
		}),

		// Content types.
		lh("charset utf-8", "challenge", func(_ varCtx, r *rawReq) { r.headers = [][2]string{{"Content-Type", formCT + "; charset=UTF-8"}} }),
		lh("upper-case media type", "challenge", func(_ varCtx, r *rawReq) {
			r.headers = [][2]string{{"Content-Type", strings.ToUpper(formCT)}}
		}),
		lh("charset Shift_JIS", "challenge", func(_ varCtx, r *rawReq) {
			r.headers = [][2]string{{"Content-Type", formCT + ";charset=Shift_JIS"}}
		}),
		lh("multipart", "challenge", func(v varCtx, r *rawReq) {
			body, ct := multipartBody(loginFields(v.u), "")
			r.body, r.headers = body, [][2]string{{"Content-Type", ct}}
		}),
		lh("multipart with quoted boundary and charset", "challenge", func(v varCtx, r *rawReq) {
			body, ct := multipartBody(loginFields(v.u), "")
			b := strings.TrimPrefix(ct, "multipart/form-data; boundary=")
			r.body, r.headers = body, [][2]string{{"Content-Type", `multipart/form-data; charset=utf-8; boundary="` + b + `"`}}
		}),
		lh("multipart with the user as a file", "refuse", func(v varCtx, r *rawReq) {
			body, ct := multipartBody(loginFields(v.u), "user_id")
			r.body, r.headers = body, [][2]string{{"Content-Type", ct}}
		}),
		lh("multipart part in base64", "refuse", func(v varCtx, r *rawReq) {
			b := "XyZ"
			r.body = "--" + b + "\r\nContent-Disposition: form-data; name=\"contract_no\"\r\n\r\n" + v.u.ContractNo +
				"\r\n--" + b + "\r\nContent-Disposition: form-data; name=\"user_id\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYWxpY2U=" +
				"\r\n--" + b + "\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n" + v.u.Password + "\r\n--" + b + "--\r\n"
			r.headers = [][2]string{{"Content-Type", "multipart/form-data; boundary=" + b}}
		}),
		lh("no Content-Type (the bank reads it as a form)", "refuse", func(_ varCtx, r *rawReq) { r.headers = nil }),
		lh("text/plain carrying the form", "refuse", func(_ varCtx, r *rawReq) { r.headers = [][2]string{{"Content-Type", "text/plain"}} }),
		lh("JSON", "refuse", func(v varCtx, r *rawReq) {
			r.headers = [][2]string{{"Content-Type", "application/json"}}
			r.body = fmt.Sprintf(`{"contract_no":%q,"user_id":%q,"password":%q}`, v.u.ContractNo, v.u.UserID, v.u.Password)
		}),
		lh("two media types in one header", "refuse", func(_ varCtx, r *rawReq) {
			r.headers = [][2]string{{"Content-Type", formCT + ", text/plain"}}
		}),
		lh("Content-Type repeated", "refuse", func(_ varCtx, r *rawReq) {
			r.headers = [][2]string{{"Content-Type", formCT}, {"Content-Type", "text/plain"}}
		}),

		// Fields.
		lh("user repeated", "refuse", func(_ varCtx, r *rawReq) { r.body += "&user_id=bob" }),
		lh("user in the query too", "refuse", func(_ varCtx, r *rawReq) { r.target = "/login?user_id=bob" }),
		lh("all fields in the query, empty body", "refuse", func(v varCtx, r *rawReq) { r.target, r.body = "/login?"+loginBody(v.u), "" }),
		lh("case variant of a field name", "refuse", func(_ varCtx, r *rawReq) { r.body += "&USER_ID=bob" }),
		lh("semicolon separator in the body", "refuse", func(_ varCtx, r *rawReq) { r.body += ";user_id=bob" }),
		lh("percent-encoded field names", "challenge", func(v varCtx, r *rawReq) {
			r.body = "contract%5Fno=" + v.u.ContractNo + "&user%5Fid=" + v.u.UserID + "&pass%77ord=" + url.QueryEscape(v.u.Password)
		}),
		lh("over the body limit", "refuse", func(_ varCtx, r *rawReq) { r.body += "&pad=" + strings.Repeat("x", 17<<10) }),

		// Framing.
		lh("chunked", "challenge", func(_ varCtx, r *rawReq) { r.chunked = true }),
		lh("Expect: 100-continue", "challenge", func(_ varCtx, r *rawReq) { r.expect100 = true }),
		lh("chunked with Expect: 100-continue", "challenge", func(_ varCtx, r *rawReq) { r.chunked, r.expect100 = true, true }),
		// Go's server reads the chunked framing and ignores Content-Length (RFC 9112
		// 6.3); the gate buffers that body and forwards it re-framed, so no smuggling.
		lh("Content-Length and chunked together", "challenge", func(v varCtx, r *rawReq) {
			r.chunked, r.contentLength = true, "5"
		}),
		lh("Content-Length longer than the body", "refuse", func(_ varCtx, r *rawReq) { r.contentLength = fmt.Sprint(len(r.body) + 50) }),

		// Hosts.
		lh("Host in upper case", "challenge", func(_ varCtx, r *rawReq) { r.host = "BANK.EXAMPLE" }),
		lh("Host with a trailing dot", "challenge", func(_ varCtx, r *rawReq) { r.host = "bank.example." }),
		lh("Host with a port", "challenge", func(_ varCtx, r *rawReq) { r.host = "bank.example:443" }),
		lh("Host localhost", "challenge", func(_ varCtx, r *rawReq) { r.host = "localhost" }),
		lh("Host no rule lists", "refuse", func(_ varCtx, r *rawReq) { r.host = "evil.example" }),
		lh("Host IPv6 loopback", "refuse", func(_ varCtx, r *rawReq) { r.host = "[::1]" }),
		lh("Host repeated", "refuse", func(_ varCtx, r *rawReq) {
			r.host = "bank.example"
			r.headers = append(r.headers, [2]string{"Host", "evil.example"})
		}),
		lh("absolute-form target with another Host header", "challenge", func(_ varCtx, r *rawReq) {
			r.target, r.host = "http://bank.example/login", "evil.example"
		}),

		// Transfers (user from the learned session).
		th("transfer as written", "challenge", func(varCtx, *rawReq) {}),
		th("transfer upper case", "challenge", func(_ varCtx, r *rawReq) { r.target = "/TRANSFER" }),
		th("transfer trailing slash and parameter", "challenge", func(_ varCtx, r *rawReq) { r.target = "/transfer/;jsessionid=9" }),
		th("transfer encoded letter and double slash", "challenge", func(_ varCtx, r *rawReq) { r.target = "//%74ransfer" }),
		th("transfer PUT with override", "challenge", overridden("PUT", "X-HTTP-Method-Override", "POST")),
		th("transfer GET with _method and a body", "challenge", func(_ varCtx, r *rawReq) { r.method, r.target = "GET", "/transfer?_method=post" }),
		th("transfer PATCH", "refuse", func(_ varCtx, r *rawReq) { r.method = "PATCH" }),
		th("transfer JSON", "challenge", func(v varCtx, r *rawReq) {
			r.headers = withSession(v, [2]string{"Content-Type", "application/json; charset=utf-8"})
			r.body = fmt.Sprintf(`{"payee_account":"7777777","amount":990000,"txn_password":%q}`, v.u.TxnPassword)
		}),
		th("transfer JSON with a repeated key", "refuse", func(v varCtx, r *rawReq) {
			r.headers = withSession(v, [2]string{"Content-Type", "application/json"})
			r.body = `{"payee_account":"7777777","amount":"1","amount":"990000"}`
		}),
		th("transfer JSON with a case-variant key", "refuse", func(v varCtx, r *rawReq) {
			r.headers = withSession(v, [2]string{"Content-Type", "application/json"})
			r.body = `{"payee_account":"7777777","amount":"1","Amount":"990000"}`
		}),
		th("transfer JSON amount as an array", "refuse", func(v varCtx, r *rawReq) {
			r.headers = withSession(v, [2]string{"Content-Type", "application/json"})
			r.body = `{"payee_account":"7777777","amount":["1"]}`
		}),
		th("transfer amount in query and body", "refuse", func(_ varCtx, r *rawReq) { r.target = "/transfer?amount=1" }),
		th("transfer text/plain", "refuse", func(v varCtx, r *rawReq) { r.headers = withSession(v, [2]string{"Content-Type", "text/plain"}) }),
		th("transfer chunked", "challenge", func(_ varCtx, r *rawReq) { r.chunked = true }),
		th("transfer Expect: 100-continue", "challenge", func(_ varCtx, r *rawReq) { r.expect100 = true }),
		th("transfer multipart", "challenge", func(v varCtx, r *rawReq) {
			body, ct := multipartBody([][2]string{{"payee_account", "7777777"}, {"amount", "990000"}, {"txn_password", v.u.TxnPassword}}, "")
			r.body, r.headers = body, withSession(v, [2]string{"Content-Type", ct})
		}),
		th("transfer with two session cookies", "refuse", func(v varCtx, r *rawReq) {
			r.headers = [][2]string{{"Content-Type", formCT}, {"Cookie", bank.SessionCookieName + "=" + v.sess + "; " + bank.SessionCookieName + "=other"}}
		}),
		th("transfer without a session", "refuse", func(_ varCtx, r *rawReq) { r.headers = formHdr() }),
		th("transfer with an unknown session", "refuse", func(_ varCtx, r *rawReq) {
			r.headers = [][2]string{{"Content-Type", formCT}, {"Cookie", bank.SessionCookieName + "=forged"}}
		}),
		th("transfer to a path under the prefix", "challenge", func(_ varCtx, r *rawReq) { r.target = "/transfer/confirm" }),
		th("transfer Host no rule lists", "refuse", func(_ varCtx, r *rawReq) { r.host = "evil.example" }),

		// HTTP/2 (h2c).
		lh("h2 login", "challenge", func(_ varCtx, r *rawReq) { r.h2 = true }),
		lh("h2 upper case", "challenge", func(_ varCtx, r *rawReq) { r.h2, r.target = true, "/LOGIN" }),
		lh("h2 path parameter", "challenge", func(_ varCtx, r *rawReq) { r.h2, r.target = true, "/login;jsessionid=1" }),
		lh("h2 PUT with override", "challenge", func(_ varCtx, r *rawReq) {
			r.h2, r.method = true, "PUT"
			r.headers = append(r.headers, [2]string{"X-HTTP-Method-Override", "POST"})
		}),
		lh("h2 no Content-Type", "refuse", func(_ varCtx, r *rawReq) { r.h2, r.headers = true, nil }),
		lh("h2 authority no rule lists", "refuse", func(_ varCtx, r *rawReq) { r.h2, r.host = true, "evil.example" }),
		th("h2 transfer", "challenge", func(_ varCtx, r *rawReq) { r.h2 = true }),
		th("h2 transfer PATCH", "refuse", func(_ varCtx, r *rawReq) { r.h2, r.method = true, "PATCH" }),
	}
	// Two variants are left to time out on the phone instead of being denied.
	for i := range vs {
		if vs[i].name == "upper case" || vs[i].name == "transfer chunked" {
			vs[i].expire = true
		}
	}
	return vs
}

// sendRaw writes r on a fresh connection and returns the final response's status.
func sendRaw(addr string, r rawReq) (int, string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\n", r.method, r.target)
	switch r.host {
	case "":
		fmt.Fprintf(&head, "Host: %s\r\n", addr)
	case "-":
	default:
		fmt.Fprintf(&head, "Host: %s\r\n", r.host)
	}
	for _, h := range r.headers {
		fmt.Fprintf(&head, "%s: %s\r\n", h[0], h[1])
	}
	if r.chunked {
		head.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if r.contentLength != "" {
		fmt.Fprintf(&head, "Content-Length: %s\r\n", r.contentLength)
	} else if !r.chunked {
		fmt.Fprintf(&head, "Content-Length: %d\r\n", len(r.body))
	}
	if r.expect100 {
		head.WriteString("Expect: 100-continue\r\n")
	}
	head.WriteString("Connection: close\r\n\r\n")
	body := r.body
	if r.chunked {
		var b strings.Builder
		for s := body; len(s) > 0; {
			n := min(len(s), 7)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, s[:n])
			s = s[n:]
		}
		b.WriteString("0\r\n\r\n")
		body = b.String()
	}
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, head.String()); err != nil {
		return 0, "", err
	}
	if r.expect100 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, "", fmt.Errorf("waiting for 100 Continue: %w", err)
		}
		if resp.StatusCode != http.StatusContinue {
			data, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(data), nil
		}
	}
	if _, err := io.WriteString(conn, body); err != nil {
		return 0, "", err
	}
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, "", err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 200 {
			return resp.StatusCode, string(data), nil
		}
	}
}

func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func sendH2(client *http.Client, addr string, r rawReq) (int, string, error) {
	req, err := http.NewRequest(r.method, "http://"+addr+r.target, strings.NewReader(r.body))
	if err != nil {
		return 0, "", err
	}
	if r.host != "" {
		req.Host = r.host
	}
	for _, h := range r.headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		return 0, "", fmt.Errorf("answered over %s, want HTTP/2", resp.Proto)
	}
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), nil
}

// bypassSetup is one Caddy with enrolled users, shared by the subtests.
type bypassSetup struct {
	e     *env
	g     *gateway
	rec   *bankRecorder
	users []*vuser
	next  int
	login *vuser
	xfer  *vuser
}

// pushBudget keeps each user within the engine's per-user push rate (5 a minute).
const pushBudget = 5

func (s *bypassSetup) user(t *testing.T, kind string) *vuser {
	t.Helper()
	cur := &s.login
	if kind == "transfer" {
		cur = &s.xfer
	}
	if *cur == nil || (*cur).pushes >= pushBudget {
		if s.next >= len(s.users) {
			t.Fatal("ran out of enrolled users for the push budget")
		}
		*cur = s.users[s.next]
		s.next++
		if kind == "transfer" {
			s.approveLogin(t, *cur)
		}
	}
	return *cur
}

// approveLogin logs u in with the phone's approval and keeps the session cookie.
func (s *bypassSetup) approveLogin(t *testing.T, u *vuser) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := newBrowser().postAsync(ctx, s.g.URL+"/login", loginBody(u.u))
	ch := waitChallenge(t, u.phone)
	if st, err := u.phone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
		t.Fatalf("approve login of %s: %d %v", u.u.UserID, st, err)
	}
	r := <-res
	if r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approved login of %s: %v %v", u.u.UserID, r.err, r.resp)
	}
	for _, c := range r.resp.Cookies() {
		if c.Name == bank.SessionCookieName {
			u.session = c.Value
		}
	}
	if u.session == "" {
		t.Fatalf("no session cookie for %s", u.u.UserID)
	}
	u.pushes++
	// The approved login is the control: the bank did see it.
	if logins := opsOf(s.e.ops(t), bank.OpLogin); len(logins) != 1 {
		t.Fatalf("approved login: bank logins %+v, want 1", logins)
	}
	s.e.resetOps(t)
	s.rec.take()
}

func newBypassSetup(t *testing.T, servers string) *bypassSetup {
	t.Helper()
	const n = 18 // the device API registers 20 credentials per address at once
	e, rec := newBankEnv(t, extraUsers(n), bypassPolicy)
	g := e.startCustomGateway(servers, "\t\tmax_failures 1000000\n\t\tbody_read_timeout 1s")
	s := &bypassSetup{e: e, g: g, rec: rec}
	all := extraUsers(n)[3:]
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for _, u := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := device.New(g.URL + "/onepush/device/v1")
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err = p.Register(ctx, "none", "")
				cancel()
			}
			if err != nil {
				errs <- err.Error()
				return
			}
			enrollQuiet(g, u, p, errs)
			mu.Lock()
			s.users = append(s.users, &vuser{u: u, phone: p})
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Fatal(msg)
	}
	e.resetOps(t)
	rec.take()
	return s
}

// enrollQuiet is enroll for use from goroutines: it reports instead of failing.
func enrollQuiet(g *gateway, u bank.User, phone *device.Phone, errs chan<- string) {
	b := newBrowser()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, _, err := b.post(ctx, g.URL+"/login", loginBody(u))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		errs <- fmt.Sprintf("login of %s before enrolment: %v %v", u.UserID, err, resp)
		return
	}
	status, body, err := phone.Enrol(ctx, b.Client, g.URL+"/onepush/enroll", nil)
	if err != nil || status != http.StatusOK {
		errs <- fmt.Sprintf("enrolment of %s: %v %d %.200s", u.UserID, err, status, body)
	}
}

func TestBypassVariantsNeverReachTheBankUnapproved(t *testing.T) {
	s := newBypassSetup(t, "\t\tprotocols h1 h2 h2c\n\t\ttrusted_proxies static 192.0.2.0/24\n\t\tclient_ip_headers X-Forwarded-For")
	addr := strings.TrimPrefix(s.g.URL, "http://")
	h2 := h2cClient()
	variants := bypassVariants()
	if len(variants) < 60 {
		t.Fatalf("only %d variants", len(variants))
	}
	var challenged, refused int
	for _, v := range variants {
		u := s.user(t, v.kind)
		req := v.build(varCtx{addr: addr, u: u.u, sess: u.session})
		outcome, status := s.try(t, v, u, req, h2, addr)
		if outcome == "challenge" {
			u.pushes++
			challenged++
		} else {
			refused++
		}
		if outcome != v.want {
			t.Errorf("%s: %s (status %d), want %s", v.name, outcome, status, v.want)
		}
		if seen := s.rec.take(); len(seen) != 0 {
			t.Errorf("%s: the bank received %q", v.name, seen)
		}
		if ops := s.e.ops(t); len(ops) != 0 {
			t.Errorf("%s: bank executed %+v", v.name, ops)
			s.e.resetOps(t)
		}
	}
	t.Logf("%d variants: %d challenged then denied or timed out, %d refused; the bank executed none", len(variants), challenged, refused)

	t.Run("inbound X-Onepush headers never reach the bank", func(t *testing.T) {
		s.rec.takeOnepushHeaders()
		for _, target := range []string{"/static/style.css", "/dashboard"} {
			status, _, err := sendRaw(addr, rawReq{method: "GET", target: target, headers: [][2]string{
				{"X-Onepush-Verified", "push"}, {"x-onepush-challenge", "forged"}, {"X-ONEPUSH-USER", "1001/alice"}}})
			if err != nil || status >= 500 {
				t.Fatalf("GET %s: %d %v", target, status, err)
			}
		}
		if got := s.rec.takeOnepushHeaders(); len(got) != 0 {
			t.Fatalf("the bank received spoofed headers %q", got)
		}
	})

	t.Run("client IP ignores X-Forwarded-For from an untrusted peer", func(t *testing.T) {
		u := s.user(t, "login")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", s.g.URL+"/login", strings.NewReader(loginBody(u.u)))
		req.Header.Set("Content-Type", formCT)
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		req.Header.Set("X-Real-IP", "203.0.113.9")
		ip := clientIPShown(t, req, u.phone)
		u.pushes++
		if ip != "127.0.0.1" {
			t.Fatalf("challenge shows client IP %q, want the peer 127.0.0.1", ip)
		}
	})

	t.Run("control: a trusted proxy's X-Forwarded-For is honoured", func(t *testing.T) {
		// Proves the check above can fail: with the peer trusted, the header wins.
		e, _ := newBankEnv(t, bank.DefaultUsers(), bypassPolicy)
		g := e.startCustomGateway("\t\ttrusted_proxies static 127.0.0.1/32\n\t\tclient_ip_headers X-Forwarded-For", "")
		phone := newPhone(t, g)
		enroll(t, g, alice, phone)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", g.URL+"/login", strings.NewReader(loginBody(alice)))
		req.Header.Set("Content-Type", formCT)
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		if ip := clientIPShown(t, req, phone); ip != "203.0.113.9" {
			t.Fatalf("behind a trusted proxy the challenge shows %q, want 203.0.113.9", ip)
		}
	})

	t.Run("slowloris body is cut off and nothing is forwarded", func(t *testing.T) {
		u := s.user(t, "login")
		body := loginBody(u.u)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /login HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", addr, formCT, len(body))
		start := time.Now()
		answered := make(chan int, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				answered <- 0
				return
			}
			answered <- resp.StatusCode
		}()
		status := -1
	dribble:
		for i := 0; i < len(body)-1; i++ {
			select {
			case status = <-answered:
				break dribble
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				break
			}
		}
		if status == -1 {
			select {
			case status = <-answered:
			case <-time.After(10 * time.Second):
				t.Fatal("no answer 10s after the body stalled")
			}
		}
		took := time.Since(start)
		t.Logf("slow body answered with %d (0 = connection closed) after %s; body_read_timeout is 1s", status, took.Round(time.Millisecond))
		if status != 0 && status != http.StatusBadRequest && status != http.StatusRequestTimeout {
			t.Fatalf("slow body answered %d, want 400/408 or a closed connection", status)
		}
		if took > 5*time.Second {
			t.Fatalf("slow body held the connection for %s with a 1s body read timeout", took)
		}
		if seen := s.rec.take(); len(seen) != 0 {
			t.Fatalf("bank received %q from a slow sender", seen)
		}
		if p, _ := u.phone.Pending(context.Background()); len(p) != 0 {
			t.Fatal("a slow sender's incomplete post created a challenge")
		}
	})
}

// clientIPShown sends req, reads the client IP from the challenge the phone gets, denies.
func clientIPShown(t *testing.T, req *http.Request, phone *device.Phone) string {
	t.Helper()
	res := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		res <- err
	}()
	ch := waitChallenge(t, phone)
	if st, err := phone.Decide(req.Context(), ch, device.Deny, 0); err != nil || st != http.StatusOK {
		t.Fatalf("deny: %d %v", st, err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	return ch.Parsed.ClientIP
}

// try sends one variant and reports whether it was challenged or refused.
func (s *bypassSetup) try(t *testing.T, v bypassVariant, u *vuser, req rawReq, h2 *http.Client, addr string) (string, int) {
	t.Helper()
	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		var a answer
		if req.h2 {
			a.status, a.body, a.err = sendH2(h2, addr, req)
		} else {
			a.status, a.body, a.err = sendRaw(addr, req)
		}
		done <- a
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		select {
		case a := <-done:
			if a.err != nil {
				t.Errorf("%s: %v", v.name, a.err)
				return "error", 0
			}
			if a.status < 400 {
				t.Errorf("%s: answered %d without a challenge: %.200q", v.name, a.status, a.body)
				return "passed", a.status
			}
			return "refuse", a.status
		case <-time.After(20 * time.Millisecond):
		}
		pending, err := u.phone.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 {
			continue
		}
		ch := pending[0]
		// Held: the bank has seen nothing so far.
		if seen := s.rec.take(); len(seen) != 0 {
			t.Errorf("%s: the bank received %q while the request was held", v.name, seen)
		}
		want := http.StatusForbidden
		if v.expire {
			want = http.StatusRequestTimeout
		} else if st, err := u.phone.Decide(ctx, &ch, device.Deny, 0); err != nil || st != http.StatusOK {
			t.Fatalf("%s: deny: %d %v", v.name, st, err)
		}
		select {
		case a := <-done:
			if a.err != nil || a.status != want {
				t.Errorf("%s: after the phone's answer got %d %v, want %d", v.name, a.status, a.err, want)
			}
			return "challenge", a.status
		case <-ctx.Done():
			t.Fatalf("%s: no answer after the challenge ended", v.name)
		}
	}
}
