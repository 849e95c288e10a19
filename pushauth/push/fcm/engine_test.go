package fcm_test

import (
	"testing"

	"github.com/onepush/onepush/pushauth/push"
	"github.com/onepush/onepush/pushauth/push/internal/bursttest"
)

// TestEngineBurstIsBoundedByWorkers drives a burst of challenges through
// a real Engine with the FCM sender. The APNs package runs the full
// 10,000; 2,000 here keep the run short (20ms × 2,000 / 8 workers = 5s).
func TestEngineBurstIsBoundedByWorkers(t *testing.T) {
	const workers = 8
	n := 2000
	if testing.Short() {
		n = 400
	}
	fake, p := setup(t, push.RetryPolicy{})
	bursttest.Run(t, fake, bursttest.Burst{Platform: "fcm", Pusher: p, Token: regToken, N: n, Workers: workers})
	t.Logf("%d access tokens issued for the burst", fake.TokenRequests())
}
