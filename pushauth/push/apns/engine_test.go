package apns_test

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/push"
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
	store := pushauth.NewMemoryStore(nil)
	e, err := pushauth.NewEngine(pushauth.Config{
		Store:       store,
		Pushers:     map[string]pushauth.Pusher{"apns": p},
		PushWorkers: workers,
		PushQueue:   20000,
		// Nothing decides these challenges; a slow backstop keeps 10,000
		// idle waiters from competing with the senders for CPU.
		Backstop: time.Minute,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			e.Close()
		}
	}()

	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	users := make([]*pushauth.User, n)
	for i := range users {
		cred, err := e.RegisterCredential(ctx, der, "apns", devToken(i))
		if err != nil {
			t.Fatal(err)
		}
		u := &pushauth.User{Key: fmt.Sprintf("u%d", i), CredentialID: cred.ID, State: pushauth.UserActive}
		if err := store.PutUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		users[i] = u
	}
	fake.SetDelay(20 * time.Millisecond)

	holdCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		holdErrs atomic.Int64
		idsMu    sync.Mutex
		ids      []string
	)
	start := make(chan struct{})
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := e.Hold(holdCtx, u, pushauth.ChallengeSpec{
				UserKey: u.Key, Rule: "login", Kind: "login", Timeout: 60 * time.Second,
			}, func(c *pushauth.Challenge) {
				idsMu.Lock()
				ids = append(ids, c.ID)
				idsMu.Unlock()
			})
			if err != nil && holdCtx.Err() == nil {
				holdErrs.Add(1)
				t.Errorf("Hold %s: %v", u.Key, err)
			}
		}()
	}
	began := time.Now()
	close(start)
	deadline := time.Now().Add(3 * time.Minute)
	for fake.Count() < n && time.Now().Before(deadline) && holdErrs.Load() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(began)
	// Stop the workers (each finishes its current send and records the
	// result), then release the held requests.
	e.Close()
	closed = true
	cancel()
	wg.Wait()

	got, maxIn := fake.Count(), fake.MaxInFlight()
	t.Logf("%d challenges: provider got %d requests in %v, max %d in flight (workers %d)",
		n, got, elapsed.Round(time.Millisecond), maxIn, workers)
	if got != n {
		t.Fatalf("provider got %d requests, want %d", got, n)
	}
	if maxIn > workers {
		t.Errorf("max concurrent outbound sends = %d, want ≤ %d", maxIn, workers)
	}
	if maxIn < 2 {
		t.Errorf("max concurrent sends = %d: the workers did not run in parallel", maxIn)
	}
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
	for _, id := range ids {
		c, err := store.GetChallenge(ctx, id)
		if err == nil && c.PushResult == "sent" {
			sent++
		}
	}
	if sent != n {
		t.Errorf("%d challenges record push_result \"sent\", want %d", sent, n)
	}
}
