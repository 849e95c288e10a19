package gate

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
)

// maxHeldResponse bounds the bank's login response kept while the phone
// decides; a larger one cannot be held, so the login is refused.
const maxHeldResponse = 1 << 20

// afterSuccess forwards the login of an enrolled user first (the gate has
// refused or passed every other user before anything reached the bank)
// and challenges only when the bank accepted the password: a wrong
// password never rings the phone, and the bank's own error page is
// returned (without any bank cookie). On an accepted login the bank's
// response is held until the phone approves; on anything else it is
// dropped and the bank's session is logged out.
//
// The login reaches the bank without the request's session cookie
// (withoutSession), so the bank opens a new session that stays in the held
// response until the phone approves. A bank that keeps its session ID at
// login would otherwise upgrade the session the request carries, live
// before approval for whoever holds that cookie (reads of the account
// while the owner's phone rings) and fixed in advance by whoever planted
// it. A bank that keeps its ID still opens a new session for a login
// without one; one that needs its pre-login session at login (an
// anti-forgery token bound to it) cannot use after_success: use hold.
func (g *Gate) afterSuccess(w http.ResponseWriter, r *http.Request, next Next, rule *policy.Rule, user *pushauth.User, ex *policy.Extraction, body []byte) error {
	ctx := r.Context()
	m := loginMarkOf(ctx)
	if m == nil {
		m = &loginMark{user: user.Key}
	}
	if !g.beginLogin(w, r, rule) {
		return nil
	}
	unlock, ok := sessionLocks.lock(ctx, m.session)
	if !ok {
		g.abandonLogin(ctx, m)
		return nil
	}
	fr := g.withoutSession(r)
	rec := &responseBuffer{header: http.Header{}}
	err := g.forward(rec, fr, next, body, nil, "", nil)
	unlock()
	if err != nil {
		g.abandonLogin(ctx, m)
		return err
	}
	if rec.overflow {
		g.Log.Error("login response too large to hold; refused", "rule", rule.Name, "user", user.Key)
		g.bankLogout(fr, next, rule, rec.header)
		g.abandonLogin(ctx, m)
		g.render(w, r, http.StatusBadGateway, PageUnavailable, "", "")
		return nil
	}
	if !rule.Success.Matches(rec.status, rec.header) {
		// The bank refused the login, or accepted it in a way the policy
		// does not recognise (a next= redirect, another status): its own
		// answer, no push, and no bank cookie for the browser.
		g.dropBankSession(fr, next, rule, rec.header)
		g.abandonLogin(ctx, m)
		rec.writeTo(w)
		return nil
	}
	if rule.Mode == policy.ModeInterstitial {
		return g.afterSuccessWait(w, r, next, fr, rule, user, ex, m, rec)
	}
	pass := func() error {
		unlock, ok := sessionLocks.lock(ctx, m.session)
		if !ok {
			g.bankLogout(fr, next, rule, rec.header)
			g.abandonLogin(ctx, m)
			return nil
		}
		defer unlock()
		current, err := g.loginCurrent(ctx, m)
		if err != nil || !current {
			g.bankLogout(fr, next, rule, rec.header)
			if err != nil {
				return g.unavailable(w, r, rule, err)
			}
			g.Log.Info("login refused: a later login on the same session", "rule", rule.Name, "user", user.Key)
			g.render(w, r, http.StatusConflict, PageSuperseded, "", "")
			return nil
		}
		// The request's own session never reached the bank: only the
		// session the bank set in its held answer is learned.
		g.completeLogin(context.WithoutCancel(ctx), m, g.learnedSession(rule, m, rec.status, rec.header, true, false))
		rec.writeTo(w)
		return nil
	}
	c, err := g.Engine.Hold(ctx, user, g.spec(r, rule, user, ex), nil)
	if c != nil {
		g.note(r, "challenge_id", c.ID)
	}
	if err == nil && c.Status == pushauth.StatusApproved && ctx.Err() == nil {
		return pass()
	}
	g.bankLogout(fr, next, rule, rec.header)
	g.abandonLogin(ctx, m)
	if err != nil {
		return g.startFailed(w, r, rule, user, err)
	}
	g.renderClosed(w, r, c)
	return nil
}

// afterSuccessWait is a password-first login on a waiting page (code
// transfer): the bank accepted the password; its answer (the session
// cookie and the redirect) is stored sealed in the challenge, and the
// browser gets the waiting page with the code. Only an approval hands the
// answer over, once (replay, releaseResponse); a denial, expiry or
// cancellation logs the bank's session out. The challenge is held by a
// goroutine of its own (Engine.Hold, bounded like every held request),
// which ends when it is decided and logs out what was not approved.
func (g *Gate) afterSuccessWait(w http.ResponseWriter, r *http.Request, next Next, fr *http.Request, rule *policy.Rule, user *pushauth.User, ex *policy.Extraction, m *loginMark, rec *responseBuffer) error {
	ctx := r.Context()
	tok, err := waitToken()
	if err != nil {
		g.bankLogout(fr, next, rule, rec.header)
		g.abandonLogin(ctx, m)
		return err
	}
	spec := g.spec(r, rule, user, ex)
	spec.CodeDigits, spec.BrowserHash = rule.CodeDigits, tokenHash(tok)
	if err := g.choosePasskey(ctx, rule, user, &spec); err != nil {
		g.bankLogout(fr, next, rule, rec.header)
		g.abandonLogin(ctx, m)
		return g.startFailed(w, r, rule, user, err)
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	spec.Response = &pushauth.HeldResponse{Status: rec.status, Header: rec.header.Clone(), Body: bytes.Clone(rec.body.Bytes())}
	type started struct {
		c   *pushauth.Challenge
		err error
	}
	got := make(chan started, 1)
	// The challenge outlives this request: the browser comes back for the
	// answer. It ends at its expiry at the latest (Hold closes it then).
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rule.Timeout+time.Minute)
	go func() {
		defer cancel()
		var first *pushauth.Challenge
		c, err := g.Engine.Hold(hctx, user, spec, func(c *pushauth.Challenge) {
			first = c
			got <- started{c: c}
		})
		if first == nil {
			got <- started{err: err}
			return
		}
		if err == nil && c != nil && c.Status == pushauth.StatusApproved {
			return // the waiting page's continue hands the answer over
		}
		// Denied, expired, cancelled, superseded, or the store failed:
		// the session the bank opened must not stand.
		g.bankLogout(fr, next, rule, rec.header)
		g.abandonLogin(hctx, waitLoginMark(m.session, first))
	}()
	st := <-got
	if st.err != nil || st.c == nil {
		g.bankLogout(fr, next, rule, rec.header)
		g.abandonLogin(ctx, m)
		if st.err == nil {
			st.err = errors.New("onepush: challenge not started")
		}
		return g.startFailed(w, r, rule, user, st.err)
	}
	g.note(r, "challenge_id", st.c.ID)
	return g.sendWaitPage(w, r, rule, st.c, tok, &m.session)
}

// releaseResponse hands the stored bank answer of an approved
// password-first login to the browser that started it (replay checked the
// session, the approval and that this is the first release), and learns
// the session it sets, unless a later login on the same session took over:
// then the bank's session is logged out instead.
func (g *Gate) releaseResponse(w http.ResponseWriter, r *http.Request, next Next, rule *policy.Rule, c *pushauth.Challenge, session string) error {
	ctx := r.Context()
	resp := c.Response
	if rule == nil {
		g.render(w, r, http.StatusConflict, PageSuperseded, c.ID, "")
		return nil
	}
	m := waitLoginMark(session, c)
	unlock, ok := sessionLocks.lock(ctx, m.session)
	if !ok {
		g.bankLogout(r, next, rule, resp.Header)
		g.abandonLogin(ctx, m)
		return nil
	}
	defer unlock()
	current, err := g.loginCurrent(ctx, m)
	if err != nil || !current {
		g.bankLogout(r, next, rule, resp.Header)
		if err != nil {
			return g.unavailable(w, r, rule, err)
		}
		g.render(w, r, http.StatusConflict, PageSuperseded, c.ID, "")
		return nil
	}
	g.completeLogin(context.WithoutCancel(ctx), m, g.learnedSession(rule, m, resp.Status, resp.Header, true, false))
	g.Log.Info("releasing the bank's answer to an approved login", "challenge", c.ID, "user", c.UserKey, "rule", c.Rule, "via", c.Via)
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
	return nil
}

// dropBankSession keeps a bank session the gateway did not approve from the
// browser: the session is logged out at the bank, and every cookie the
// answer sets is stripped — the session cookie, and any other a bank may
// keep a login in (an authentication token, a remember-me cookie).
func (g *Gate) dropBankSession(r *http.Request, next Next, rule *policy.Rule, loginResp http.Header) {
	g.bankLogout(r, next, rule, loginResp)
	loginResp.Del("Set-Cookie")
}

// bankLogout calls the bank's logout with the session its login response
// set — or, when it set none (the bank kept the session ID), the request's
// own, if the login carried one — so a login the phone did not approve
// leaves no usable session.
func (g *Gate) bankLogout(r *http.Request, next Next, rule *policy.Rule, loginResp http.Header) {
	name := g.Policy.Session.Cookie
	if rule.Success != nil && rule.Success.SetCookie != "" {
		name = rule.Success.SetCookie
	}
	session := setCookieValue(loginResp, name)
	if session == "" && g.Policy.Session.Cookie != "" {
		if own, ok := g.requestSession(r); ok && own != "" {
			name, session = g.Policy.Session.Cookie, own
		}
	}
	if session == "" || rule.Logout == nil {
		return
	}
	req := r.Clone(context.WithoutCancel(r.Context()))
	req.Method = rule.Logout.Method
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = rule.Logout.Path, "", ""
	req.RequestURI = rule.Logout.Path
	req.Body, req.ContentLength, req.GetBody = http.NoBody, 0, nil
	req.Header = http.Header{"User-Agent": {"onepush-gateway"}}
	req.AddCookie(&http.Cookie{Name: name, Value: session})
	dw := &discardWriter{}
	if err := next(dw, req); err != nil {
		g.Log.Error("logging out an unapproved bank session failed", "rule", rule.Name, "error", err)
		return
	}
	g.Log.Info("logged out an unapproved bank session", "rule", rule.Name)
}

// responseBuffer keeps the bank's response to a login until the phone
// decides.
type responseBuffer struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (b *responseBuffer) Header() http.Header { return b.header }

func (b *responseBuffer) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *responseBuffer) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	if b.body.Len()+len(p) > maxHeldResponse {
		b.overflow = true
		return len(p), nil
	}
	return b.body.Write(p)
}

func (b *responseBuffer) writeTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range b.header {
		h[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
