package caddymodule_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// Review of issues 12 and 13 (commit ec9cf87): each test plays an attack
// (or a customer's flow) through a real Caddy in front of the legacy bank.
// A failing test is a finding; see the review report for the fix.

// noSuccessPolicy is the example policy without the login rule's success
// condition, a configuration the README allows ("Without it, a user's
// first phone cannot be bound with the password").
func noSuccessPolicy(s string) string {
	return strings.Replace(s, "    success: {status: [303], set_cookie: BANKSESSION, location_prefix: /dashboard}", "", 1)
}

// postUntilDecided posts form to target with exactly the given cookies and
// returns the gateway's answer; any challenge that rings phone meanwhile is
// denied, as the phone's owner (who asked for nothing) would.
func postUntilDecided(t *testing.T, ctx context.Context, phone *device.Phone, target, form string, cookies ...*http.Cookie) result {
	t.Helper()
	ch := make(chan result, 1)
	go func() {
		resp, body, err := postWith(ctx, target, form, cookies...)
		ch <- result{resp, body, err}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-ch:
			return r
		case <-tick.C:
			pending, _ := phone.Pending(ctx)
			for i := range pending {
				t.Logf("the owner's phone rang (%s for %s): denied", pending[i].Kind, pending[i].Parsed.User)
				_, _ = phone.Decide(ctx, &pending[i], device.Deny, 0)
			}
		}
	}
}

// TestReview_FailedLoginOnStolenSessionReattributesIt: a login rule without
// `success:` makes any login answer teach the gateway that the request's
// own session now belongs to the user the login named (learningWriter.learn
// → completeLogin falls back to the request's session when the bank set no
// cookie, and nothing checks the bank accepted anything). An attacker who
// holds alice's bank session cookie (threat model §7) posts a login for a
// user nobody enrolled ("1001/mallory", any password) with that cookie: the
// bank refuses it and leaves the session logged in as alice, but the
// gateway now maps it to mallory. A transfer on it is attributed to
// mallory (no phone, not_enrolled: allow) and the bank executes it on
// alice's account without her phone ringing.
func TestReview_FailedLoginOnStolenSessionReattributesIt(t *testing.T) {
	e := newEnv(t, envOptions{edit: noSuccessPolicy})
	g := startLifecycleGateway(t, e)
	phone := newPhone(t, g.gateway)
	g.admin(t, "user", "bind", keyOf(alice), phone.CredentialID())
	victim := approvedLogin(t, g.gateway, alice, phone)
	stolen := victim.cookieOf(g.gateway, "/", bank.SessionCookieName)
	if stolen == "" {
		t.Fatal("alice's login set no bank session")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Control: the stolen session alone rings alice's phone (denied).
	e.resetOps(t)
	r := postUntilDecided(t, ctx, phone, g.URL+"/transfer", transferForm("6660001", "90000", alice.TxnPassword), sessionCookie(stolen))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n := len(opsOf(e.ops(t), bank.OpTransfer)); n != 0 {
		t.Fatalf("control: the bank executed %d transfers on the stolen session before the attack", n)
	}

	// The attack: a failed login naming someone else, on the stolen session.
	e.resetOps(t)
	wrong := url.Values{"contract_no": {"1001"}, "user_id": {"mallory"}, "password": {"anything"}}.Encode()
	resp, page, err := postWith(ctx, g.URL+"/login", wrong, sessionCookie(stolen))
	if err != nil || !strings.Contains(page, "Login failed") {
		t.Fatalf("mallory's login: %v %v %.200q", err, resp, page)
	}
	r = postUntilDecided(t, ctx, phone, g.URL+"/transfer", transferForm("6660001", "90000", alice.TxnPassword), sessionCookie(stolen))
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, op := range opsOf(e.ops(t), bank.OpTransfer) {
		t.Errorf("the bank executed a transfer on %s/%s's account (%s yen to %s) that %s never approved: answer %d",
			op.ContractNo, op.UserID, op.Amount, op.PayeeAccount, op.UserID, r.resp.StatusCode)
	}
}
