package gate

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
)

// Session learning, for banks that rotate their session ID at login and for
// banks that keep it (many Java and ASP applications upgrade the session
// the browser already has):
//
//   - a login that will reach the bank (forwarded now, or held for the
//     phone and forwarded on approval) marks the session it was started in
//     as pending for its user; a login refused before it reaches the bank
//     (the user's state, a denial, a timeout) marks nothing, and a held
//     login that ends without being forwarded clears its mark
//     (abandonLogin), so the session keeps meaning what it meant;
//   - a transaction on a session whose login is pending is refused;
//   - when the bank answers the login, the session it hands to the browser
//     is mapped to the login's user (learnedSession says which, if any),
//     and the session the login was started in forgets what it meant
//     before unless it is that session;
//   - a logout forgets both.
//
// The mapping SessionHash(cookie) → user keeps its format (the enrolment
// page and older instances read it); the pending mark lives beside it under
// loginPendingHash(cookie) with "<nonce>\x00<user>", the nonce naming the
// login that wrote it, so only the latest login on a session completes. A
// login on a session the gateway never mapped writes no mark (see
// markLogin); it completes only if nobody was mapped to the session since.
// Within one process everything that reaches the bank on one session is
// serialised (sessionLocks), so the bank's order of logins and transfers on
// a session is the order the gateway checked them in.

// loginMark is a login in flight on the session it was started in.
type loginMark struct {
	session string // the request's own session cookie value; "" when none
	nonce   string // the interstitial challenge's ID, or a random one
	user    string
}

type loginMarkKey struct{}

func withLoginMark(ctx context.Context, m *loginMark) context.Context {
	return context.WithValue(ctx, loginMarkKey{}, m)
}

func loginMarkOf(ctx context.Context) *loginMark {
	m, _ := ctx.Value(loginMarkKey{}).(*loginMark)
	return m
}

func loginPendingHash(session string) string {
	return pushauth.SessionHash("login-pending\x00" + session)
}

func (m *loginMark) value() string { return m.nonce + "\x00" + m.user }

// pendingTTL keeps a login's mark for as long as its challenge can still be
// released (an approved interstitial request is replayable until its record
// ages out).
func (g *Gate) pendingTTL(rule *policy.Rule) time.Duration {
	return rule.Timeout + g.Engine.Retention() + time.Minute
}

// markLogin records m as the login pending on its session, replacing an
// earlier pending login there. The user the session was mapped to stays
// recorded beside the mark (a pending mark overrides it, see sessionUser)
// so that a login that ends without reaching the bank gives it back
// (abandonLogin); a login the bank answers replaces or forgets it
// (completeLogin). A session the gateway never mapped and where no login is
// pending is not marked: nothing is attributed to it anyway, and a mark per
// unknown cookie would let anyone grow the store with made-up cookies. An
// error means the session could not be read or marked: the login must not
// go on (fail closed).
func (g *Gate) markLogin(ctx context.Context, rule *policy.Rule, m *loginMark) error {
	if m == nil || m.session == "" {
		return nil
	}
	for _, h := range []string{pushauth.SessionHash(m.session), loginPendingHash(m.session)} {
		_, err := g.Engine.Store().GetSession(ctx, h)
		if err == nil {
			if err := g.Engine.Store().PutSession(ctx, loginPendingHash(m.session), m.value(), g.pendingTTL(rule)); err != nil {
				g.Engine.StoreFailed("put_session", err)
				return err
			}
			return nil
		}
		if !errors.Is(err, pushauth.ErrNotFound) {
			g.Engine.StoreFailed("get_session", err)
			return err
		}
	}
	return nil
}

// beginLogin writes the pending mark of the login in r's context (if any),
// now that the login will reach the bank. false: the store failed and the
// request has been answered (503).
func (g *Gate) beginLogin(w http.ResponseWriter, r *http.Request, rule *policy.Rule) bool {
	if err := g.markLogin(r.Context(), rule, loginMarkOf(r.Context())); err != nil {
		_ = g.unavailable(w, r, rule, err)
		return false
	}
	return true
}

// abandonLogin clears the pending mark of a login that ends without the
// bank having seen it on its session (denied, expired, cancelled,
// superseded, refused): the session means again what it meant before. Only
// m's own mark is cleared; a later login's stays. (Read and delete are two
// steps: a later login marking in between loses its mark, and then fails
// loginCurrent and is refused — closed, not open.)
func (g *Gate) abandonLogin(ctx context.Context, m *loginMark) {
	if m == nil || m.session == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	v, err := g.Engine.Store().GetSession(ctx, loginPendingHash(m.session))
	if err != nil || subtle.ConstantTimeCompare([]byte(v), []byte(m.value())) != 1 {
		return
	}
	if err := g.Engine.Store().DeleteSession(ctx, loginPendingHash(m.session)); err != nil {
		g.Engine.StoreFailed("delete_session", err)
	}
}

// loginCurrent reports whether m may still complete: it is the pending
// login of its session, or, when no login is pending there, the session is
// mapped to nobody (m's session was unknown and nobody was mapped to it
// since; a marked login whose mark is gone fails here, closed).
func (g *Gate) loginCurrent(ctx context.Context, m *loginMark) (bool, error) {
	if m == nil || m.session == "" {
		return true, nil
	}
	store := g.Engine.Store()
	v, err := store.GetSession(ctx, loginPendingHash(m.session))
	switch {
	case err == nil:
		return v == m.value(), nil
	case !errors.Is(err, pushauth.ErrNotFound):
		g.Engine.StoreFailed("get_session", err)
		return false, err
	}
	_, err = store.GetSession(ctx, pushauth.SessionHash(m.session))
	switch {
	case errors.Is(err, pushauth.ErrNotFound):
		return true, nil
	case err != nil:
		g.Engine.StoreFailed("get_session", err)
		return false, err
	}
	return false, nil
}

// completeLogin ends login m once the bank has answered it: learned (the
// session the answer hands to the browser, "" for none) is mapped to m's
// user, the session the login was started in forgets what it meant unless
// it is the learned one, and its pending mark is cleared. The caller holds
// the session's lock and has checked loginCurrent.
func (g *Gate) completeLogin(ctx context.Context, m *loginMark, learned string) {
	store := g.Engine.Store()
	if learned != "" && m.user != "" {
		if err := store.PutSession(ctx, pushauth.SessionHash(learned), m.user, g.Policy.Session.TTL); err != nil {
			g.Engine.StoreFailed("put_session", err)
			g.Log.Error("learning session", "user", m.user, "error", err)
		} else {
			g.Log.Info("session learned", "user", m.user, "kept", learned == m.session)
		}
	}
	if m.session == "" {
		return
	}
	if m.session != learned {
		if err := store.DeleteSession(ctx, pushauth.SessionHash(m.session)); err != nil {
			g.Engine.StoreFailed("delete_session", err)
		}
	}
	if err := store.DeleteSession(ctx, loginPendingHash(m.session)); err != nil {
		g.Engine.StoreFailed("delete_session", err)
	}
}

// sessionUser returns the user a bank session was mapped to at login, ""
// when the gateway learned none, and whether a login on it is pending.
func (g *Gate) sessionUser(ctx context.Context, session string) (user string, pending bool, err error) {
	if session == "" {
		return "", false, nil
	}
	store := g.Engine.Store()
	user, err = store.GetSession(ctx, pushauth.SessionHash(session))
	if errors.Is(err, pushauth.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	_, err = store.GetSession(ctx, loginPendingHash(session))
	if errors.Is(err, pushauth.ErrNotFound) {
		return user, false, nil
	}
	if err != nil {
		return "", false, err
	}
	return user, true, nil
}

// forgetSession drops what the gateway knows about a session (logout).
func (g *Gate) forgetSession(ctx context.Context, session string) {
	for _, h := range []string{pushauth.SessionHash(session), loginPendingHash(session)} {
		if err := g.Engine.Store().DeleteSession(ctx, h); err != nil {
			g.Log.Warn("forgetting session", "error", err)
		}
	}
}

// setCookieValue returns the value of cookie name set in h ("" when h sets
// none, or clears it: see policy.SetCookieValue).
func setCookieValue(h http.Header, name string) string { return policy.SetCookieValue(h, name) }

// withoutSession returns a copy of r whose Cookie header no longer
// carries the bank's session cookie (its name compared without case, as a
// lenient server might), for a login the bank checks before the gateway
// has decided (after_success, not_enrolled: enrol): the bank opens a new
// session, which the gateway holds or logs out, instead of upgrading the
// one the request carries. Other cookies are kept as sent.
func (g *Gate) withoutSession(r *http.Request) *http.Request {
	fr := r.Clone(r.Context())
	name := g.Policy.Session.Cookie
	if name == "" {
		return fr
	}
	var keep []string
	for _, line := range fr.Header.Values("Cookie") {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.TrimSpace(part)
			n, _, _ := strings.Cut(part, "=")
			if part == "" || strings.EqualFold(strings.TrimSpace(n), name) {
				continue
			}
			keep = append(keep, part)
		}
	}
	fr.Header.Del("Cookie")
	if len(keep) > 0 {
		fr.Header.Set("Cookie", strings.Join(keep, "; "))
	}
	return fr
}

// requestSession returns the request's bank session cookie, and false when
// it carries the cookie more than once (ambiguous: refuse).
func (g *Gate) requestSession(r *http.Request) (string, bool) {
	name := g.Policy.Session.Cookie
	if name == "" {
		return "", true
	}
	cs := r.CookiesNamed(name)
	switch len(cs) {
	case 0:
		return "", true
	case 1:
		return cs[0].Value, true
	}
	return "", false
}

// sessionHashOf is what a challenge records of the session it was started
// in: SessionHash of the cookie, "" for none.
func sessionHashOf(session string) string {
	if session == "" {
		return ""
	}
	return pushauth.SessionHash(session)
}

// sessionLocks serialise, within this process, everything that reaches the
// bank on one bank session: a login's forward and what it learns, and a
// transaction's last check and forward. Entries live only while held or
// awaited, so the map is bounded by the requests in flight.
var sessionLocks = keyedLocks{m: map[string]*keyedLock{}}

type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{} // one slot: held while full
	refs int           // holders and waiters
}

// lock waits for the session's lock, or until ctx ends (ok false). "" is
// never locked: a request without a session has nothing to serialise.
func (k *keyedLocks) lock(ctx context.Context, session string) (unlock func(), ok bool) {
	if session == "" {
		return func() {}, true
	}
	key := pushauth.SessionHash(session)
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, true
	case <-ctx.Done():
		release()
		return nil, false
	}
}
