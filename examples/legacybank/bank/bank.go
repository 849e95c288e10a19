// Package bank is a deliberately ordinary, server-rendered "legacy" online
// banking application used as the backend in onepush examples and tests.
//
// It knows nothing about onepush: it is a plain net/http application with a
// cookie session, a login form, a transfer form and a logout. The only
// test-oriented addition is an operations log (GET /ops/log, POST /ops/reset)
// that records every executed login, transfer and logout together with the
// exact raw request body bytes that reached the application, so that tests can
// verify what a proxy in front of the bank forwarded (and that nothing was
// executed when it should not have been).
package bank

import (
	"bytes"
	"container/list"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// SessionCookieName is the name of the session cookie set on login.
	SessionCookieName = "BANKSESSION"
	// SessionIdleTimeout is how long a session survives without requests.
	SessionIdleTimeout = 30 * time.Minute
	// DefaultMaxSessions caps the number of live sessions; the least recently
	// used session is evicted when the cap is reached.
	DefaultMaxSessions = 100_000
	// MaxBodyBytes is the maximum accepted request body size.
	MaxBodyBytes = 1 << 20
	// MaxOps is the number of entries kept in the operations log; older
	// entries are dropped (Seq keeps increasing).
	MaxOps = 1000
	// MaxAmount is the largest accepted transfer amount (JPY).
	MaxAmount = 1_000_000_000_000
)

// Operation names recorded in the operations log.
const (
	OpLogin           = "login"
	OpLoginFailed     = "login_failed"
	OpTransfer        = "transfer"
	OpTransferRefused = "transfer_refused"
	OpLogout          = "logout"
)

// User is a bank customer. A login is identified by (ContractNo, UserID).
type User struct {
	ContractNo  string
	UserID      string
	Password    string
	TxnPassword string
	Name        string
}

// Config configures a Bank.
type Config struct {
	Users []User
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time
	// MaxSessions caps live sessions; 0 means DefaultMaxSessions.
	MaxSessions int
	// CookieOnFailedLogin sets a session cookie on the failed-login page
	// too, as many Java applications do (a session for every visitor,
	// JSESSIONID style): the cookie names no logged-in user, but a proxy
	// that takes "a session cookie was set" for "the password was right"
	// is fooled.
	CookieOnFailedLogin bool

	// KeepSessionIDAtLogin makes a login on a live session keep its ID and
	// give that session to the user who logged in, with no new cookie, as
	// many Java and ASP applications do (they do not rotate the session at
	// login). A login without a live session still gets a new one.
	KeepSessionIDAtLogin bool
	// LoginFollowsNext makes a successful login redirect to the local path in
	// its next field (form or query) instead of /dashboard, so a successful
	// login does not always look the same.
	LoginFollowsNext bool
}

// Op is one entry of the operations log.
type Op struct {
	Seq          int       `json:"seq"`
	Time         time.Time `json:"time"`
	Op           string    `json:"op"`
	ContractNo   string    `json:"contract_no"`
	UserID       string    `json:"user_id"`
	PayeeAccount string    `json:"payee_account"`
	Amount       string    `json:"amount"`
	// Session holds only the first 8 characters of the session id.
	Session     string `json:"session"`
	Method      string `json:"method"`
	Path        string `json:"path"`
	ContentType string `json:"content_type"`
	// Body is the exact raw request body as received by the application.
	Body string `json:"body"`
	// Reason says why a login or transfer was refused (empty on success).
	Reason string `json:"reason,omitempty"`
	// Reference is the reference number of an executed transfer.
	Reference string `json:"reference,omitempty"`
	// PayeeName and Batch: a row of a bulk, payroll or approved batch
	// (menus.go) records its payee's name and its batch number.
	PayeeName string `json:"payee_name,omitempty"`
	Batch     string `json:"batch,omitempty"`
}

// DefaultUsers returns the demo users.
func DefaultUsers() []User {
	return []User{
		{ContractNo: "1001", UserID: "alice", Password: "alice-pass-1", TxnPassword: "alice-txn-1", Name: "Alice Tanaka"},
		{ContractNo: "1001", UserID: "bob", Password: "bob-pass-1", TxnPassword: "bob-txn-1", Name: "Bob Suzuki"},
		{ContractNo: "2002", UserID: "carol", Password: "carol-pass-1", TxnPassword: "carol-txn-1", Name: "Carol Sato"},
	}
}

type userKey struct{ contract, user string }

type session struct {
	id       string
	user     *User
	created  time.Time
	lastSeen time.Time
	elem     *list.Element
}

type transferRecord struct {
	Reference    string    `json:"reference"`
	Time         time.Time `json:"time"`
	PayeeAccount string    `json:"payee_account"`
	Amount       int64     `json:"amount"`
}

// Bank is the legacy banking application. It implements http.Handler and is
// safe for concurrent use.
type Bank struct {
	now         func() time.Time
	users       map[userKey]*User
	maxSessions int
	anonCookie  bool
	mux         *http.ServeMux
	keepID      bool
	followNext  bool

	mu        sync.Mutex
	sessions  map[string]*session
	lru       *list.List // front = most recently used; values are *session
	ops       []Op
	opSeq     int
	txnSeq    int
	transfers map[userKey][]transferRecord
	batches   map[string]*batch // maker–approver batches by number (menus.go)
	batchSeq  int
}

// New returns a Bank serving cfg.Users.
func New(cfg Config) *Bank {
	b := &Bank{
		now:         cfg.Now,
		users:       make(map[userKey]*User, len(cfg.Users)),
		maxSessions: cfg.MaxSessions,
		anonCookie:  cfg.CookieOnFailedLogin,
		keepID:      cfg.KeepSessionIDAtLogin,
		followNext:  cfg.LoginFollowsNext,
		sessions:    make(map[string]*session),
		lru:         list.New(),
		transfers:   make(map[userKey][]transferRecord),
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.maxSessions <= 0 {
		b.maxSessions = DefaultMaxSessions
	}
	for i := range cfg.Users {
		u := cfg.Users[i]
		b.users[userKey{u.ContractNo, u.UserID}] = &u
	}

	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", b.handleLoginPage)
	m.HandleFunc("GET /login", b.handleLoginPage)
	m.HandleFunc("POST /login", b.handleLogin)
	m.HandleFunc("GET /dashboard", b.sessionPage("dashboard", "Dashboard"))
	m.HandleFunc("GET /transfer", b.sessionPage("transfer", "Transfer"))
	m.HandleFunc("POST /transfer", b.handleTransfer)
	m.HandleFunc("GET /logout", b.handleLogout)
	m.HandleFunc("POST /logout", b.handleLogout)
	m.HandleFunc("GET /account", b.handleAccount)
	b.menus(m)
	m.HandleFunc("GET /static/style.css", staticHandler("static/style.css", "text/css; charset=utf-8"))
	m.HandleFunc("GET /static/logo.svg", staticHandler("static/logo.svg", "image/svg+xml"))
	// Test/demo fixture endpoints. They are intentionally unauthenticated:
	// they expose raw request bodies (including passwords) and must never
	// exist in a real application.
	m.HandleFunc("GET /ops/log", b.handleOpsLog)
	m.HandleFunc("POST /ops/reset", b.handleOpsReset)
	b.mux = m
	return b
}

// ServeHTTP implements http.Handler.
func (b *Bank) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	}
	b.mux.ServeHTTP(w, r)
}

// OpsLog returns a copy of the operations log, oldest first.
func (b *Bank) OpsLog() []Op {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Op, len(b.ops))
	copy(out, b.ops)
	return out
}

// ResetOps clears the operations log and restarts Seq at 1.
func (b *Bank) ResetOps() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ops = nil
	b.opSeq = 0
}

// SessionCount returns the number of live (not yet expired or evicted)
// sessions.
func (b *Bank) SessionCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneExpiredLocked(b.now())
	return len(b.sessions)
}

// ---- operations log ----

func (b *Bank) record(op Op, r *http.Request, raw []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opSeq++
	op.Seq = b.opSeq
	op.Time = b.now()
	op.Method = r.Method
	op.Path = r.URL.Path
	op.ContentType = r.Header.Get("Content-Type")
	op.Body = string(raw)
	if len(op.Session) > 8 {
		op.Session = op.Session[:8]
	}
	if len(b.ops) >= MaxOps {
		n := copy(b.ops, b.ops[len(b.ops)-MaxOps+1:])
		b.ops = b.ops[:n]
	}
	b.ops = append(b.ops, op)
}

// ---- sessions ----

func (b *Bank) pruneExpiredLocked(now time.Time) {
	for e := b.lru.Back(); e != nil; {
		s := e.Value.(*session)
		if now.Sub(s.lastSeen) <= SessionIdleTimeout {
			break // the rest are more recently used
		}
		prev := e.Prev()
		b.dropLocked(s)
		e = prev
	}
}

func (b *Bank) newSession(u *User) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.pruneExpiredLocked(now)
	for len(b.sessions) >= b.maxSessions {
		e := b.lru.Back()
		b.dropLocked(e.Value.(*session))
	}
	s := &session{id: rand.Text(), user: u, created: now, lastSeen: now}
	s.elem = b.lru.PushFront(s)
	b.sessions[s.id] = s
	return s
}

// sessionFor returns the live session named by the request cookie (touching
// it), or nil.
func (b *Bank) sessionFor(r *http.Request) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	s := b.cookieSessionLocked(r)
	if s == nil {
		return nil
	}
	if now.Sub(s.lastSeen) > SessionIdleTimeout {
		b.dropLocked(s)
		return nil
	}
	s.lastSeen = now
	b.lru.MoveToFront(s.elem)
	return s
}

// deleteSession removes the session named by the request cookie and reports
// the removed session (nil if there was none).
func (b *Bank) deleteSession(r *http.Request) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.cookieSessionLocked(r)
	if s == nil {
		return nil
	}
	b.dropLocked(s)
	if b.now().Sub(s.lastSeen) > SessionIdleTimeout {
		return nil // already expired
	}
	return s
}

// cookieSessionLocked is the session the request cookie names, expired or
// not, or nil.
func (b *Bank) cookieSessionLocked(r *http.Request) *session {
	c, err := r.Cookie(SessionCookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	return b.sessions[c.Value]
}

// dropLocked forgets s.
func (b *Bank) dropLocked(s *session) {
	b.lru.Remove(s.elem)
	delete(b.sessions, s.id)
}

func setSessionCookie(w http.ResponseWriter, id string) {
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookieName,
		Value:    id,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookieName,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// ---- body parsing ----

var (
	errTooLarge    = errors.New("request body too large")
	errUnsupported = errors.New("unsupported content type")
	errMalformed   = errors.New("malformed request body")
)

// readForm reads the whole body (keeping the exact bytes) and parses it as
// application/x-www-form-urlencoded or multipart/form-data. A missing
// Content-Type is treated as urlencoded. For repeated fields the first value
// wins.
func readForm(r *http.Request) (raw []byte, form url.Values, err error) {
	if r.Body != nil {
		raw, err = io.ReadAll(r.Body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return raw, nil, errTooLarge
			}
			return raw, nil, errMalformed
		}
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/x-www-form-urlencoded"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return raw, nil, errUnsupported
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		form, err = url.ParseQuery(string(raw))
		if err != nil {
			return raw, nil, errMalformed
		}
		return raw, form, nil
	case "multipart/form-data":
		boundary := params["boundary"]
		if boundary == "" {
			return raw, nil, errMalformed
		}
		form = url.Values{}
		mr := multipart.NewReader(bytes.NewReader(raw), boundary)
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return raw, nil, errMalformed
			}
			name := p.FormName()
			if name == "" || p.FileName() != "" {
				continue // files are not used by this app
			}
			v, err := io.ReadAll(p)
			if err != nil {
				return raw, nil, errMalformed
			}
			form.Add(name, string(v))
		}
		return raw, form, nil
	default:
		return raw, nil, errUnsupported
	}
}

func (b *Bank) formError(w http.ResponseWriter, err error) {
	switch err {
	case errTooLarge:
		b.renderMessage(w, http.StatusRequestEntityTooLarge, "Request too large", "The submitted form is too large.")
	case errUnsupported:
		b.renderMessage(w, http.StatusUnsupportedMediaType, "Unsupported form encoding", "Please submit the form from this site.")
	default:
		b.renderMessage(w, http.StatusBadRequest, "Bad request", "The submitted form could not be read.")
	}
}

// ---- handlers ----

func (b *Bank) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	b.render(w, http.StatusOK, "login", pageData{Title: "Log in"})
}

func (b *Bank) handleLogin(w http.ResponseWriter, r *http.Request) {
	raw, form, err := readForm(r)
	if err != nil {
		b.formError(w, err)
		return
	}
	contract, userID, password := form.Get("contract_no"), form.Get("user_id"), form.Get("password")
	u := b.users[userKey{contract, userID}]
	ok := u != nil && subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) == 1
	if !ok {
		reason := "bad_password"
		if u == nil {
			reason = "unknown_user"
		}
		b.record(Op{Op: OpLoginFailed, ContractNo: contract, UserID: userID, Reason: reason}, r, raw)
		if b.anonCookie {
			setSessionCookie(w, rand.Text()) // a visitor's session: no user behind it
		}
		b.render(w, http.StatusOK, "login", pageData{
			Title: "Log in", Error: "Login failed. Please check your contract number, user ID and password.",
			ContractNo: contract, UserID: userID,
		})
		return
	}
	var s *session
	if b.keepID {
		if s = b.sessionFor(r); s != nil {
			b.mu.Lock()
			s.user, s.created = u, b.now()
			b.mu.Unlock()
		}
	}
	if s == nil {
		b.deleteSession(r) // avoid session fixation: drop any previous session
		s = b.newSession(u)
		setSessionCookie(w, s.id)
	}
	b.record(Op{Op: OpLogin, ContractNo: u.ContractNo, UserID: u.UserID, Session: s.id}, r, raw)
	target := "/dashboard"
	if next := form.Get("next"); b.followNext && strings.HasPrefix(next, "/") && !strings.HasPrefix(next, "//") {
		target = next
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// sessionPage serves the page name to a signed-in customer, and sends
// anyone else to the login page.
func (b *Bank) sessionPage(name, title string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := b.sessionFor(r)
		if s == nil {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		b.render(w, http.StatusOK, name, pageData{Title: title, User: s.user})
	}
}

func (b *Bank) handleTransfer(w http.ResponseWriter, r *http.Request) {
	raw, form, err := readForm(r)
	if err != nil {
		b.formError(w, err)
		return
	}
	payee, amountStr, txnPass := form.Get("payee_account"), form.Get("amount"), form.Get("txn_password")
	refused := func(s *session, reason string) {
		op := Op{Op: OpTransferRefused, PayeeAccount: payee, Amount: amountStr, Reason: reason}
		if s != nil {
			op.ContractNo, op.UserID, op.Session = s.user.ContractNo, s.user.UserID, s.id
		}
		b.record(op, r, raw)
	}

	s := b.sessionFor(r)
	if s == nil {
		refused(nil, "no_session")
		b.renderMessage(w, http.StatusUnauthorized, "Not logged in",
			"Your session has expired or you are not logged in. The transfer was not executed.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(s.user.TxnPassword), []byte(txnPass)) != 1 {
		refused(s, "bad_txn_password")
		b.render(w, http.StatusOK, "transfer", pageData{
			Title: "Transfer", User: s.user, Error: "Transaction password incorrect. The transfer was not executed.",
			PayeeAccount: payee, Amount: amountStr,
		})
		return
	}
	amount, ok := parseAmount(amountStr)
	if !ok || strings.TrimSpace(payee) == "" {
		reason := "invalid_amount"
		msg := "The amount must be a positive whole number of yen."
		if ok {
			reason, msg = "missing_payee", "Please enter the payee account."
		}
		refused(s, reason)
		b.renderMessage(w, http.StatusBadRequest, "Invalid transfer", msg+" The transfer was not executed.")
		return
	}

	b.mu.Lock()
	b.txnSeq++
	now := b.now()
	ref := fmt.Sprintf("TX%s-%06d", now.Format("20060102"), b.txnSeq)
	k := userKey{s.user.ContractNo, s.user.UserID}
	hist := append(b.transfers[k], transferRecord{Reference: ref, Time: now, PayeeAccount: payee, Amount: amount})
	if len(hist) > 100 {
		hist = hist[len(hist)-100:]
	}
	b.transfers[k] = hist
	b.mu.Unlock()

	canon := strconv.FormatInt(amount, 10)
	b.record(Op{Op: OpTransfer, ContractNo: s.user.ContractNo, UserID: s.user.UserID, Session: s.id,
		PayeeAccount: payee, Amount: canon, Reference: ref}, r, raw)
	b.render(w, http.StatusOK, "done", pageData{
		Title: "Transfer accepted", User: s.user, PayeeAccount: payee, Amount: canon, Reference: ref,
	})
}

// parseAmount accepts a positive decimal integer (ASCII digits only, no sign)
// not exceeding MaxAmount.
func parseAmount(s string) (int64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > MaxAmount {
		return 0, false
	}
	return n, true
}

func (b *Bank) handleLogout(w http.ResponseWriter, r *http.Request) {
	var raw []byte
	if r.Method == http.MethodPost && r.Body != nil {
		raw, _ = io.ReadAll(r.Body) // logged as received; content is not used
	}
	if s := b.deleteSession(r); s != nil {
		b.record(Op{Op: OpLogout, ContractNo: s.user.ContractNo, UserID: s.user.UserID, Session: s.id}, r, raw)
	}
	clearSessionCookie(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

type accountJSON struct {
	ContractNo string           `json:"contract_no"`
	UserID     string           `json:"user_id"`
	Name       string           `json:"name"`
	Currency   string           `json:"currency"`
	Transfers  []transferRecord `json:"transfers"`
}

func (b *Bank) handleAccount(w http.ResponseWriter, r *http.Request) {
	s := b.sessionFor(r)
	if s == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not logged in"})
		return
	}
	b.mu.Lock()
	hist := append([]transferRecord{}, b.transfers[userKey{s.user.ContractNo, s.user.UserID}]...)
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, accountJSON{
		ContractNo: s.user.ContractNo, UserID: s.user.UserID, Name: s.user.Name,
		Currency: "JPY", Transfers: hist,
	})
}

// handleOpsLog serves the operations log. NO AUTHENTICATION: this is a
// demo/test fixture that exposes raw request bodies, passwords included.
func (b *Bank) handleOpsLog(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Ops []Op `json:"ops"`
	}{Ops: b.OpsLog()})
}

// handleOpsReset clears the operations log. NO AUTHENTICATION: test fixture.
func (b *Bank) handleOpsReset(w http.ResponseWriter, r *http.Request) {
	b.ResetOps()
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // keep raw bodies readable (& not \u0026)
	_ = enc.Encode(v)
}

// ---- static assets ----

//go:embed static
var staticFS embed.FS

func staticHandler(name, contentType string) http.HandlerFunc {
	data, err := staticFS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	sum := fnv.New64a()
	sum.Write(data)
	etag := fmt.Sprintf(`"%016x"`, sum.Sum64())
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("ETag", etag)
		// ServeContent handles HEAD, If-None-Match and Range for us.
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
	}
}
