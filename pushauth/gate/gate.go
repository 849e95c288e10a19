package gate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/enrol"
)

// Next is the rest of the handler chain (Caddy's next handler, adapted).
type Next func(http.ResponseWriter, *http.Request) error

// VerifiedHeaderPrefix marks the headers the gateway sets for the bank.
// Inbound headers with this prefix are always removed so a client cannot
// claim a verification it never had.
const VerifiedHeaderPrefix = "X-Onepush-"

// Gate holds requests that match a policy rule until the user's phone
// decides. It is the whole request flow of the design, as plain net/http.
type Gate struct {
	Engine *pushauth.Engine
	Policy *policy.Policy
	Pages  *Pages
	Log    *slog.Logger
	// ClientIP returns the client address as the trusted-proxy logic sees
	// it; nil uses the connection's remote address.
	ClientIP func(*http.Request) string
	// EnrollPath serves the enrolment form, which binds phones through
	// Binder; "" disables it.
	EnrollPath string
	Binder     *enrol.Binder
	// WaitPath is the prefix of the interstitial waiting pages (with a
	// trailing slash); "" disables interstitial mode.
	WaitPath string
	// Passkeys, when set, offers passkeys: rules with method passkey or
	// passkey_or_push and the registration page (passkeys.go).
	Passkeys *Passkeys
	// BodyReadTimeout bounds how long a matched request may take to send its
	// body (slow senders). Default 10s.
	BodyReadTimeout time.Duration

	// Note, when set, is told what the gate learns about a request a rule
	// matched: "rule", "user" (the user the request names), "challenge_id",
	// "outcome", and "auth_user" once the request goes on to the bank for
	// that user (Caddy sets them as placeholders for access logs).
	Note func(r *http.Request, key, value string)
	// TakeRefusal, when set, may take a refusal the gate would answer with
	// its own page (a status of 400 or more, no form to fill in): true
	// means the caller answers it (Caddy's handle_errors) and the gate
	// writes nothing.
	TakeRefusal func(r *http.Request, status int) bool
}

// Route sends a request of the site to its handler: the enrolment page,
// a waiting page, or the gate.
func (g *Gate) Route(w http.ResponseWriter, r *http.Request, next Next) error {
	switch {
	case g.EnrollPath != "" && r.URL.Path == g.EnrollPath:
		return EnrolPage{g}.Serve(w, r)
	case g.WaitPath != "" && strings.HasPrefix(r.URL.Path, g.WaitPath):
		return WaitPage{g}.Serve(w, r, next)
	case g.Passkeys != nil && g.Passkeys.Path != "" && (r.URL.Path == g.Passkeys.Path || strings.HasPrefix(r.URL.Path, g.Passkeys.Path+"/")):
		return PasskeyPage{g}.Serve(w, r)
	}
	return g.Serve(w, r, next)
}

// Serve runs the gate's flow for one request: a request no rule matches
// goes on untouched; a matched one is read, attributed, decided (Decide)
// and held, challenged or refused.
func (g *Gate) Serve(w http.ResponseWriter, r *http.Request, next Next) error {
	stripVerifiedHeaders(r.Header)
	rule := g.Policy.Match(r)
	if rule == nil {
		return next(w, r)
	}
	g.note(r, "rule", rule.Name)
	if rule.Kind == policy.KindRefuse {
		// Unnormalizable path, disagreeing method overrides (400), or a body under the
		// protected prefix that no rule covers (403): never forwarded.
		status := http.StatusBadRequest
		if rule == policy.Unprotected {
			status = http.StatusForbidden
		}
		g.Log.Info("request refused: "+rule.Name, "method", truncate(r.Method, 20), "path", truncate(r.URL.EscapedPath(), 200), "client_ip", g.clientIP(r))
		g.render(w, r, status, PageBadRequest, "", "")
		return nil
	}
	body, status := g.readBody(w, r, rule.BodyLimit)
	if status != 0 {
		page := PageBadRequest
		if status == http.StatusRequestEntityTooLarge {
			page = PageTooLarge
		}
		g.Log.Info("request refused: body", "rule", rule.Name, "status", status)
		g.render(w, r, status, page, "", "")
		return nil
	}
	ex, err := rule.Extract(r, body)
	if err != nil {
		g.Log.Info("request refused: extraction", "rule", rule.Name, "reason", err.Error())
		g.render(w, r, http.StatusBadRequest, PageBadRequest, "", "")
		return nil
	}
	ctx := r.Context()
	store := g.Engine.Store()

	userKey := ex.UserKey
	if rule.UsesSession() {
		if rule.Kind == policy.KindLogout {
			if ex.SessionID != "" {
				g.forgetSession(ctx, ex.SessionID)
			}
			return g.forward(w, r, next, body, nil, "", nil)
		}
		var pending bool
		userKey, pending, err = g.sessionUser(ctx, ex.SessionID)
		if err != nil {
			return g.unavailable(w, r, rule, err)
		}
		if pending {
			// The bank may already have given this session to the user whose
			// login is waiting for the phone: attributing the request to
			// anyone is a guess, so nobody gets it.
			g.refuseOnSession(w, r, rule, userKey, ex, "login_pending", "a login on this session is waiting for approval")
			return nil
		}
		if userKey == "" {
			g.Log.Info("request refused: no learned session", "rule", rule.Name, "client_ip", g.clientIP(r))
			g.render(w, r, http.StatusForbidden, PageNoSession, "", "")
			return nil
		}
	}

	user, err := store.GetUser(ctx, userKey)
	if errors.Is(err, pushauth.ErrNotFound) {
		user, err = &pushauth.User{Key: userKey}, nil
	}
	if err != nil {
		return g.unavailable(w, r, rule, err)
	}
	g.note(r, "user", user.Key)
	if rule.Kind == policy.KindLogin && ex.SessionID != "" {
		// The login in flight on the session it was started in. Its mark is
		// written only once the login will reach the bank (beginLogin): a
		// login refused before then leaves the session meaning what it
		// meant. (A login without a session cookie has nothing to forget:
		// it learns the session the bank sets.)
		m := &loginMark{session: ex.SessionID, user: user.Key}
		if m.nonce, err = pushauth.RandomID(); err != nil {
			return err
		}
		r = r.WithContext(withLoginMark(ctx, m))
		ctx = r.Context()
	}
	// The user's state decides before anything is forwarded, whatever the
	// rule's mode: a refused login never reaches the bank.
	switch d := Decide(g.Policy, rule, user, g.Engine.Now()); d.Step {
	case StepDryRun:
		// A rule being rolled out: record what it would have done, change nothing.
		g.Log.Info("dry run: request would be challenged", "rule", rule.Name, "user", user.Key, "enrolled", user.Enrolled(), "state", string(user.State))
		g.note(r, "outcome", "dry_run")
		if !g.beginLogin(w, r, rule) {
			return nil
		}
		return g.forward(w, r, next, body, rule, user.Key, nil)
	case StepPasswordOnly:
		return g.passwordOnly(w, r, next, rule, user, body)
	case StepCheckThenEnrol:
		return g.refuseLogin(w, r, next, rule, user, d.Access, body)
	case StepRefuse:
		g.refuse(w, r, rule, user, d.Access, "")
		return nil
	}
	if g.Engine.Draining() {
		// Going away: no new challenge, nothing forwarded; the browser
		// tries again, and the load balancer sends it elsewhere.
		g.startFailed(w, r, rule, user, pushauth.ErrDraining)
		return nil
	}
	if ex.Lookup != nil {
		// Approval by batch number: the rows are read from the bank, in
		// this request's own session, and bound to the challenge.
		if ex.Aggregate, err = g.lookupBatch(r, next, rule, ex); err != nil {
			g.refuseBatch(w, r, rule, user.Key, err)
			return nil
		}
	}
	if rule.Challenge == policy.ChallengeAfterSuccess {
		return g.afterSuccess(w, r, next, rule, user, ex, body)
	}
	if rule.Mode == policy.ModeInterstitial {
		return g.startInterstitial(w, r, rule, user, ex, body)
	}

	if !g.beginLogin(w, r, rule) {
		return nil
	}
	c, err := g.Engine.Hold(ctx, user, g.spec(r, rule, user, ex), nil)
	if c != nil {
		g.note(r, "challenge_id", c.ID)
	}
	if err != nil {
		g.abandonLogin(ctx, loginMarkOf(ctx))
		return g.startFailed(w, r, rule, user, err)
	}
	if c.Status == pushauth.StatusApproved && ctx.Err() == nil {
		return g.forward(w, r, next, body, rule, user.Key, c)
	}
	g.abandonLogin(ctx, loginMarkOf(ctx))
	g.renderClosed(w, r, c)
	return nil
}

// spec is the challenge a matched request asks for.
func (g *Gate) spec(r *http.Request, rule *policy.Rule, user *pushauth.User, ex *policy.Extraction) pushauth.ChallengeSpec {
	spec := pushauth.ChallengeSpec{
		UserKey:   user.Key,
		Rule:      rule.Name,
		Kind:      string(rule.Kind),
		Display:   fieldsOf(ex.Display),
		ClientIP:  g.clientIP(r),
		UserAgent: r.UserAgent(),
		Timeout:   rule.Timeout,
	}
	spec.Service, spec.Host, spec.Transaction = rule.Service, ex.Host, transactionOf(ex.Transaction)
	spec.SessionHash = sessionHashOf(ex.SessionID)
	spec.Batch, spec.Rows = batchOf(ex)
	return spec
}

func transactionOf(t *policy.Transaction) *pushauth.Transaction {
	if t == nil {
		return nil
	}
	return &pushauth.Transaction{Amount: t.Amount, Currency: t.Currency, Payee: t.Payee, PayeeName: t.PayeeName, AmountShown: t.AmountShown}
}

// renderClosed answers a held request whose challenge ended without an
// approval it can act on.
func (g *Gate) renderClosed(w http.ResponseWriter, r *http.Request, c *pushauth.Challenge) {
	switch c.Status {
	case pushauth.StatusDenied:
		g.render(w, r, http.StatusForbidden, PageDenied, c.ID, "")
	case pushauth.StatusExpired:
		g.render(w, r, http.StatusRequestTimeout, PageExpired, c.ID, "")
	case pushauth.StatusSuperseded:
		g.render(w, r, http.StatusConflict, PageSuperseded, c.ID, "")
	case pushauth.StatusCancelled:
		// Usually the client is gone and there is nobody to answer; when it
		// is still here, the challenge was closed under it (the phone's app
		// was uninstalled).
		if r.Context().Err() == nil {
			g.render(w, r, http.StatusConflict, PageCancelled, c.ID, "")
		}
	}
}

// passwordOnly forwards without a push what Decide lets through so.
func (g *Gate) passwordOnly(w http.ResponseWriter, r *http.Request, next Next, rule *policy.Rule, u *pushauth.User, body []byte) error {
	g.note(r, "outcome", "password_only")
	if u.State == pushauth.UserSuspended || u.State == pushauth.UserDeregistered {
		// Within the bank's grace period the password alone still works.
		g.Log.Info("forwarded without push: within grace", "rule", rule.Name, "user", u.Key, "state", string(u.State))
		g.Engine.Record(r.Context(), pushauth.AuditEvent{Type: pushauth.AuditRefused, User: u.Key, Rule: rule.Name, ClientIP: g.clientIP(r),
			Outcome: "password_only", Actor: "gateway", Detail: string(u.State) + " within grace"})
	}
	return g.forwardPasswordOnly(w, r, next, rule, u, body)
}

func (g *Gate) unavailable(w http.ResponseWriter, r *http.Request, rule *policy.Rule, err error) error {
	g.Log.Error("request refused: store unavailable", "rule", rule.Name, "error", err)
	g.Engine.StoreFailed("gate", err)
	g.render(w, r, http.StatusServiceUnavailable, PageUnavailable, "", "")
	return nil
}

// readBody buffers at most limit bytes; it returns a status other than 0
// when the request must be refused.
func (g *Gate) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int) {
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge
	}
	timeout := g.BodyReadTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	defer rc.SetReadDeadline(time.Time{})
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, http.StatusBadRequest
	}
	if int64(len(body)) > limit {
		return nil, http.StatusRequestEntityTooLarge
	}
	return body, 0
}

// forward sends the buffered request on, byte for byte. For login rules it
// learns the bank's session from the response (see session.go); requests
// attributed through the session are checked once more, just before they
// reach the bank, against what the session means now.
func (g *Gate) forward(w http.ResponseWriter, r *http.Request, next Next, body []byte, rule *policy.Rule, userKey string, c *pushauth.Challenge) error {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.Header.Del("Transfer-Encoding")
	if c != nil && c.Batch != nil && c.Batch.Source == batchFromLookup {
		// The rows were read from the bank: they must still be the ones
		// the phone approved.
		if err := g.recheckBatch(r, next, rule, body, c); err != nil {
			g.refuseBatch(w, r, &policy.Rule{Name: c.Rule, Service: c.Service}, userKey, err)
			return nil
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if c != nil {
		r.Header.Set(VerifiedHeaderPrefix+"Verified", verifiedBy(c))
		r.Header.Set(VerifiedHeaderPrefix+"Challenge", c.ID)
		g.note(r, "challenge_id", c.ID)
		g.note(r, "outcome", string(c.Status))
	}
	if rule != nil && userKey != "" {
		g.note(r, "auth_user", userKey)
	}
	if rule == nil || g.Policy.Session.Cookie == "" {
		return next(w, r)
	}
	switch {
	case rule.Kind == policy.KindLogin:
		return g.forwardLogin(w, r, next, rule, userKey, c != nil)
	case rule.UsesSession():
		return g.forwardOnSession(w, r, next, rule, userKey)
	}
	return next(w, r)
}

// forwardLogin sends a login on, if it is still the latest one on the
// session it was started in, and learns the session from the bank's answer
// before the answer reaches the browser, so a transfer posted right after
// is attributed. approved says the user's phone approved this login.
func (g *Gate) forwardLogin(w http.ResponseWriter, r *http.Request, next Next, rule *policy.Rule, userKey string, approved bool) error {
	m := loginMarkOf(r.Context())
	if m == nil {
		m = &loginMark{user: userKey}
	}
	unlock, ok := sessionLocks.lock(r.Context(), m.session)
	if !ok {
		g.abandonLogin(r.Context(), m)
		return nil // the client left while another request on its session went on
	}
	defer unlock()
	current, err := g.loginCurrent(r.Context(), m)
	if err != nil {
		return g.unavailable(w, r, rule, err)
	}
	if !current {
		g.Log.Info("request refused: a later login on the same session", "rule", rule.Name, "user", m.user)
		g.Engine.Record(r.Context(), pushauth.AuditEvent{Type: pushauth.AuditRefused, User: m.user, Rule: rule.Name, ClientIP: g.clientIP(r),
			Outcome: "superseded_on_session", Actor: "gateway", Detail: "a later login started on the same bank session", Service: rule.Service})
		g.render(w, r, http.StatusConflict, PageSuperseded, "", "")
		return nil
	}
	lw := &learningWriter{ResponseWriter: w, g: g, ctx: context.WithoutCancel(r.Context()), mark: m, rule: rule, approved: approved}
	return next(lw, r)
}

// forwardOnSession sends on a request attributed to userKey through its
// session, if the session still means that user and no login on it is
// pending: a login started on the session while the request waited for the
// phone may already have given it to someone else at the bank.
func (g *Gate) forwardOnSession(w http.ResponseWriter, r *http.Request, next Next, rule *policy.Rule, userKey string) error {
	session, ok := g.requestSession(r)
	if !ok || session == "" {
		g.render(w, r, http.StatusBadRequest, PageBadRequest, "", "")
		return nil
	}
	unlock, ok := sessionLocks.lock(r.Context(), session)
	if !ok {
		return nil
	}
	defer unlock()
	user, pending, err := g.sessionUser(r.Context(), session)
	if err != nil {
		return g.unavailable(w, r, rule, err)
	}
	if pending || user != userKey {
		g.refuseOnSession(w, r, rule, userKey, nil, "session_changed", "the session's login changed while the request waited")
		return nil
	}
	return next(w, r)
}

// refuseOnSession refuses a request whose session cannot be attributed.
func (g *Gate) refuseOnSession(w http.ResponseWriter, r *http.Request, rule *policy.Rule, userKey string, ex *policy.Extraction, outcome, detail string) {
	host := ""
	if ex != nil {
		host = ex.Host
	}
	ip := g.clientIP(r)
	g.Log.Info("request refused: "+detail, "rule", rule.Name, "user", userKey, "client_ip", ip)
	g.Engine.RecordAggregated(r.Context(), pushauth.AuditEvent{Type: pushauth.AuditRefused, User: userKey, Rule: rule.Name, ClientIP: ip,
		Outcome: outcome, Actor: "gateway", Detail: detail, Service: rule.Service, Host: host},
		"session\x00"+outcome+"\x00"+userKey, "session\x00"+outcome+"\x00"+pushauth.AddressKey(ip))
	g.render(w, r, http.StatusForbidden, PageNoSession, "", "")
}

// learningWriter completes a login when the bank's response starts, before
// it reaches the browser.
type learningWriter struct {
	http.ResponseWriter
	g        *Gate
	ctx      context.Context
	mark     *loginMark
	rule     *policy.Rule
	approved bool
	written  bool
}

func (lw *learningWriter) WriteHeader(status int) {
	if !lw.written {
		lw.written = true
		lw.learn(status)
	}
	lw.ResponseWriter.WriteHeader(status)
}

func (lw *learningWriter) Write(b []byte) (int, error) {
	if !lw.written {
		lw.WriteHeader(http.StatusOK)
	}
	return lw.ResponseWriter.Write(b)
}

func (lw *learningWriter) Unwrap() http.ResponseWriter { return lw.ResponseWriter }

// learn completes the login with the session its answer hands over, if
// one may be learned (learnedSession).
func (lw *learningWriter) learn(status int) {
	lw.g.completeLogin(lw.ctx, lw.mark, lw.g.learnedSession(lw.rule, lw.mark, status, lw.Header(), lw.approved, true))
}

// learnedSession is the session a login's answer (status, h) hands to the
// browser for the login's user; "" when none may be learned.
//
//   - A session the bank newly set (a Set-Cookie whose value is not the
//     request's own) is only this browser's. It is learned when the answer
//     meets the rule's success condition, when the rule has none (a
//     password-only login learns what the bank set, as it always did), and
//     for a login the phone approved, whose user is that session's owner
//     even when the answer looks unusual (a deep link's next= redirect).
//   - The request's own session (the bank kept its ID, or set the same
//     value again) is learned only when the answer meets an explicit
//     success condition, and only when the login was forwarded with it
//     (ownForwarded). A refused login leaves a kept session as it was —
//     for a stolen cookie, its owner's — so without that proof a failed
//     login naming another user would re-attribute the session to that
//     user, whose transfers would then run without the owner's phone.
func (g *Gate) learnedSession(rule *policy.Rule, m *loginMark, status int, h http.Header, approved, ownForwarded bool) string {
	success := rule.Success != nil && rule.Success.Matches(status, h)
	if set := setCookieValue(h, g.Policy.Session.Cookie); set != "" && set != m.session {
		if success || rule.Success == nil || approved {
			return set
		}
		return ""
	}
	if success && ownForwarded {
		return m.session
	}
	return ""
}

func (g *Gate) clientIP(r *http.Request) string {
	if g.ClientIP != nil {
		return g.ClientIP(r)
	}
	return pushauth.ClientAddr(r.RemoteAddr)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func stripVerifiedHeaders(h http.Header) {
	for k := range h {
		if len(k) >= len(VerifiedHeaderPrefix) && strings.EqualFold(k[:len(VerifiedHeaderPrefix)], VerifiedHeaderPrefix) {
			delete(h, k)
		}
	}
}

func fieldsOf(in []policy.Field) []pushauth.Field {
	out := make([]pushauth.Field, len(in))
	for i, f := range in {
		out[i] = pushauth.Field{Label: f.Label, Value: f.Value, Labels: f.Labels}
	}
	return out
}
