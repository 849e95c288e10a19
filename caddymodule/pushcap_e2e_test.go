package caddymodule_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// TestPushCapStopsAnAttackerFromManyAddresses: someone who knows alice's
// contract number and user ID asks held logins from 12 addresses, one
// each, so no address's per-minute budget stops them. Since her last
// approval (her enrolment, from 127.0.0.1) her phone rings at most
// push_daily_cap (4 here) times; every further attempt gets 429 with a
// Retry-After, rings nothing and reaches no bank. Her own login from her
// address still rings and, approved, logs her in; that approval resets
// the count, so a push from elsewhere rings again.
func TestPushCapStopsAnAttackerFromManyAddresses(t *testing.T) {
	e := newEnv(t, envOptions{}) // the login held (approve-only)
	g, phone := e.gatewayWithAlice("\t\tpush_backoff_after 4\n\t\tpush_daily_cap 4")
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	seen := map[string]bool{} // challenges her phone showed
	attempt := func(ip string) *http.Response {
		t.Helper()
		return answerWhileWaiting(t, ctx, browserFrom(ip), g.URL+"/login", loginBody(alice), phone, seen)
	}
	rang, refused := 0, 0
	for i := range 12 {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		resp := attempt(ip)
		switch resp.StatusCode {
		case http.StatusForbidden: // denied on her phone
			rang++
		case http.StatusTooManyRequests:
			refused++
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 3600 {
				t.Fatalf("attempt %d from %s: Retry-After %q, want the cap's hours", i+1, ip, resp.Header.Get("Retry-After"))
			}
		default:
			t.Fatalf("attempt %d from %s: %d", i+1, ip, resp.StatusCode)
		}
	}
	if rang != 4 || refused != 8 || len(seen) != 4 {
		t.Fatalf("12 attempts from 12 addresses: %d denied, %d refused, the phone showed %d; want 4, 8, 4 (push_daily_cap)", rang, refused, len(seen))
	}
	if n := len(e.ops(t)); n != 0 {
		t.Fatalf("bank saw %d operations from the attempts", n)
	}
	// The security team sees the refusals on Caddy's metrics.
	if got := scrape(t, g.Admin+"/metrics")[`caddy_onepush_challenges_total{outcome="push_streak",rule="login"}`]; got != float64(refused) {
		t.Fatalf("push-streak refusals on the metrics: %v, want %d", got, refused)
	}
	// The refusal's page says what happened and when to try again, as
	// its Retry-After does.
	resp, page, err := browserFrom("127.0.0.30").post(ctx, g.URL+"/login", loginBody(alice))
	if err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after the cap: %v %v", err, resp)
	}
	secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if want := fmt.Sprintf("You can try again in about %d minutes.", (secs+59)/60); !strings.Contains(page, "Please wait before trying again") || !strings.Contains(page, want) {
		t.Fatalf("the rate-limit page does not say what happened and %q: %.1500s", want, page)
	}

	// Her own login from her address rings and succeeds.
	if st := pushed(t, g, alice, phone, device.Approve); st != http.StatusSeeOther {
		t.Fatalf("her own login after the attacker hit the cap: %d, want 303", st)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 {
		t.Fatalf("bank logins %+v, want hers only", logins)
	}
	// Her approval reset the count: a push from elsewhere rings again.
	before := len(seen)
	if resp := attempt("127.0.0.99"); resp.StatusCode != http.StatusForbidden || len(seen) != before+1 {
		t.Fatalf("after her approval, an attempt from another address: %d, phone showed %d new; want it to ring (403 after her denial)", resp.StatusCode, len(seen)-before)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 {
		t.Fatalf("bank logins %+v, want hers only", logins)
	}
}
