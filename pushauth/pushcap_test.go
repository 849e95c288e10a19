package pushauth_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
)

// TestPushStreakBacksOffCapsAndResetsOnApproval: pushes since alice's last
// approval, asked from ever new addresses (so the per-address minute
// budget never stops them): 5 at once, then each after a doubling backoff
// from 30s, at most 20 in 24 hours; cancelled challenges do not reset the
// streak, her own approval does, and her login from the address she last
// approved from is never refused by it.
func TestPushStreakBacksOffCapsAndResetsOnApproval(t *testing.T) {
	clock := pushauthtest.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	e, _ := pushauthtest.Engine(t, pushauth.Config{Now: clock.Now, UnboundCredentialTTL: 72 * time.Hour})
	ctx := context.Background()
	u, _, _ := pushauthtest.Phone(t, e, "1001/alice")
	addr := 0
	push := func(from string) (*pushauth.Challenge, error) {
		if from == "" {
			addr++
			from = fmt.Sprintf("198.51.%d.%d", addr/200, addr%200+1)
		}
		c, err := e.Start(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute, ClientIP: from})
		if err == nil {
			if _, err := e.CancelFromBrowser(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
		}
		return c, err
	}
	refused := func(what string, want time.Duration) {
		t.Helper()
		_, err := push("")
		var se *pushauth.PushStreakError
		if !errors.Is(err, pushauth.ErrPushRateLimited) || !errors.As(err, &se) {
			t.Fatalf("%s: %v, want a push streak refusal", what, err)
		}
		if se.RetryAfter != want {
			t.Fatalf("%s: retry after %s, want %s", what, se.RetryAfter, want)
		}
	}
	approve := func(from string) {
		t.Helper()
		c, err := e.Start(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute, ClientIP: from})
		if err != nil {
			t.Fatalf("her login from %s: %v", from, err)
		}
		if _, err := e.ApproveWithCode(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	approve("192.0.2.10") // her own login: her home address

	for i := range 5 {
		if _, err := push(""); err != nil {
			t.Fatalf("push %d of the first 5: %v", i+1, err)
		}
	}
	refused("push 6 at once", 30*time.Second)
	clock.Advance(29 * time.Second)
	refused("push 6 after 29s", time.Second)
	total := 5
	for n := 5; n < 20; n++ {
		wait := min(30*time.Second<<(n-5), 30*time.Minute)
		clock.Advance(wait - time.Second)
		if n > 5 {
			refused(fmt.Sprintf("push %d a second early", n+1), time.Second)
		}
		clock.Advance(time.Second)
		if _, err := push(""); err != nil {
			t.Fatalf("push %d after %s: %v", n+1, wait, err)
		}
		total++
	}
	clock.Advance(time.Hour)
	var se *pushauth.PushStreakError
	if _, err := push(""); !errors.As(err, &se) || se.RetryAfter < 12*time.Hour || se.RetryAfter > 24*time.Hour {
		t.Fatalf("push 21 an hour after the 20th: %v, want the daily cap's refusal until 24h after the first", err)
	}
	if total != 20 {
		t.Fatalf("%d pushes sent, want the cap 20", total)
	}
	u2, err := e.Store().GetUser(ctx, u.Key)
	if err != nil || u2.PushCount != 20 {
		t.Fatalf("streak in the store: %+v %v, want 20", u2, err)
	}

	// Her login from her own address rings, and her approval ends the
	// streak: anyone gets 5 at once again.
	approve("192.0.2.10")
	for i := range 5 {
		if _, err := push(""); err != nil {
			t.Fatalf("push %d after her approval: %v", i+1, err)
		}
	}
	refused("push 6 after her approval", 30*time.Second)
}
