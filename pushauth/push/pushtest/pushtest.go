// Package pushtest is the contract every push sender runs against a fake
// of its provider, as storetest is for stores: dead tokens, retries,
// deadlines, and a burst through a real engine bounded by its workers.
package pushtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/push"
)

// Attempt is what a fake provider recorded of one request.
type Attempt struct {
	At     time.Time
	Token  string
	Status int
}

// Request is a fake provider's record of a request.
type Request interface{ Attempt() Attempt }

// Fake is a fake provider as the contract drives it.
type Fake[R Request] interface {
	// MarkDead makes the provider answer token as gone, for reason.
	MarkDead(token, reason string)
	// Script queues the statuses of the next requests to token.
	Script(token string, statuses ...int)
	SetDelay(time.Duration)
	Count() int
	MaxInFlight() int
	Requests() []R
	RequestsFor(token string) []R
}

// Suite describes a sender and its fake.
type Suite[R Request] struct {
	// Platform is the credential platform the sender serves.
	Platform string
	// Setup starts a fake provider and a sender for it with retry.
	Setup func(t *testing.T, retry push.RetryPolicy) (Fake[R], pushauth.Pusher)
	// Token is a well-formed device token, distinct for each i.
	Token func(i int) string
	// DeadReasons are the answers that say a token is gone; DeadStatus
	// the HTTP status the provider gives some of them.
	DeadReasons []string
	DeadStatus  map[string]int
	// Backoff says the sender waits between attempts itself (a client
	// library that retries at once leaves it false).
	Backoff bool
	// BurstN is how many challenges the burst creates at once.
	BurstN int
}

// Run runs the contract.
func Run[R Request](t *testing.T, s Suite[R]) {
	t.Run("DeadTokens", func(t *testing.T) { testDeadTokens(t, s) })
	t.Run("Retries503ThenSucceeds", func(t *testing.T) { testRetries503(t, s) })
	t.Run("SlowProviderIsCutAtTheDeadline", func(t *testing.T) { testSlowProvider(t, s) })
	t.Run("EngineBurstIsBoundedByWorkers", func(t *testing.T) { testBurst(t, s) })
}

// Message is a push as the dispatcher sends it, valid for validity.
func Message(validity time.Duration) pushauth.PushMessage {
	return pushauth.PushMessage{
		ChallengeID: "ch-0123456789abcdef", Kind: "transfer",
		UserKey: "contract-0001234:user-42", ExpiresAt: time.Now().Add(validity),
	}
}

// Send pushes m to token on platform with ctx bounded by m.ExpiresAt, as
// the dispatcher does.
func Send(p pushauth.Pusher, platform, token string, m pushauth.PushMessage) error {
	ctx, cancel := context.WithDeadline(context.Background(), m.ExpiresAt)
	defer cancel()
	return p.Push(ctx, &pushauth.Credential{ID: "cred1", Platform: platform, PushToken: token}, m)
}

func attempts[R Request](reqs []R) []Attempt {
	out := make([]Attempt, len(reqs))
	for i, r := range reqs {
		out[i] = r.Attempt()
	}
	return out
}

func testDeadTokens[R Request](t *testing.T, s Suite[R]) {
	fake, p := s.Setup(t, push.RetryPolicy{Base: 10 * time.Millisecond})
	for i, reason := range s.DeadReasons {
		tok := s.Token(100 + i)
		fake.MarkDead(tok, reason)
		err := Send(p, s.Platform, tok, Message(time.Minute))
		if !errors.Is(err, pushauth.ErrDeadToken) {
			t.Errorf("%s: err = %v, want ErrDeadToken", reason, err)
		}
		reqs := attempts(fake.RequestsFor(tok))
		if len(reqs) != 1 {
			t.Errorf("%s: %d attempts, want 1 (a dead token is not retried)", reason, len(reqs))
		}
		if want, ok := s.DeadStatus[reason]; ok && (len(reqs) == 0 || reqs[0].Status != want) {
			t.Errorf("%s: fake did not answer %d", reason, want)
		}
	}
}

func testRetries503[R Request](t *testing.T, s Suite[R]) {
	fake, p := s.Setup(t, push.RetryPolicy{})
	tok := s.Token(7)
	fake.Script(tok, 503, 503, 200)
	m := Message(10 * time.Second)
	start := time.Now()
	if err := Send(p, s.Platform, tok, m); err != nil {
		t.Fatalf("Push: %v", err)
	}
	reqs := attempts(fake.RequestsFor(tok))
	if len(reqs) != 3 {
		t.Fatalf("attempts = %d, want 3 (client library and package retries must not multiply)", len(reqs))
	}
	for i, r := range reqs {
		if !r.At.Before(m.ExpiresAt) {
			t.Errorf("attempt %d at %v is not before the expiry %v", i+1, r.At, m.ExpiresAt)
		}
		t.Logf("attempt %d: +%v status %d", i+1, r.At.Sub(start).Round(time.Millisecond), r.Status)
	}
	if gap := reqs[1].At.Sub(reqs[0].At); s.Backoff && gap < push.DefaultBase/2 {
		t.Errorf("no backoff between attempts 1 and 2: %v", gap)
	}
}

func testSlowProvider[R Request](t *testing.T, s Suite[R]) {
	fake, p := s.Setup(t, push.RetryPolicy{})
	fake.SetDelay(3 * time.Second)
	m := Message(300 * time.Millisecond)
	err := Send(p, s.Platform, s.Token(10), m)
	late := time.Since(m.ExpiresAt)
	if err == nil {
		t.Fatal("Push succeeded against a provider slower than the deadline")
	}
	if errors.Is(err, pushauth.ErrDeadToken) {
		t.Errorf("a timeout must not mark the token dead: %v", err)
	}
	// A request not cut by the deadline would return seconds late; the
	// slack is for a loaded CI machine.
	if late > 500*time.Millisecond {
		t.Errorf("returned %v after the deadline, want ≤ 500ms", late)
	}
	t.Logf("slow provider: returned %v after the deadline: %v", late.Round(time.Millisecond), err)
}

// testBurst creates BurstN challenges at once through a real Engine and
// checks that the provider never sees more concurrent requests than the
// configured push workers, and that each challenge got its one push.
func testBurst[R Request](t *testing.T, s Suite[R]) {
	const workers = 8
	n := s.BurstN
	if testing.Short() {
		n /= 5
	}
	fake, p := s.Setup(t, push.RetryPolicy{})
	res := burstThroughEngine(t, fake, burst{Platform: s.Platform, Pusher: p, Token: s.Token, N: n, Workers: workers})
	tokens := map[string]bool{}
	for _, r := range attempts(fake.Requests()) {
		if r.Status != 200 {
			t.Fatalf("provider answered %d", r.Status)
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
