package gate

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/enrol"
)

// refusePage maps a refusing Access to its page.
func refusePage(a pushauth.Access) string {
	switch a {
	case pushauth.AccessLocked:
		return PageLocked
	case pushauth.AccessSuspended:
		return PageSuspended
	case pushauth.AccessReenrol:
		return PageReenrol
	}
	return PageNotEnrolled
}

// EnrolTicketCookie lets a user whom a login rule refused for want of a
// phone reach the enrolment page: the bank accepted the password, the
// gateway kept the bank's session from the browser and gave this instead.
const EnrolTicketCookie = "onepush_enrol"

// enrolTicketTTL bounds how long such a ticket may be used.
const enrolTicketTTL = 15 * time.Minute

func enrolTicketHash(tok string) string { return pushauth.SessionHash("enrol-ticket\x00" + tok) }

// refuseLogin answers a login of a user a not_enrolled: enrol rule
// refuses for want of a phone: the bank checks the password first, on a
// session of its own (the request's session cookie is not forwarded, see
// withoutSession, so a bank that keeps its ID does not hand the refused
// user the session the request carries). When its answer meets the rule's
// success condition, its session is logged out and never reaches the
// browser, which gets an enrolment ticket and the form instead. Any other
// answer — a wrong password, or a success the policy does not recognise (a
// next= redirect) — is the bank's own page, with its session logged out
// and every cookie it sets stripped.
func (g *Gate) refuseLogin(w http.ResponseWriter, r *http.Request, next Next, rule *policy.Rule, u *pushauth.User, a pushauth.Access, body []byte) error {
	if g.EnrollPath == "" || rule.Success == nil {
		g.refuse(w, r, rule, u, a, "")
		return nil
	}
	fr := g.withoutSession(r)
	rec := &responseBuffer{header: http.Header{}}
	if err := g.forward(rec, fr, next, body, nil, "", nil); err != nil {
		return err
	}
	if rec.overflow {
		g.Log.Error("login response too large to check; refused", "rule", rule.Name, "user", u.Key)
		g.bankLogout(fr, next, rule, rec.header)
		g.render(w, r, http.StatusBadGateway, PageUnavailable, "", "")
		return nil
	}
	if !rule.Success.Matches(rec.status, rec.header) {
		g.dropBankSession(fr, next, rule, rec.header)
		rec.writeTo(w)
		return nil
	}
	return g.refuseAccepted(w, fr, next, rule, u, a, rec.header)
}

// refuseAccepted refuses a login the bank has accepted (its response
// header is loginResp): the bank's session is logged out when the rule says
// how, and never reaches the browser; a user who can fix the refusal by
// registering a phone gets an enrolment ticket and the form.
func (g *Gate) refuseAccepted(w http.ResponseWriter, r *http.Request, next Next, rule *policy.Rule, u *pushauth.User, a pushauth.Access, loginResp http.Header) error {
	g.bankLogout(r, next, rule, loginResp)
	if (a != pushauth.AccessReenrol && a != pushauth.AccessNotEnrolled) || g.EnrollPath == "" {
		g.refuse(w, r, rule, u, a, "")
		return nil
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	t := base64.RawURLEncoding.EncodeToString(tok)
	if err := g.Engine.Store().PutSession(r.Context(), enrolTicketHash(t), u.Key, enrolTicketTTL); err != nil {
		g.Engine.StoreFailed("put_session", err)
		g.refuse(w, r, rule, u, a, "")
		return nil
	}
	http.SetCookie(w, &http.Cookie{Name: EnrolTicketCookie, Value: t, Path: g.EnrollPath, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(enrolTicketTTL / time.Second)})
	g.refuse(w, r, rule, u, a, g.enrolForm(r, enrolTicketHash(t), enrol.ProofFor(u, g.Policy.Enrolment)))
	return nil
}

// refuse renders the page for a refusing Access and audits it.
func (g *Gate) refuse(w http.ResponseWriter, r *http.Request, rule *policy.Rule, u *pushauth.User, a pushauth.Access, form template.HTML) {
	ip := g.clientIP(r)
	g.Log.Info("request refused: "+a.String(), "rule", rule.Name, "user", u.Key, "state", string(u.State))
	// Anyone may post logins naming any user: aggregated by user and by
	// address, so neither random names nor many addresses flood the trail.
	g.Engine.RecordAggregated(r.Context(), pushauth.AuditEvent{Type: pushauth.AuditRefused, User: u.Key, Credential: u.CredentialID, Rule: rule.Name,
		ClientIP: ip, Outcome: a.String(), Actor: "gateway"},
		"refused\x00"+a.String()+"\x00"+u.Key, "refused\x00"+a.String()+"\x00"+pushauth.AddressKey(ip))
	g.render(w, r, http.StatusForbidden, refusePage(a), "", form)
}

// enrolTicketUser returns the user of the request's enrolment ticket.
func (g *Gate) enrolTicketUser(r *http.Request) (user, hash string, err error) {
	ck, cerr := r.Cookie(EnrolTicketCookie)
	if cerr != nil || ck.Value == "" {
		return "", "", nil
	}
	h := enrolTicketHash(ck.Value)
	k, err := g.Engine.Store().GetSession(r.Context(), h)
	if errors.Is(err, pushauth.ErrNotFound) {
		return "", "", nil
	}
	return k, h, err
}
