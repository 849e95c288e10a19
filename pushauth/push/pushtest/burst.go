package pushtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// burst describes one run of burstThroughEngine.
type burst struct {
	Platform string          // credential platform ("apns", "fcm")
	Pusher   pushauth.Pusher // the sender under test
	Token    func(i int) string
	N        int // challenges created at once
	Workers  int // Config.PushWorkers
}

// burstResult is what a run leaves for the caller's checks.
type burstResult struct {
	Store   *memory.Store
	IDs     []string // every challenge created
	Elapsed time.Duration
}

// burstThroughEngine binds N users to N credentials, holds a login for
// each at once, waits until the provider has seen N sends (at most 3
// minutes), then stops the engine's workers and releases the held
// requests.
func burstThroughEngine(t *testing.T, fake interface {
	Count() int
	MaxInFlight() int
	SetDelay(time.Duration)
}, b burst) burstResult {
	t.Helper()
	store := memory.New(nil)
	t.Cleanup(func() { _ = store.Close() })
	e, err := pushauth.NewEngine(pushauth.Config{
		Store:       store,
		Pushers:     map[string]pushauth.Pusher{b.Platform: b.Pusher},
		PushWorkers: b.Workers,
		PushQueue:   b.N + 1000,
		// Nothing decides these challenges; a slow backstop keeps the idle
		// waiters from competing with the senders for CPU.
		Backstop: time.Minute,
		Logger:   pushauthtest.Quiet(),
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
	_, der := pushauthtest.Key(t)
	users := make([]*pushauth.User, b.N)
	for i := range users {
		cred, err := e.RegisterCredential(ctx, der, b.Platform, b.Token(i))
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
	var (
		wg    sync.WaitGroup
		idsMu sync.Mutex
		ids   []string
	)
	start := make(chan struct{})
	for _, u := range users {
		wg.Go(func() {
			<-start
			_, err := e.Hold(holdCtx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute},
				func(c *pushauth.Challenge) {
					idsMu.Lock()
					ids = append(ids, c.ID)
					idsMu.Unlock()
				})
			if err != nil && holdCtx.Err() == nil {
				t.Errorf("Hold %s: %v", u.Key, err)
			}
		})
	}
	began := time.Now()
	close(start)
	for deadline := time.Now().Add(3 * time.Minute); fake.Count() < b.N && time.Now().Before(deadline) && !t.Failed(); {
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
	t.Logf("%d challenges: provider got %d sends in %v, max %d in flight (workers %d)",
		b.N, got, elapsed.Round(time.Millisecond), maxIn, b.Workers)
	if got != b.N {
		t.Fatalf("provider got %d sends, want %d", got, b.N)
	}
	if maxIn > b.Workers {
		t.Errorf("max concurrent outbound sends = %d, want ≤ %d", maxIn, b.Workers)
	}
	if maxIn < 2 {
		t.Errorf("max concurrent sends = %d: the workers did not run in parallel", maxIn)
	}
	return burstResult{Store: store, IDs: ids, Elapsed: elapsed}
}
