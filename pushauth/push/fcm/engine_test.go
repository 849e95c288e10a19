package fcm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/push"
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
	store := pushauth.NewMemoryStore(nil)
	e, err := pushauth.NewEngine(pushauth.Config{
		Store: store, Pushers: map[string]pushauth.Pusher{"fcm": p},
		PushWorkers: workers, PushQueue: 20000,
		// Nothing decides these challenges; a slow backstop keeps 10,000
		// idle waiters from competing with the senders for CPU.
		Backstop: time.Minute,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	users := make([]*pushauth.User, n)
	for i := range users {
		cred, err := e.RegisterCredential(ctx, der, "fcm", regToken(i))
		if err != nil {
			t.Fatal(err)
		}
		users[i] = &pushauth.User{Key: fmt.Sprintf("u%d", i), CredentialID: cred.ID, State: pushauth.UserActive}
		if err := store.PutUser(ctx, users[i]); err != nil {
			t.Fatal(err)
		}
	}
	fake.SetDelay(20 * time.Millisecond)
	holdCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := e.Hold(holdCtx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: 60 * time.Second}, nil); err != nil && holdCtx.Err() == nil {
				t.Errorf("Hold %s: %v", u.Key, err)
			}
		}()
	}
	began := time.Now()
	close(start)
	for deadline := time.Now().Add(time.Minute); fake.Count() < n && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(began)
	cancel()
	wg.Wait()
	got, maxIn := fake.Count(), fake.MaxInFlight()
	t.Logf("%d challenges: provider got %d sends in %v, max %d in flight (workers %d), %d access tokens",
		n, got, elapsed.Round(time.Millisecond), maxIn, workers, fake.TokenRequests())
	if got != n {
		t.Fatalf("provider got %d sends, want %d", got, n)
	}
	if maxIn > workers || maxIn < 2 {
		t.Errorf("max concurrent sends = %d, want 2..%d", maxIn, workers)
	}
}
