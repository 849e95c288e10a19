package bank

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth/pushauthtest"
)

const formCT = "application/x-www-form-urlencoded"

func newTestBank(t *testing.T) (*Bank, *pushauthtest.Clock) {
	t.Helper()
	clk := pushauthtest.NewClock(time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC))
	return New(Config{Users: DefaultUsers(), Now: clk.Now}), clk
}

// do sends one request to the handler in-process.
func do(b *Bank, method, path, contentType, body string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, req)
	return rec
}

func sessionCookie(rec *httptest.ResponseRecorder) *http.Cookie {
	for _, c := range rec.Result().Cookies() {
		if c.Name == SessionCookieName {
			return c
		}
	}
	return nil
}

// login logs in as alice and returns the session cookie.
func login(t *testing.T, b *Bank) *http.Cookie {
	t.Helper()
	rec := do(b, "POST", "/login", formCT, "contract_no=1001&user_id=alice&password=alice-pass-1")
	c := sessionCookie(rec)
	if rec.Code != http.StatusSeeOther || c == nil || c.Value == "" {
		t.Fatalf("login: status %d cookie %v", rec.Code, c)
	}
	return c
}

func lastOp(t *testing.T, b *Bank) Op {
	t.Helper()
	ops := b.OpsLog()
	if len(ops) == 0 {
		t.Fatal("ops log is empty")
	}
	return ops[len(ops)-1]
}

func multipartBody(t *testing.T, fields [][2]string) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.String()
}

func TestLogin(t *testing.T) {
	mpCT, mpBody := multipartBody(t, [][2]string{{"contract_no", "1001"}, {"user_id", "bob"}, {"password", "bob-pass-1"}})
	tests := []struct {
		name       string
		ct, body   string
		wantOK     bool
		wantUser   string
		wantReason string
	}{
		{name: "urlencoded success", ct: formCT, body: "contract_no=1001&user_id=alice&password=alice-pass-1", wantOK: true, wantUser: "alice"},
		// Odd but valid encoding: field order, percent-escapes, extra field, charset param.
		{name: "urlencoded escaped", ct: formCT + "; charset=UTF-8", body: "user_id=carol&extra=%E3%81%82+x&password=carol%2Dpass%2D1&contract_no=2002", wantOK: true, wantUser: "carol"},
		{name: "no content type", ct: "", body: "contract_no=1001&user_id=alice&password=alice-pass-1", wantOK: true, wantUser: "alice"},
		{name: "multipart success", ct: mpCT, body: mpBody, wantOK: true, wantUser: "bob"},
		{name: "wrong password", ct: formCT, body: "contract_no=1001&user_id=alice&password=nope", wantUser: "alice", wantReason: "bad_password"},
		{name: "wrong contract", ct: formCT, body: "contract_no=2002&user_id=alice&password=alice-pass-1", wantUser: "alice", wantReason: "unknown_user"},
		{name: "unknown user", ct: formCT, body: "contract_no=1001&user_id=mallory&password=x", wantUser: "mallory", wantReason: "unknown_user"},
		{name: "empty body", ct: formCT, body: "", wantReason: "unknown_user"},
		{name: "other user's password", ct: formCT, body: "contract_no=1001&user_id=alice&password=bob-pass-1", wantUser: "alice", wantReason: "bad_password"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, clk := newTestBank(t)
			rec := do(b, "POST", "/login", tc.ct, tc.body)
			c := sessionCookie(rec)
			op := lastOp(t, b)
			if len(b.OpsLog()) != 1 {
				t.Fatalf("want exactly 1 op, got %d", len(b.OpsLog()))
			}
			if op.Body != tc.body {
				t.Errorf("op body = %q, want exact %q", op.Body, tc.body)
			}
			if op.Method != "POST" || op.Path != "/login" || op.ContentType != tc.ct {
				t.Errorf("op method/path/ct = %q %q %q", op.Method, op.Path, op.ContentType)
			}
			if op.UserID != tc.wantUser || op.Seq != 1 || !op.Time.Equal(clk.Now()) {
				t.Errorf("op = %+v", op)
			}
			if tc.wantOK {
				if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/dashboard" {
					t.Fatalf("status %d location %q", rec.Code, rec.Header().Get("Location"))
				}
				if c == nil || len(c.Value) < 16 {
					t.Fatalf("session cookie = %v", c)
				}
				if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
					t.Errorf("cookie attributes: %+v", c)
				}
				raw := rec.Header().Get("Set-Cookie")
				for _, attr := range []string{"Path=/", "HttpOnly", "SameSite=Lax"} {
					if !strings.Contains(raw, attr) {
						t.Errorf("Set-Cookie %q lacks %s", raw, attr)
					}
				}
				if op.Op != OpLogin || op.Session != c.Value[:8] || op.Reason != "" {
					t.Errorf("op = %+v, want login with session %q", op, c.Value[:8])
				}
				if b.SessionCount() != 1 {
					t.Errorf("sessions = %d", b.SessionCount())
				}
			} else {
				if rec.Code != http.StatusOK {
					t.Fatalf("status = %d, want 200", rec.Code)
				}
				if c != nil || rec.Header().Get("Set-Cookie") != "" {
					t.Errorf("failed login set a cookie: %q", rec.Header().Get("Set-Cookie"))
				}
				if !strings.Contains(rec.Body.String(), "Login failed") {
					t.Errorf("page lacks 'Login failed'")
				}
				if op.Op != OpLoginFailed || op.Session != "" || op.Reason != tc.wantReason {
					t.Errorf("op = %+v, want login_failed/%s", op, tc.wantReason)
				}
				if b.SessionCount() != 0 {
					t.Errorf("sessions = %d", b.SessionCount())
				}
			}
		})
	}
}

func TestLoginReplacesPreviousSession(t *testing.T) {
	b, _ := newTestBank(t)
	old := login(t, b)
	rec := do(b, "POST", "/login", formCT, "contract_no=1001&user_id=alice&password=alice-pass-1", old)
	nc := sessionCookie(rec)
	if nc == nil || nc.Value == old.Value {
		t.Fatalf("new login must issue a fresh session id")
	}
	if got := do(b, "GET", "/dashboard", "", "", old); got.Code != http.StatusSeeOther {
		t.Errorf("old session still valid: %d", got.Code)
	}
	if b.SessionCount() != 1 {
		t.Errorf("sessions = %d, want 1", b.SessionCount())
	}
}

func TestPagesAndSessionGate(t *testing.T) {
	b, _ := newTestBank(t)
	c := login(t, b)
	stale := &http.Cookie{Name: SessionCookieName, Value: "not-a-session"}
	tests := []struct {
		path       string
		cookie     *http.Cookie
		wantStatus int
		wantLoc    string
		wantBody   []string
	}{
		{"/", nil, 200, "", []string{`action="/login"`, `name="contract_no"`, `name="user_id"`, `name="password"`, `href="/static/style.css"`, `src="/static/logo.svg"`}},
		{"/login", nil, 200, "", []string{`method="post" action="/login"`}},
		{"/dashboard", nil, 303, "/login", nil},
		{"/dashboard", stale, 303, "/login", nil},
		{"/dashboard", c, 200, "", []string{"Welcome, Alice Tanaka", `href="/transfer"`, `action="/logout"`}},
		{"/transfer", nil, 303, "/login", nil},
		{"/transfer", c, 200, "", []string{`action="/transfer"`, `name="payee_account"`, `name="amount"`, `name="txn_password"`}},
		{"/account", nil, 401, "", []string{"not logged in"}},
		{"/nope", nil, 404, "", nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s cookie=%v", tc.path, tc.cookie != nil), func(t *testing.T) {
			var cs []*http.Cookie
			if tc.cookie != nil {
				cs = append(cs, tc.cookie)
			}
			rec := do(b, "GET", tc.path, "", "", cs...)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tc.wantStatus)
			}
			if got := rec.Header().Get("Location"); got != tc.wantLoc {
				t.Errorf("Location = %q, want %q", got, tc.wantLoc)
			}
			for _, s := range tc.wantBody {
				if !strings.Contains(rec.Body.String(), s) {
					t.Errorf("body lacks %q", s)
				}
			}
		})
	}
	// Page views are not operations.
	if n := len(b.OpsLog()); n != 1 {
		t.Errorf("ops = %d, want 1 (the login)", n)
	}
}

func TestTransfer(t *testing.T) {
	tests := []struct {
		name       string
		noSession  bool
		body       string
		wantStatus int
		wantOp     string
		wantReason string
		wantBody   string
	}{
		{name: "success", body: "payee_account=123-4567&amount=5000&txn_password=alice-txn-1", wantStatus: 200, wantOp: OpTransfer, wantBody: "Transfer of 5000 JPY to 123-4567 accepted"},
		{name: "no session", noSession: true, body: "payee_account=123-4567&amount=5000&txn_password=alice-txn-1", wantStatus: 401, wantOp: OpTransferRefused, wantReason: "no_session", wantBody: "not executed"},
		{name: "wrong txn password", body: "payee_account=123-4567&amount=5000&txn_password=alice-pass-1", wantStatus: 200, wantOp: OpTransferRefused, wantReason: "bad_txn_password", wantBody: "Transaction password incorrect"},
		{name: "missing txn password", body: "payee_account=123-4567&amount=5000", wantStatus: 200, wantOp: OpTransferRefused, wantReason: "bad_txn_password", wantBody: "Transaction password incorrect"},
		{name: "zero amount", body: "payee_account=1&amount=0&txn_password=alice-txn-1", wantStatus: 400, wantOp: OpTransferRefused, wantReason: "invalid_amount"},
		{name: "negative amount", body: "payee_account=1&amount=-5&txn_password=alice-txn-1", wantStatus: 400, wantOp: OpTransferRefused, wantReason: "invalid_amount"},
		{name: "plus sign", body: "payee_account=1&amount=%2B5&txn_password=alice-txn-1", wantStatus: 400, wantOp: OpTransferRefused, wantReason: "invalid_amount"},
		{name: "decimal amount", body: "payee_account=1&amount=1.5&txn_password=alice-txn-1", wantStatus: 400, wantOp: OpTransferRefused, wantReason: "invalid_amount"},
		{name: "text amount", body: "payee_account=1&amount=abc&txn_password=alice-txn-1", wantStatus: 400, wantOp: OpTransferRefused, wantReason: "invalid_amount"},
		{name: "empty amount", body: "payee_account=1&amount=&txn_password=alice-txn-1", wantStatus: 400, wantOp: OpTransferRefused, wantReason: "invalid_amount"},
		{name: "huge amount", body: "payee_account=1&amount=99999999999999999999&txn_password=alice-txn-1", wantStatus: 400, wantOp: OpTransferRefused, wantReason: "invalid_amount"},
		{name: "missing payee", body: "amount=10&txn_password=alice-txn-1", wantStatus: 400, wantOp: OpTransferRefused, wantReason: "missing_payee"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := newTestBank(t)
			c := login(t, b)
			b.ResetOps()
			var cs []*http.Cookie
			if !tc.noSession {
				cs = append(cs, c)
			}
			rec := do(b, "POST", "/transfer", formCT, tc.body, cs...)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body:\n%s", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantBody != "" && !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("body lacks %q:\n%s", tc.wantBody, rec.Body)
			}
			ops := b.OpsLog()
			if len(ops) != 1 {
				t.Fatalf("ops = %+v, want exactly one", ops)
			}
			op := ops[0]
			if op.Op != tc.wantOp || op.Reason != tc.wantReason || op.Body != tc.body || op.Path != "/transfer" {
				t.Errorf("op = %+v", op)
			}
			if tc.noSession {
				if op.UserID != "" || op.Session != "" {
					t.Errorf("refused op without session names a user: %+v", op)
				}
			} else if op.UserID != "alice" || op.ContractNo != "1001" || op.Session != c.Value[:8] {
				t.Errorf("op user/session = %+v", op)
			}
			executed := 0
			for _, o := range ops {
				if o.Op == OpTransfer {
					executed++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.wantOp == OpTransfer]; executed != want {
				t.Errorf("executed transfers = %d, want %d", executed, want)
			}
			if tc.wantOp == OpTransfer {
				if op.Reference == "" || !strings.Contains(rec.Body.String(), op.Reference) {
					t.Errorf("reference %q not shown on confirmation", op.Reference)
				}
				if op.Amount != "5000" || op.PayeeAccount != "123-4567" {
					t.Errorf("op amount/payee = %q %q", op.Amount, op.PayeeAccount)
				}
			}
		})
	}
}

func TestTransferMultipartAndAccount(t *testing.T) {
	b, _ := newTestBank(t)
	c := login(t, b)
	ct, body := multipartBody(t, [][2]string{{"payee_account", "999-0001"}, {"amount", "120"}, {"txn_password", "alice-txn-1"}})
	rec := do(b, "POST", "/transfer", ct, body, c)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "Transfer of 120 JPY to 999-0001 accepted") {
		t.Fatalf("status %d body:\n%s", rec.Code, rec.Body)
	}
	op := lastOp(t, b)
	if op.Op != OpTransfer || op.Body != body || op.ContentType != ct {
		t.Errorf("op = %+v", op)
	}

	rec = do(b, "GET", "/account", "", "", c)
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("account: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var acct struct {
		ContractNo string `json:"contract_no"`
		UserID     string `json:"user_id"`
		Name       string `json:"name"`
		Transfers  []struct {
			Reference    string `json:"reference"`
			PayeeAccount string `json:"payee_account"`
			Amount       int64  `json:"amount"`
		} `json:"transfers"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &acct); err != nil {
		t.Fatal(err)
	}
	if acct.ContractNo != "1001" || acct.UserID != "alice" || acct.Name != "Alice Tanaka" ||
		len(acct.Transfers) != 1 || acct.Transfers[0].Amount != 120 || acct.Transfers[0].Reference != op.Reference {
		t.Errorf("account = %+v", acct)
	}
}

func TestLogout(t *testing.T) {
	for _, method := range []string{"POST", "GET"} {
		t.Run(method, func(t *testing.T) {
			b, _ := newTestBank(t)
			c := login(t, b)
			rec := do(b, method, "/logout", "", "", c)
			if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login" {
				t.Fatalf("logout: %d %q", rec.Code, rec.Header().Get("Location"))
			}
			cleared := sessionCookie(rec)
			if cleared == nil || cleared.Value != "" || cleared.MaxAge >= 0 {
				t.Errorf("cookie not cleared: %+v", cleared)
			}
			op := lastOp(t, b)
			if op.Op != OpLogout || op.UserID != "alice" || op.Session != c.Value[:8] || op.Method != method {
				t.Errorf("op = %+v", op)
			}
			if b.SessionCount() != 0 {
				t.Errorf("session survived logout")
			}
			// Replaying the old cookie must not work anywhere.
			if rec := do(b, "GET", "/dashboard", "", "", c); rec.Code != http.StatusSeeOther {
				t.Errorf("dashboard after logout: %d", rec.Code)
			}
			rec = do(b, "POST", "/transfer", formCT, "payee_account=1&amount=1&txn_password=alice-txn-1", c)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("transfer after logout: %d", rec.Code)
			}
			// A second logout has no session to delete and is not logged.
			n := len(b.OpsLog())
			do(b, method, "/logout", "", "", c)
			if len(b.OpsLog()) != n {
				t.Errorf("logout without a session was logged")
			}
		})
	}
}

func TestOpsLogJSON(t *testing.T) {
	b, _ := newTestBank(t)
	c := login(t, b)
	do(b, "POST", "/transfer", formCT, "payee_account=1-2&amount=7&txn_password=alice-txn-1", c)

	rec := do(b, "GET", "/ops/log", "", "")
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("ops/log: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var top map[string][]map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	if len(top) != 1 || len(top["ops"]) != 2 {
		t.Fatalf("shape = %s", rec.Body)
	}
	wantKeys := []string{"seq", "time", "op", "contract_no", "user_id", "payee_account", "amount", "session", "method", "path", "content_type", "body"}
	for i, o := range top["ops"] {
		for _, k := range wantKeys {
			if _, ok := o[k]; !ok {
				t.Errorf("ops[%d] lacks key %q: %v", i, k, o)
			}
		}
		if o["seq"] != float64(i+1) {
			t.Errorf("ops[%d].seq = %v", i, o["seq"])
		}
	}
	if top["ops"][0]["op"] != "login" || top["ops"][1]["op"] != "transfer" ||
		top["ops"][1]["body"] != "payee_account=1-2&amount=7&txn_password=alice-txn-1" ||
		top["ops"][1]["time"] != "2025-04-01T09:00:00Z" {
		t.Errorf("ops = %v", top["ops"])
	}

	// Decodes back into []Op.
	var typed struct{ Ops []Op }
	if err := json.Unmarshal(rec.Body.Bytes(), &typed); err != nil || len(typed.Ops) != 2 || typed.Ops[1].Amount != "7" {
		t.Errorf("typed decode: %v %+v", err, typed)
	}

	// Reset empties the log; an empty log is [] not null.
	if rec := do(b, "POST", "/ops/reset", "", ""); rec.Code != 200 {
		t.Fatalf("reset: %d", rec.Code)
	}
	rec = do(b, "GET", "/ops/log", "", "")
	if got := strings.Join(strings.Fields(rec.Body.String()), ""); got != `{"ops":[]}` {
		t.Errorf("after reset: %s", got)
	}
	if rec := do(b, "GET", "/ops/reset", "", ""); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /ops/reset: %d", rec.Code)
	}
	// Seq restarts after reset.
	do(b, "POST", "/login", formCT, "contract_no=1&user_id=x&password=y")
	if op := lastOp(t, b); op.Seq != 1 {
		t.Errorf("seq after reset = %d", op.Seq)
	}
}

func TestStaticAssets(t *testing.T) {
	b, _ := newTestBank(t)
	tests := []struct {
		path, ct, contains string
	}{
		{"/static/style.css", "text/css; charset=utf-8", "body {"},
		{"/static/logo.svg", "image/svg+xml", "<svg"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			rec := do(b, "GET", tc.path, "", "")
			if rec.Code != 200 {
				t.Fatalf("status %d", rec.Code)
			}
			if got := rec.Header().Get("Content-Type"); got != tc.ct {
				t.Errorf("Content-Type = %q", got)
			}
			if got := rec.Header().Get("Cache-Control"); !strings.Contains(got, "max-age=") {
				t.Errorf("Cache-Control = %q", got)
			}
			if !strings.Contains(rec.Body.String(), tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
			etag := rec.Header().Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			req := httptest.NewRequest("GET", tc.path, nil)
			req.Header.Set("If-None-Match", etag)
			rec2 := httptest.NewRecorder()
			b.ServeHTTP(rec2, req)
			if rec2.Code != http.StatusNotModified {
				t.Errorf("conditional GET: %d", rec2.Code)
			}
		})
	}
	if len(b.OpsLog()) != 0 {
		t.Errorf("static requests were logged")
	}
}

func TestBodyLimitsAndEncodings(t *testing.T) {
	b, _ := newTestBank(t)
	big := "contract_no=1001&user_id=alice&password=" + strings.Repeat("a", MaxBodyBytes)
	if rec := do(b, "POST", "/login", formCT, big); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize: %d", rec.Code)
	}
	if rec := do(b, "POST", "/login", "application/json", `{"user_id":"alice"}`); rec.Code != http.StatusUnsupportedMediaType {
		t.Errorf("json body: %d", rec.Code)
	}
	if rec := do(b, "POST", "/login", "multipart/form-data", "x"); rec.Code != http.StatusBadRequest {
		t.Errorf("multipart without boundary: %d", rec.Code)
	}
	if rec := do(b, "POST", "/login", formCT, "a=%zz"); rec.Code != http.StatusBadRequest {
		t.Errorf("bad escape: %d", rec.Code)
	}
	if n := len(b.OpsLog()); n != 0 {
		t.Errorf("unparseable requests were logged: %d", n)
	}
	// Exactly at the limit is accepted (and fails as a login, not as a read).
	exact := "contract_no=1001&user_id=alice&password="
	exact += strings.Repeat("a", MaxBodyBytes-len(exact))
	if rec := do(b, "POST", "/login", formCT, exact); rec.Code != 200 || lastOp(t, b).Body != exact {
		t.Errorf("body at limit: %d", rec.Code)
	}
}

func TestSessionIdleExpiry(t *testing.T) {
	b, clk := newTestBank(t)
	c := login(t, b)
	clk.Advance(SessionIdleTimeout - time.Second)
	if rec := do(b, "GET", "/dashboard", "", "", c); rec.Code != 200 {
		t.Fatalf("session expired too early: %d", rec.Code)
	}
	// Activity extended the session.
	clk.Advance(SessionIdleTimeout - time.Second)
	if rec := do(b, "GET", "/dashboard", "", "", c); rec.Code != 200 {
		t.Fatalf("activity did not extend session: %d", rec.Code)
	}
	clk.Advance(SessionIdleTimeout + time.Second)
	if rec := do(b, "GET", "/dashboard", "", "", c); rec.Code != http.StatusSeeOther {
		t.Fatalf("idle session still valid: %d", rec.Code)
	}
	if b.SessionCount() != 0 {
		t.Errorf("expired session kept")
	}
}

func TestSessionCapEvictsLeastRecentlyUsed(t *testing.T) {
	clk := pushauthtest.NewClock(time.Unix(0, 0))
	b := New(Config{Users: DefaultUsers(), Now: clk.Now, MaxSessions: 2})
	s1 := login(t, b)
	clk.Advance(time.Second)
	s2 := login(t, b)
	clk.Advance(time.Second)
	do(b, "GET", "/dashboard", "", "", s1) // s1 now more recent than s2
	s3 := login(t, b)
	if b.SessionCount() != 2 {
		t.Fatalf("sessions = %d", b.SessionCount())
	}
	for _, tc := range []struct {
		name string
		c    *http.Cookie
		want int
	}{{"s1", s1, 200}, {"s2", s2, 303}, {"s3", s3, 200}} {
		if rec := do(b, "GET", "/dashboard", "", "", tc.c); rec.Code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, rec.Code, tc.want)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	b, _ := newTestBank(t)
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/login"}, {"DELETE", "/transfer"}, {"POST", "/dashboard"}, {"POST", "/ops/log"},
	} {
		if rec := do(b, tc.method, tc.path, "", ""); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d", tc.method, tc.path, rec.Code)
		}
	}
}

// TestEndToEnd drives the app over real HTTP with a cookie jar, the way a
// browser (or a proxy in front of the bank) would.
func TestEndToEnd(t *testing.T) {
	b, _ := newTestBank(t)
	srv := httptest.NewServer(b)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}

	resp, err := client.PostForm(srv.URL+"/login", url.Values{"contract_no": {"1001"}, "user_id": {"bob"}, "password": {"bob-pass-1"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/dashboard" || !strings.Contains(string(body), "Welcome, Bob") {
		t.Fatalf("after login: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}

	resp, err = client.PostForm(srv.URL+"/transfer", url.Values{"payee_account": {"555"}, "amount": {"42"}, "txn_password": {"bob-txn-1"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Transfer of 42 JPY to 555 accepted") {
		t.Fatalf("transfer: %d\n%s", resp.StatusCode, body)
	}

	resp, err = client.PostForm(srv.URL+"/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/login" {
		t.Errorf("logout landed on %s", resp.Request.URL)
	}
	u, _ := url.Parse(srv.URL)
	if cs := jar.Cookies(u); len(cs) != 0 {
		t.Errorf("cookie jar still holds %v", cs)
	}

	resp, err = http.Get(srv.URL + "/ops/log")
	if err != nil {
		t.Fatal(err)
	}
	var log struct{ Ops []Op }
	err = json.NewDecoder(resp.Body).Decode(&log)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range log.Ops {
		kinds = append(kinds, o.Op)
	}
	if got := strings.Join(kinds, ","); got != "login,transfer,logout" {
		t.Errorf("ops = %s", got)
	}
	if log.Ops[1].Body != "amount=42&payee_account=555&txn_password=bob-txn-1" {
		t.Errorf("transfer body = %q", log.Ops[1].Body)
	}
}

func TestConcurrentUse(t *testing.T) {
	b, _ := newTestBank(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			rec := do(b, "POST", "/login", formCT, "contract_no=1001&user_id=alice&password=alice-pass-1")
			c := sessionCookie(rec)
			if c == nil {
				t.Error("no cookie")
				return
			}
			do(b, "POST", "/transfer", formCT, fmt.Sprintf("payee_account=%d&amount=%d&txn_password=alice-txn-1", i, i+1), c)
			do(b, "GET", "/ops/log", "", "")
			do(b, "POST", "/logout", "", "", c)
		})
	}
	wg.Wait()
	ops := b.OpsLog()
	if len(ops) != 60 {
		t.Fatalf("ops = %d, want 60", len(ops))
	}
	seen := map[int]bool{}
	for _, o := range ops {
		if seen[o.Seq] {
			t.Errorf("duplicate seq %d", o.Seq)
		}
		seen[o.Seq] = true
	}
	if b.SessionCount() != 0 {
		t.Errorf("sessions left: %d", b.SessionCount())
	}
}

func TestOpsLogBounded(t *testing.T) {
	b, _ := newTestBank(t)
	for range MaxOps + 5 {
		do(b, "POST", "/login", formCT, "contract_no=1&user_id=x&password=y")
	}
	ops := b.OpsLog()
	if len(ops) != MaxOps || ops[0].Seq != 6 || ops[len(ops)-1].Seq != MaxOps+5 {
		t.Errorf("len %d first %d last %d", len(ops), ops[0].Seq, ops[len(ops)-1].Seq)
	}
}

// TestCookieOnFailedLogin: the quirk sets a session cookie on a failed
// login, and that cookie opens nothing.
func TestCookieOnFailedLogin(t *testing.T) {
	b := New(Config{Users: DefaultUsers(), CookieOnFailedLogin: true})
	rec := do(b, http.MethodPost, "/login", formCT, "contract_no=1001&user_id=alice&password=wrong")
	c := sessionCookie(rec)
	if rec.Code != http.StatusOK || c == nil || c.Value == "" || !strings.Contains(rec.Body.String(), "Login failed") {
		t.Fatalf("failed login: %d, cookie %v", rec.Code, c)
	}
	if op := lastOp(t, b); op.Op != OpLoginFailed {
		t.Fatalf("op = %+v, want login_failed", op)
	}
	if rec := do(b, http.MethodGet, "/dashboard", "", "", c); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login" {
		t.Fatalf("dashboard with the failed login's cookie: %d %s", rec.Code, rec.Header().Get("Location"))
	}
	rec = do(b, http.MethodPost, "/transfer", formCT, "payee_account=7777777&amount=100&txn_password=alice-txn-1", c)
	if op := lastOp(t, b); rec.Code != http.StatusUnauthorized || op.Op != OpTransferRefused || op.Reason != "no_session" {
		t.Fatalf("transfer with the failed login's cookie: %d %+v", rec.Code, op)
	}
}

// TestKeepSessionIDAtLogin: a bank that does not rotate its session at login
// gives the session the browser has to whoever logs in on it, without a new
// cookie; a login without a session still gets one.
func TestKeepSessionIDAtLogin(t *testing.T) {
	clk := pushauthtest.NewClock(time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC))
	b := New(Config{Users: DefaultUsers(), Now: clk.Now, KeepSessionIDAtLogin: true})
	rec := do(b, "POST", "/login", formCT, "contract_no=1001&user_id=bob&password=bob-pass-1")
	s := sessionCookie(rec)
	if rec.Code != http.StatusSeeOther || s == nil {
		t.Fatalf("first login: %d %v", rec.Code, s)
	}
	rec = do(b, "POST", "/login", formCT, "contract_no=1001&user_id=alice&password=alice-pass-1", s)
	if rec.Code != http.StatusSeeOther || sessionCookie(rec) != nil {
		t.Fatalf("login on a live session: %d, Set-Cookie %v; want 303 and no new cookie", rec.Code, rec.Header().Values("Set-Cookie"))
	}
	if b.SessionCount() != 1 {
		t.Fatalf("sessions = %d, want the one kept", b.SessionCount())
	}
	rec = do(b, "GET", "/account", "", "", s)
	var acct accountJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &acct); err != nil || acct.UserID != "alice" {
		t.Fatalf("the kept session belongs to %q (%v), want alice", acct.UserID, err)
	}
	// A wrong password leaves the session as it was.
	do(b, "POST", "/login", formCT, "contract_no=1001&user_id=bob&password=guess", s)
	rec = do(b, "GET", "/account", "", "", s)
	if err := json.Unmarshal(rec.Body.Bytes(), &acct); err != nil || acct.UserID != "alice" {
		t.Fatalf("after a refused login the session belongs to %q, want alice", acct.UserID)
	}
}

func TestLoginFollowsNext(t *testing.T) {
	b := New(Config{Users: DefaultUsers(), LoginFollowsNext: true})
	for _, tt := range []struct{ next, want string }{
		{"/transfer", "/transfer"},
		{"//evil.example/", "/dashboard"},
		{"https://evil.example/", "/dashboard"},
		{"", "/dashboard"},
	} {
		body := "contract_no=1001&user_id=alice&password=alice-pass-1&next=" + url.QueryEscape(tt.next)
		rec := do(b, "POST", "/login", formCT, body)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != tt.want || sessionCookie(rec) == nil {
			t.Errorf("next=%q: %d Location %q, want 303 to %s with a session", tt.next, rec.Code, rec.Header().Get("Location"), tt.want)
		}
	}
	// Without the option next is ignored.
	rec := do(New(Config{Users: DefaultUsers()}), "POST", "/login", formCT, "contract_no=1001&user_id=alice&password=alice-pass-1&next=/transfer")
	if rec.Header().Get("Location") != "/dashboard" {
		t.Errorf("default bank followed next: %q", rec.Header().Get("Location"))
	}
}
