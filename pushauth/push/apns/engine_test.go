package apns_test

import (
	"context"
	"testing"

	"github.com/onepush/onepush/pushauth/push"
	"github.com/onepush/onepush/pushauth/push/internal/bursttest"
)

// TestEngineBurstIsBoundedByWorkers creates 10,000 challenges at once
// through a real Engine and checks that the APNs provider never sees more
// concurrent requests than the configured push workers.
func TestEngineBurstIsBoundedByWorkers(t *testing.T) {
	const workers = 8
	n := 10000
	if testing.Short() {
		n = 1000
	} else if raceEnabled {
		// 10,000 sends through in-process TLS under the race detector
		// take minutes on a small machine; the full burst runs without
		// -race.
		n = 2000
	}
	fake, p := tokenSetup(t, push.RetryPolicy{})
	res := bursttest.Run(t, fake, bursttest.Burst{Platform: "apns", Pusher: p, Token: devToken, N: n, Workers: workers})
	tokens := map[string]bool{}
	for _, r := range fake.Requests() {
		if r.Status != 200 {
			t.Fatalf("provider answered %d %s", r.Status, r.Reason)
		}
		tokens[r.Token] = true
	}
	if len(tokens) != n {
		t.Errorf("%d distinct device tokens, want %d (one push per challenge)", len(tokens), n)
	}
	sent := 0
	for _, id := range res.IDs {
		c, err := res.Store.GetChallenge(context.Background(), id)
		if err == nil && c.PushResult == "sent" {
			sent++
		}
	}
	if sent != n {
		t.Errorf("%d challenges record push_result \"sent\", want %d", sent, n)
	}
}
