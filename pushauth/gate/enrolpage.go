package gate

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/enrol"
)

// EnrolFormTokenField is the enrolment form's anti-forgery token: random,
// one at a time per bank session or enrolment ticket and valid only with
// it, used up by a post, for at most enrolTicketTTL.
const EnrolFormTokenField = "form_token"

// crossOrigin refuses a post whose Sec-Fetch-Site or Origin shows it was
// sent from another site.
var crossOrigin = http.NewCrossOriginProtection()

// formTokenKey is where the form token of a session (or ticket) hash is
// kept: one per session, so opening the page again and again costs the
// store nothing more.
func formTokenKey(binding string) string { return pushauth.SessionHash("enrol-form\x00" + binding) }

// passwordProofKey marks a bank session whose login the bank accepted by
// the rule's success condition, for a user who may bind a first phone with
// the password alone.
func passwordProofKey(session string) string {
	return pushauth.SessionHash("enrol-password\x00" + session)
}

// enrolVisitor is who the enrolment page is for.
type enrolVisitor struct {
	user string
	// binding is what the form's token is tied to: the hash of the bank
	// session or of the enrolment ticket.
	binding string
	// ticket is the ticket's hash when the visitor came with one.
	ticket string
	// proven: the bank accepted the user's password by an explicit success
	// condition (every ticket, a session marked at its login).
	proven bool
}

// enrolVisitor finds the user of the request's learned bank session, else
// of its enrolment ticket; user "" when neither.
func (g *Gate) enrolVisitor(r *http.Request) (enrolVisitor, error) {
	ctx := r.Context()
	store := g.Engine.Store()
	if name := g.Policy.Session.Cookie; name != "" {
		if ck, err := r.Cookie(name); err == nil && ck.Value != "" {
			h := pushauth.SessionHash(ck.Value)
			// A session whose login is pending means nobody yet (the
			// mapping beside the mark is what it meant before).
			user, pending, err := g.sessionUser(ctx, ck.Value)
			if err != nil {
				return enrolVisitor{}, err
			}
			if user != "" && !pending {
				proof, err := store.GetSession(ctx, passwordProofKey(ck.Value))
				if err != nil && !errors.Is(err, pushauth.ErrNotFound) {
					return enrolVisitor{}, err
				}
				return enrolVisitor{user: user, binding: h, proven: proof == user}, nil
			}
		}
	}
	user, h, err := g.enrolTicketUser(r)
	if err != nil || user == "" {
		return enrolVisitor{}, err
	}
	return enrolVisitor{user: user, binding: h, ticket: h, proven: true}, nil
}

// EnrolPage is the enrolment form a user binds a phone with, at the
// gate's EnrollPath, in the session the bank gave at login (or with an
// enrolment ticket a refused login got).
type EnrolPage struct{ *Gate }

// Serve answers one request of the enrolment page.
func (p EnrolPage) Serve(w http.ResponseWriter, r *http.Request) error {
	stripVerifiedHeaders(r.Header)
	return p.serveEnroll(w, r)
}

// serveEnroll is the PC side of enrolment: the user of the current learned
// session (or of the enrolment ticket a refused login got) types the new
// phone's credential ID and security code, and an activation code where the
// policy asks for one. Posts must come from the gateway's own form: same
// site, with its token. After binding, a test push goes to the phone.
func (g *Gate) serveEnroll(w http.ResponseWriter, r *http.Request) error {
	v, err := g.enrolVisitor(r)
	if err != nil {
		g.Engine.StoreFailed("get_session", err)
		g.render(w, r, http.StatusServiceUnavailable, PageUnavailable, "", "")
		return nil
	}
	if v.user == "" {
		// Nobody logged in: nothing was attempted, so nothing to say
		// about a request; say what to do.
		g.render(w, r, http.StatusForbidden, PageEnrollLogin, "", "")
		return nil
	}
	ctx := r.Context()
	u, err := g.Engine.Store().GetUser(ctx, v.user)
	if errors.Is(err, pushauth.ErrNotFound) {
		u, err = &pushauth.User{Key: v.user}, nil
	}
	if err != nil {
		g.Engine.StoreFailed("get_user", err)
		g.render(w, r, http.StatusServiceUnavailable, PageUnavailable, "", "")
		return nil
	}
	proof := enrol.ProofFor(u, g.Policy.Enrolment)
	form := func() template.HTML { return g.enrolForm(r, v.binding, proof) }
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		g.render(w, r, http.StatusOK, PageEnroll, "", form())
		return nil
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return nil
	}
	if err := crossOrigin.Check(r); err != nil {
		g.forgedEnrolment(w, r, v, "cross-site post: "+err.Error())
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		g.render(w, r, http.StatusBadRequest, PageBadRequest, "", "")
		return nil
	}
	ok, err := g.takeFormToken(ctx, r.PostForm.Get(EnrolFormTokenField), v.binding)
	if err != nil {
		g.Engine.StoreFailed("get_session", err)
		g.render(w, r, http.StatusServiceUnavailable, PageUnavailable, "", "")
		return nil
	}
	if !ok {
		g.forgedEnrolment(w, r, v, "missing, used or foreign form token")
		return nil
	}
	cred, err := g.Binder.Enroll(ctx, enrol.Attempt{
		User: v.user, CredentialID: r.PostForm.Get("credential_id"), Code: r.PostForm.Get("code"),
		ActivationCode: r.PostForm.Get("activation_code"), PasswordProven: v.proven, ClientIP: g.clientIP(r),
		Enrolment: g.Policy.Enrolment,
	})
	switch {
	case err == nil:
		if v.ticket != "" {
			_ = g.Engine.Store().DeleteSession(ctx, v.ticket)
			http.SetCookie(w, &http.Cookie{Name: EnrolTicketCookie, Value: "", Path: g.EnrollPath, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		}
		page := PageEnrolled
		if g.Binder.TestPush(ctx, cred, v.user) == "sent" {
			page = PageEnrolledPushed
		}
		g.render(w, r, http.StatusOK, page, "", "")
	case errors.Is(err, pushauth.ErrUnknownCredential):
		g.render(w, r, http.StatusBadRequest, PageEnrollUnknown, "", form())
	case errors.Is(err, pushauth.ErrBadCode):
		g.render(w, r, http.StatusBadRequest, PageEnrollBadCode, "", form())
	case errors.Is(err, enrol.ErrBadActivationCode):
		g.render(w, r, http.StatusBadRequest, PageEnrollBadActivation, "", form())
	case errors.Is(err, enrol.ErrActivationRequired):
		g.render(w, r, http.StatusForbidden, PageEnrollActivation, "", form())
	case errors.Is(err, enrol.ErrLoginNotConfirmed):
		g.render(w, r, http.StatusForbidden, PageEnrollNotConfirmed, "", form())
	case errors.Is(err, pushauth.ErrAlreadyBound):
		g.render(w, r, http.StatusConflict, PageEnrollBound, "", form())
	case errors.Is(err, enrol.ErrSupportOnly):
		g.render(w, r, http.StatusForbidden, PageEnrollSupport, "", "")
	case errors.Is(err, pushauth.ErrLocked):
		g.render(w, r, http.StatusForbidden, PageLocked, "", "")
	case errors.Is(err, enrol.ErrEnrolRateLimited):
		w.Header().Set("Retry-After", "60")
		g.render(w, r, http.StatusTooManyRequests, PageEnrollBusy, "", "")
	default:
		g.Log.Error("enrolment failed", "user", v.user, "error", err)
		g.render(w, r, http.StatusServiceUnavailable, PageUnavailable, "", "")
	}
	return nil
}

// forgedEnrolment refuses a post that did not come from the gateway's own
// form in this session. It binds nothing and counts nothing (the user's
// browser may have been made to send it), but is audited.
func (g *Gate) forgedEnrolment(w http.ResponseWriter, r *http.Request, v enrolVisitor, why string) {
	g.Log.Warn("enrolment post refused: not from this session's form", "user", v.user, "reason", why, "client_ip", g.clientIP(r))
	g.Engine.RecordAggregated(r.Context(), pushauth.AuditEvent{Type: pushauth.AuditEnrolment, User: v.user,
		ClientIP: g.clientIP(r), Outcome: "forged", Actor: "browser", Detail: why}, "enrol-forged\x00"+v.user)
	g.render(w, r, http.StatusForbidden, PageEnrollForged, "", "")
}

// enrolForm is the enrolment form with the anti-forgery token of binding
// (a new one unless the session has one); the activation code field is
// required when proof asks for one. Without a token (the store failed)
// there is no form: a post could not succeed.
func (g *Gate) enrolForm(r *http.Request, binding string, proof policy.Proof) template.HTML {
	tok, err := g.Engine.Store().GetSession(r.Context(), formTokenKey(binding))
	if errors.Is(err, pushauth.ErrNotFound) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return ""
		}
		tok = base64.RawURLEncoding.EncodeToString(b)
		err = g.Engine.Store().PutSession(r.Context(), formTokenKey(binding), tok, enrolTicketTTL)
	}
	if err != nil {
		g.Engine.StoreFailed("put_session", err)
		return ""
	}
	lang := Lang(r)
	required, label := "", uiLabels[lang]["actcode_optional"]
	if proof != policy.ProofPassword {
		required, label = " required", uiLabels[lang]["actcode"]
	}
	return template.HTML(fmt.Sprintf(`<form method="post" action="%s"><input type="hidden" name="%s" value="%s">`+
		`<label for="cred">%s</label><input id="cred" name="credential_id" autocomplete="off" maxlength="64" required value="%s">`+
		`<label for="code">%s</label><input id="code" name="code" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" autocomplete="one-time-code" required>`+
		`<label for="actcode">%s</label><input id="actcode" name="activation_code" autocomplete="off" maxlength="16"%s>`+
		`<button type="submit">%s</button></form>`,
		template.HTMLEscapeString(g.EnrollPath), EnrolFormTokenField, tok,
		uiLabels[lang]["cred"], template.HTMLEscapeString(typedCredential(r)), uiLabels[lang]["code"], label, required, uiLabels[lang]["submit"]))
}

// typedCredential is the app ID the visitor typed in the post being
// answered, kept in the form after a wrong code so she types only the
// code again; "" for a first visit or an ID longer than any app's.
func typedCredential(r *http.Request) string {
	if r.Method != http.MethodPost || r.PostForm == nil {
		return ""
	}
	id := strings.TrimSpace(r.PostForm.Get("credential_id"))
	if len(id) > 64 {
		return ""
	}
	return id
}

// takeFormToken checks a posted token against binding's and uses it up
// when it matches.
func (g *Gate) takeFormToken(ctx context.Context, tok, binding string) (bool, error) {
	if tok == "" {
		return false, nil
	}
	key := formTokenKey(binding)
	want, err := g.Engine.Store().GetSession(ctx, key)
	if errors.Is(err, pushauth.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(want)) != 1 {
		return false, nil
	}
	return true, g.Engine.Store().DeleteSession(ctx, key)
}

// forwardPasswordOnly forwards a login the user's state lets in on the
// password alone. When the rule says how the bank shows an accepted login,
// the session is learned only from such an answer (see learningWriter), and
// the session of a user who may bind a first phone with the password is
// marked so the enrolment page can tell: a bank that sets its cookie on a
// failed login too must not make a wrong password look right.
func (g *Gate) forwardPasswordOnly(w http.ResponseWriter, r *http.Request, next Next, rule *policy.Rule, u *pushauth.User, body []byte) error {
	if !g.beginLogin(w, r, rule) {
		return nil
	}
	mark := rule.Kind == policy.KindLogin && rule.Success != nil &&
		g.EnrollPath != "" && !u.HadPhone() && g.Policy.Enrolment.First == policy.ProofPassword
	if !mark {
		return g.forward(w, r, next, body, rule, u.Key, nil)
	}
	ctx := context.WithoutCancel(r.Context())
	aw := &acceptedWriter{ResponseWriter: w, accepted: func(status int, h http.Header) {
		if rule.Success.Matches(status, h) {
			g.markPasswordProven(ctx, h, u.Key)
		}
	}}
	return g.forward(aw, r, next, body, rule, u.Key, nil)
}

// markPasswordProven marks the bank session the login hands over: the one
// set in h, or the request's own when the bank kept its ID.
func (g *Gate) markPasswordProven(ctx context.Context, h http.Header, user string) {
	session := setCookieValue(h, g.Policy.Session.Cookie)
	if m := loginMarkOf(ctx); session == "" && m != nil {
		session = m.session
	}
	if session == "" {
		return
	}
	if err := g.Engine.Store().PutSession(ctx, passwordProofKey(session), user, enrolTicketTTL); err != nil {
		g.Engine.StoreFailed("put_session", err)
	}
}

// acceptedWriter calls accepted with the bank's status and header before
// they reach the browser.
type acceptedWriter struct {
	http.ResponseWriter
	accepted func(status int, h http.Header)
	written  bool
}

func (a *acceptedWriter) WriteHeader(status int) {
	if !a.written {
		a.written = true
		a.accepted(status, a.Header())
	}
	a.ResponseWriter.WriteHeader(status)
}

func (a *acceptedWriter) Write(b []byte) (int, error) {
	if !a.written {
		a.WriteHeader(http.StatusOK)
	}
	return a.ResponseWriter.Write(b)
}

func (a *acceptedWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }
