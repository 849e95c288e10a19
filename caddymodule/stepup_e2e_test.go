package caddymodule_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// TestPhoneApprovesExactlyWhatTheBankExecutes: the amount and payee the
// phone shows come from the very body that is forwarded, and an approval
// signed over a different context is refused.
func TestPhoneApprovesExactlyWhatTheBankExecutes(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{}, "")
	b := loggedIn(t, e, g, phone)
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	transfer := func(amount string) (<-chan result, *device.Challenge) {
		body := url.Values{"payee_account": {"5550001"}, "amount": {amount}, "txn_password": {alice.TxnPassword}}.Encode()
		res := b.postAsync(ctx, g.URL+"/transfer", body)
		return res, waitChallenge(t, phone)
	}

	// 1. The phone is shown 250000; a token whose ctx was computed over a
	// context saying 2500 is refused, and nothing is forwarded.
	res, ch := transfer("250000")
	if !strings.Contains(ch.Context, `"amount":"250000"`) {
		t.Fatalf("context does not carry the posted amount: %s", ch.Context)
	}
	forged := strings.Replace(ch.Context, `"amount":"250000"`, `"amount":"2500"`, 1)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": phone.CredentialID(), "aud": "onepush", "sub": ch.ID, "iat": time.Now().Unix(),
		"exp": time.Now().Add(time.Minute).Unix(), "jti": randomJTI(t), "decision": "approve",
		"ctx": device.ContextHash(forged),
	}).SignedString(phone.Key())
	if err != nil {
		t.Fatal(err)
	}
	if st, body, _ := phone.PostDecisionToken(ctx, ch.ID, tok); st != http.StatusUnauthorized {
		t.Fatalf("approval over a different amount: %d %s, want 401", st, body)
	}
	if n := len(e.ops(t)); n != 0 {
		t.Fatalf("bank executed %d operations after a mismatched approval", n)
	}
	// The user denies it on the phone.
	if st, _ := phone.Decide(ctx, ch, device.Deny, 0); st != http.StatusOK {
		t.Fatalf("deny: %d", st)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied transfer: %v %v", r.err, r.resp)
	}

	// 2. A second transfer is approved as shown.
	res, ch = transfer("1200")
	shown := ch.Parsed.Transaction
	if shown == nil {
		t.Fatalf("context has no typed transaction: %s", ch.Context)
	}
	if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusOK {
		t.Fatalf("approve: %d", st)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusOK {
		t.Fatalf("approved transfer: %v %v", r.err, r.resp)
	}
	transfers := opsOf(e.ops(t), bank.OpTransfer)
	if len(transfers) != 1 || transfers[0].Amount != shown.Amount || shown.Currency != "JPY" || transfers[0].PayeeAccount != shown.Payee {
		t.Fatalf("bank transfers = %+v, want only the approved one of %+v", transfers, shown)
	}
}

func afterSuccessPolicy(s string) string {
	// The example's login rule already says how the bank shows an accepted
	// password (success).
	return strings.Replace(s, "    timeout: 90s\n", "    timeout: 90s\n    challenge: after_success\n    logout: {method: POST, path: /logout}\n", 1)
}

func TestAfterSuccessLogin(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{edit: afterSuccessPolicy}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("wrong password: the bank's own page and no push", func(t *testing.T) {
		wrong := url.Values{"contract_no": {"1001"}, "user_id": {"alice"}, "password": {"guess"}}.Encode()
		resp, page, err := newBrowser().post(ctx, g.URL+"/login", wrong)
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(page, "Login failed") {
			t.Fatalf("wrong password: %v %v %.200q", err, resp, page)
		}
		if pending, _ := phone.Pending(ctx); len(pending) != 0 {
			t.Fatalf("a wrong password made the phone ring (%d challenges)", len(pending))
		}
	})

	t.Run("right password and a denial leave no usable session", func(t *testing.T) {
		e.resetOps(t)
		before := e.bank.SessionCount()
		br := newBrowser()
		res := br.postAsync(ctx, g.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, phone)
		if n := e.bank.SessionCount(); n != before+1 {
			t.Fatalf("bank sessions while the phone decides = %d, want %d (password already checked)", n, before+1)
		}
		if st, _ := phone.Decide(ctx, ch, device.Deny, 0); st != http.StatusOK {
			t.Fatalf("deny: %d", st)
		}
		r := <-res
		if r.err != nil || r.resp.StatusCode != http.StatusForbidden {
			t.Fatalf("denied login: %v %v", r.err, r.resp)
		}
		for _, c := range r.resp.Cookies() {
			if c.Name == bank.SessionCookieName && c.Value != "" {
				t.Fatalf("browser got the bank's session cookie after a denial")
			}
		}
		if n := e.bank.SessionCount(); n != before {
			t.Fatalf("bank has %d live sessions after the denial, want %d as before the login", n, before)
		}
		ops := e.ops(t)
		if len(opsOf(ops, bank.OpLogin)) != 1 || len(opsOf(ops, bank.OpLogout)) != 1 {
			t.Fatalf("bank ops = %+v, want the login and the gateway's logout", ops)
		}
	})

	t.Run("right password and an approval log in", func(t *testing.T) {
		br := newBrowser()
		res := br.postAsync(ctx, g.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, phone)
		if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusOK {
			t.Fatalf("approve: %d", st)
		}
		r := <-res
		if r.err != nil || r.resp.StatusCode != http.StatusSeeOther || r.resp.Header.Get("Location") != "/dashboard" {
			t.Fatalf("approved login: %v %v", r.err, r.resp)
		}
		// The learned session attributes a transfer.
		tres := br.postAsync(ctx, g.URL+"/transfer", url.Values{"payee_account": {"1"}, "amount": {"5"}, "txn_password": {alice.TxnPassword}}.Encode())
		tch := waitChallenge(t, phone)
		if tch.Parsed.User != "1001/alice" {
			t.Fatalf("transfer attributed to %q", tch.Parsed.User)
		}
		phone.Decide(ctx, tch, device.Deny, 0)
		<-tres
	})
}

// TestPushBombingIsRateLimited: 20 logins for one user within a minute
// ring the phone no more often than the per-user budget (5 a minute).
// Each login while another waits stops both (approve-only), and the
// phone is told so with at most one "stopped" notice per prompt.
func TestPushBombingIsRateLimited(t *testing.T) {
	var pushes, notices atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]string
		_ = json.NewDecoder(r.Body).Decode(&m)
		switch {
		case m["challenge_id"] == "":
		case m["kind"] == device.StoppedKind:
			notices.Add(1)
		default:
			pushes.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	e := newEnv(t, envOptions{})
	g := e.startGateway("\t\twebhook_allow " + hook.URL + "/")
	phone, err := device.New(g.URL + "/onepush/device/v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := phone.Register(ctx, "webhook", hook.URL+"/push"); err != nil {
		t.Fatal(err)
	}
	enroll(t, g, alice, phone)
	e.resetOps(t)
	// Count only the logins' pushes (enrolment sends a test push).
	time.Sleep(200 * time.Millisecond)
	pushes.Store(0)
	notices.Store(0)
	// The budget is per minute: do not straddle a minute boundary.
	if s := time.Now().Second(); s > 45 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _, err := newBrowser().post(ctx, g.URL+"/login", loginBody(alice))
			if err == nil {
				statuses <- resp.StatusCode
			}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	// Let the last held login go: deny whatever is pending.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if len(statuses) >= 19 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pending, _ := phone.Pending(ctx); len(pending) == 1 {
		phone.Decide(ctx, &pending[0], device.Deny, 0)
	}
	wg.Wait()
	close(statuses)
	limited := 0
	for st := range statuses {
		if st == http.StatusTooManyRequests {
			limited++
		}
	}
	// Pushes are sent asynchronously; give the last ones a moment to land.
	time.Sleep(300 * time.Millisecond)
	t.Logf("20 logins: %d pushes, %d refused with 429", pushes.Load(), limited)
	if p := pushes.Load(); p > 5 || p == 0 {
		t.Fatalf("phone received %d pushes for 20 logins, want between 1 and the budget of 5", p)
	}
	if n := notices.Load(); n >= pushes.Load() {
		t.Fatalf("phone received %d stopped notices for %d prompts, want fewer (one per stopped prompt)", n, pushes.Load())
	}
	if limited != 15 {
		t.Fatalf("%d logins refused with 429, want 15", limited)
	}
	if n := len(e.ops(t)); n != 0 {
		t.Fatalf("bank executed %d operations during push bombing", n)
	}
}
