package caddymodule_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/phone/device"
)

// TestNothingIsApprovedAfterMaxAuthenticationAge: SP 800-63B rev 4
// §3.1.3 voids an out-of-band authentication not completed within 10
// minutes. The cap is the global max_authentication_age (at most 10m),
// here lowered to 5 seconds under a login rule whose timeout says 90s: an
// approval with the right code after the cap releases nothing and the
// page says it timed out; an approval in time whose release comes after
// the cap releases nothing either. The bank's log stays empty. A cap over
// 10 minutes is refused when Caddy loads the config.
func TestNothingIsApprovedAfterMaxAuthenticationAge(t *testing.T) {
	const maxAge = 5 * time.Second
	e, g, phone := newAliceEnv(t, envOptions{edit: interstitialLogins}, "\t\tpush_rate 60\n\t\tmax_authentication_age 5s")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("approval after the cap", func(t *testing.T) {
		b := loginInChrome(t, g.URL, alice)
		code := shownCode(t, b)
		ch := waitChallenge(t, phone)
		if left := time.Until(ch.ExpiresAt); left > maxAge {
			t.Fatalf("the challenge expires in %v, over max_authentication_age %v", left, maxAge)
		}
		time.Sleep(time.Until(ch.ExpiresAt) + 500*time.Millisecond)
		if st, _ := phone.DecideWithCode(ctx, ch, device.Approve, code); st != http.StatusConflict {
			t.Fatalf("approval with the right code after the cap: %d, want 409", st)
		}
		if err := waitText(b, "Time ran out"); err != nil {
			t.Fatalf("the waiting page does not say it expired: %v", err)
		}
		if ops := e.ops(t); len(ops) != 0 {
			t.Fatalf("bank operations %+v after the cap, want none", ops)
		}
	})

	t.Run("approved in time, released after the cap", func(t *testing.T) {
		w := startWait(t, ctx, newBrowser(), g.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, phone)
		if st, err := phone.DecideWithCode(ctx, ch, device.Approve, w.code); err != nil || st != http.StatusOK {
			t.Fatalf("approval in time: %d %v", st, err)
		}
		// The page's continue comes after the cap (a browser that was
		// closed, or held back).
		time.Sleep(time.Until(ch.ExpiresAt) + 500*time.Millisecond)
		resp, page, err := w.post(ctx, g.URL, "continue", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusSeeOther || !strings.Contains(page, "Time ran out") {
			t.Fatalf("continue after the cap: %d %.300q, want the expired page", resp.StatusCode, page)
		}
		if ops := e.ops(t); len(ops) != 0 {
			t.Fatalf("bank operations %+v after the cap, want none", ops)
		}
	})

	t.Run("over 10 minutes is refused", func(t *testing.T) {
		port, admin := freePort(t), freePort(t)
		_, err := e.runCaddy(e.caddyfile(port, admin, caddyConfig{Global: "\t\tmax_authentication_age 11m"}), port, admin)
		if err == nil || !strings.Contains(err.Error(), "max_authentication_age 11m0s must be between 0") {
			t.Fatalf("Caddy with max_authentication_age 11m: %v, want refused naming the setting", err)
		}
	})
}
