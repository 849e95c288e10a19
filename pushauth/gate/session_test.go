package gate

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	examplepolicy "github.com/onepush/onepush/examples/policy"
	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// TestWithoutSessionAndSetCookieValue: a login the bank checks before the
// gateway decides reaches it without the session cookie, in any spelling
// of its name, and with every other cookie; what a Set-Cookie hands over.
func TestWithoutSessionAndSetCookieValue(t *testing.T) {
	g := &Gate{Policy: &policy.Policy{Session: policy.SessionConfig{Cookie: "BANKSESSION"}}}
	r, _ := http.NewRequest(http.MethodPost, "http://bank.example/login", nil)
	r.Header.Add("Cookie", "lang=ja; BANKSESSION=abc")
	r.Header.Add("Cookie", " banksession =def;csrf=t1")
	fr := g.withoutSession(r)
	if got := fr.Header.Values("Cookie"); !reflect.DeepEqual(got, []string{"lang=ja; csrf=t1"}) {
		t.Fatalf("forwarded cookies: %q", got)
	}
	if len(r.Header.Values("Cookie")) != 2 {
		t.Fatal("the request itself was changed")
	}
	if setCookieValue(http.Header{"Set-Cookie": {"S=v; Max-Age=0", "S=; Path=/"}}, "S") != "" {
		t.Error("a cleared cookie counted as a session")
	}
	if setCookieValue(http.Header{"Set-Cookie": {"S=v1", "T=x"}}, "S") != "v1" {
		t.Error("set session not found")
	}
	// How many frameworks delete a cookie: a value and an Expires in the
	// past. Such a value is nobody's session, never one to learn or to
	// log out instead of the request's own.
	for _, line := range []string{
		"S=deleted; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Path=/",
		"S=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT",
	} {
		if v := setCookieValue(http.Header{"Set-Cookie": {line}}, "S"); v != "" {
			t.Errorf("%q counted as setting session %q", line, v)
		}
	}
	if setCookieValue(http.Header{"Set-Cookie": {"S=v1", "S=deleted; Max-Age=0"}}, "S") != "" {
		t.Error("a session set and then cleared in one answer counted as set")
	}
	if setCookieValue(http.Header{"Set-Cookie": {"S=v2; Expires=Fri, 01 Jan 2100 00:00:00 GMT"}}, "S") != "v2" {
		t.Error("a session with an Expires in the future not found")
	}
}

// TestSessionLocksSerialiseAndStayBounded: one holder per session at a
// time, waiters give up when their request ends, and no entry outlives its
// holders and waiters.
func TestSessionLocksSerialiseAndStayBounded(t *testing.T) {
	k := keyedLocks{m: map[string]*keyedLock{}}
	unlock, ok := k.lock(context.Background(), "s1")
	if !ok {
		t.Fatal("first lock refused")
	}
	other, ok := k.lock(context.Background(), "s2")
	if !ok {
		t.Fatal("another session's lock waited")
	}
	other()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := k.lock(ctx, "s1"); ok {
		t.Fatal("second holder of s1 while the first holds it")
	}
	got := make(chan struct{})
	go func() {
		u, ok := k.lock(context.Background(), "s1")
		if ok {
			u()
		}
		close(got)
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-got:
		t.Fatal("waiter got s1 before it was released")
	default:
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter never got s1")
	}
	k.mu.Lock()
	n := len(k.m)
	k.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d lock entries left with no holder", n)
	}
	if u, ok := k.lock(context.Background(), ""); !ok {
		t.Fatal("no session refused")
	} else {
		u()
	}
}

// keptSessionSetup is the gate in front of the real legacy bank, configured
// to keep its session ID at login, with alice (enrolled, poll-mode phone)
// and bob and carol (no phone; the example policy lets them in with the
// password alone).
type keptSessionSetup struct {
	t     *testing.T
	eng   *pushauth.Engine
	store *memory.Store
	bank  *bank.Bank
	cred  *pushauth.Credential
	url   string
}

func newKeptSessionSetup(t *testing.T) *keptSessionSetup {
	t.Helper()
	eng, store := pushauthtest.Engine(t, pushauth.Config{PushRate: 100})
	_, cred, _ := pushauthtest.Phone(t, eng, "1001/alice")
	// The bank keeps its session ID, so its successful login sets no cookie
	// and the policy's success condition cannot ask for one.
	// ...and the login is held until the phone approves (the example's
	// password-first lines taken out: this is about held logins).
	held := regexp.MustCompile(`(?m)^    (challenge: after_success|mode: interstitial|logout: \{method: POST, path: /logout\}) .*\n`).ReplaceAll(examplepolicy.Bank, nil)
	if bytes.Equal(held, examplepolicy.Bank) {
		t.Fatal("the example policy's login is no longer password-first")
	}
	pol, err := policy.Parse("bank.yaml", bytes.Replace(held, []byte("set_cookie: BANKSESSION, "), nil, 1))
	if err != nil {
		t.Fatal(err)
	}
	pages, err := NewPages("", "/")
	if err != nil {
		t.Fatal(err)
	}
	b := bank.New(bank.Config{Users: bank.DefaultUsers(), KeepSessionIDAtLogin: true})
	gate := &Gate{Engine: eng, Policy: pol, Pages: pages, Log: pushauthtest.Quiet()}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = gate.Route(w, r, func(w http.ResponseWriter, r *http.Request) error { b.ServeHTTP(w, r); return nil })
	}))
	t.Cleanup(srv.Close)
	return &keptSessionSetup{t: t, eng: eng, store: store, bank: b, cred: cred, url: srv.URL}
}

// newSessionOf is a setup and the bank session that u's login (no phone:
// password only) opened there, for later logins to ride on.
func newSessionOf(t *testing.T, u bank.User) (*keptSessionSetup, string) {
	s := newKeptSessionSetup(t)
	_, session := s.login(u, "")
	return s, session
}

// post sends form with the session cookie (none when "") and returns the
// status, the session the answer sets ("" none) and the body.
func (s *keptSessionSetup) post(path, session, form string) (int, string, string) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.url+path, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if session != "" {
		req.AddCookie(&http.Cookie{Name: bank.SessionCookieName, Value: session})
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	set := ""
	for _, c := range resp.Cookies() {
		if c.Name == bank.SessionCookieName {
			set = c.Value
		}
	}
	return resp.StatusCode, set, string(body)
}

func (s *keptSessionSetup) login(u bank.User, session string) (int, string) {
	st, set, _ := s.post("/login", session, url.Values{"contract_no": {u.ContractNo}, "user_id": {u.UserID}, "password": {u.Password}}.Encode())
	return st, set
}

// pending waits for alice's next pending challenge.
func (s *keptSessionSetup) pending() *pushauth.Challenge {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		cs, err := s.store.PendingForCredential(context.Background(), s.cred.ID)
		if err != nil {
			s.t.Fatal(err)
		}
		if len(cs) > 0 {
			return cs[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.t.Fatal("no pending challenge")
	return nil
}

// heldLogin posts u's login on session in the background and returns the
// channel its status arrives on and the challenge that holds it (u is the
// user of the phone pending watches: alice).
func (s *keptSessionSetup) heldLogin(u bank.User, session string) (<-chan int, *pushauth.Challenge) {
	res := make(chan int, 1)
	go func() { st, _ := s.login(u, session); res <- st }()
	return res, s.pending()
}

func (s *keptSessionSetup) approve(c *pushauth.Challenge) {
	s.t.Helper()
	if _, err := s.eng.ApproveWithCode(context.Background(), c.ID); err != nil {
		s.t.Fatal(err)
	}
}

func (s *keptSessionSetup) mapped(session string) string {
	u, err := s.store.GetSession(context.Background(), pushauth.SessionHash(session))
	if err != nil {
		return ""
	}
	return u
}

func (s *keptSessionSetup) ops(op string) []bank.Op {
	var out []bank.Op
	for _, o := range s.bank.OpsLog() {
		if o.Op == op {
			out = append(out, o)
		}
	}
	return out
}

// TestSessionLearningOnAKeptSession: what a session means follows the bank's
// own order of logins on it, for a bank that keeps the session ID.
func TestSessionLearningOnAKeptSession(t *testing.T) {
	alice, bob, carol := bank.DefaultUsers()[0], bank.DefaultUsers()[1], bank.DefaultUsers()[2]

	t.Run("a login with a made-up session cookie writes nothing", func(t *testing.T) {
		s := newKeptSessionSetup(t)
		if st, set := s.login(bob, "made-up-cookie"); st != http.StatusSeeOther || set == "" {
			t.Fatalf("login: %d %q", st, set)
		}
		for _, h := range []string{pushauth.SessionHash("made-up-cookie"), loginPendingHash("made-up-cookie")} {
			if _, err := s.store.GetSession(context.Background(), h); err == nil {
				t.Fatal("the gateway stored something for a session cookie it never learned")
			}
		}
	})

	t.Run("a retried login on the same session completes", func(t *testing.T) {
		s, session := newSessionOf(t, bob)
		first, c1 := s.heldLogin(alice, session)
		// A retry while the first waits stops both (approve-only: the
		// phone cannot tell them apart); the next retry completes.
		if st, _ := s.login(alice, session); st != http.StatusConflict {
			t.Fatalf("the concurrent retry: %d, want 409", st)
		}
		if st := <-first; st != http.StatusConflict {
			t.Fatalf("the first login, stopped by the concurrent retry: %d, want 409", st)
		}
		second, c2 := s.heldLogin(alice, session)
		if c2.ID == c1.ID {
			t.Fatal("no second challenge")
		}
		s.approve(c2)
		if st := <-second; st != http.StatusSeeOther {
			t.Fatalf("the retried login: %d, want 303", st)
		}
		if got := s.mapped(session); got != "1001/alice" {
			t.Fatalf("session mapped to %q, want alice", got)
		}
	})

	t.Run("a login approved after a later one completed on its session is refused", func(t *testing.T) {
		s, session := newSessionOf(t, bob)
		res, c := s.heldLogin(alice, session)
		if st, _ := s.login(carol, session); st != http.StatusSeeOther {
			t.Fatalf("carol's login on the session: %d", st)
		}
		s.approve(c)
		if st := <-res; st != http.StatusConflict {
			t.Fatalf("alice's stale login: %d, want 409", st)
		}
		if logins := s.ops(bank.OpLogin); len(logins) != 2 || logins[1].UserID != carol.UserID {
			t.Fatalf("bank logins = %+v, want bob's and carol's only", logins)
		}
		if got := s.mapped(session); got != "2002/carol" {
			t.Fatalf("session mapped to %q, want carol (the bank's last login on it)", got)
		}
	})

	t.Run("a transfer approved after another login on its session is refused", func(t *testing.T) {
		s, session := newSessionOf(t, bob)
		go s.login(alice, session)
		s.approve(s.pending())
		deadline := time.Now().Add(10 * time.Second)
		for s.mapped(session) != "1001/alice" {
			if time.Now().After(deadline) {
				t.Fatal("alice's login never completed")
			}
			time.Sleep(5 * time.Millisecond)
		}
		res := make(chan int, 1)
		go func() {
			st, _, _ := s.post("/transfer", session, url.Values{"payee_account": {"5550001"}, "amount": {"1200"}, "txn_password": {alice.TxnPassword}}.Encode())
			res <- st
		}()
		c := s.pending()
		if c.UserKey != "1001/alice" || c.Transaction == nil || c.Transaction.Amount != "1200" {
			t.Fatalf("transfer challenge = %+v", c)
		}
		// While alice's phone decides, bob logs in on the same session.
		if st, _ := s.login(bob, session); st != http.StatusSeeOther {
			t.Fatalf("bob's login: %d", st)
		}
		s.approve(c)
		if st := <-res; st != http.StatusForbidden {
			t.Fatalf("alice's approved transfer on what is now bob's session: %d, want 403", st)
		}
		if n := len(s.ops(bank.OpTransfer)) + len(s.ops(bank.OpTransferRefused)); n != 0 {
			t.Fatalf("the bank saw %d transfers", n)
		}
	})
}
