package pushauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// benchEngine is an engine on the memory store with one phone credential
// bound to users u0..u<users-1>, so cycles can rotate through users without
// tripping the per-user push budget.
type benchEngine struct {
	e    *pushauth.Engine
	key  *ecdsa.PrivateKey
	cred *pushauth.Credential
	n    int
}

func newBenchEngine(b *testing.B, users int) *benchEngine {
	b.Helper()
	e, _ := pushauthtest.Engine(b, pushauth.Config{Store: memory.New(nil), Logger: pushauthtest.Quiet(), PushRate: 20})
	key, der := pushauthtest.Key(b)
	ctx := context.Background()
	cred, err := e.RegisterCredential(ctx, der, "none", "")
	if err != nil {
		b.Fatal(err)
	}
	for i := range users {
		if err := e.Store().PutUser(ctx, &pushauth.User{Key: "u" + strconv.Itoa(i), CredentialID: cred.ID, State: pushauth.UserActive}); err != nil {
			b.Fatal(err)
		}
	}
	return &benchEngine{e: e, key: key, cred: cred, n: users}
}

func (be *benchEngine) token(b *testing.B, c *pushauth.Challenge) string {
	now := time.Now()
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	claims := jwt.MapClaims{"iss": be.cred.ID, "aud": pushauth.Audience, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(jti[:])}
	if c != nil {
		claims["sub"], claims["decision"], claims["ctx"] = c.ID, pushauth.DecisionApprove, pushauth.CtxHash(c.Context)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(be.key)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkVerifyDeviceToken is the server side of every authenticated
// device call: parse, ES256 verification, claim checks, single-use jti.
// Tokens are signed in batches outside the timed region.
func BenchmarkVerifyDeviceToken(b *testing.B) {
	be := newBenchEngine(b, 1)
	ctx := context.Background()
	var batch []string
	b.ReportAllocs()
	for b.Loop() {
		if len(batch) == 0 {
			b.StopTimer()
			for range 512 {
				batch = append(batch, be.token(b, nil))
			}
			b.StartTimer()
		}
		tok := batch[len(batch)-1]
		batch = batch[:len(batch)-1]
		if _, _, err := be.e.VerifyDeviceToken(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignDecision is the phone's share of a cycle (ES256 signing), to
// tell it apart from the engine's in BenchmarkHoldDecideCycle.
func BenchmarkSignDecision(b *testing.B) {
	be := newBenchEngine(b, 1)
	c := &pushauth.Challenge{ID: "abc", Context: `{"challenge_id":"abc"}`}
	b.ReportAllocs()
	for b.Loop() {
		be.token(b, c)
	}
}

// BenchmarkHoldDecideCycle is a whole challenge on the memory store: Hold
// creates and queues the challenge and waits; the phone signs an approval;
// Decide verifies and resolves it; Hold returns the approved challenge.
func BenchmarkHoldDecideCycle(b *testing.B) {
	be := newBenchEngine(b, 20000)
	ctx := context.Background()
	spec := pushauth.ChallengeSpec{Rule: "login", Kind: "login", Timeout: time.Minute, ClientIP: "192.0.2.1", UserAgent: "bench",
		Display: []pushauth.Field{{Label: "User", Value: "u"}}}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		u := &pushauth.User{Key: "u" + strconv.Itoa(i%be.n), CredentialID: be.cred.ID, State: pushauth.UserActive}
		i++
		started := make(chan *pushauth.Challenge, 1)
		done := make(chan *pushauth.Challenge, 1)
		go func() {
			c, err := be.e.Hold(ctx, u, spec, func(c *pushauth.Challenge) { started <- c })
			if err != nil {
				b.Error(err)
				close(started)
			}
			done <- c
		}()
		c, ok := <-started
		if !ok {
			b.FailNow()
		}
		if _, err := be.e.Decide(ctx, c.ID, be.token(b, c)); err != nil {
			b.Fatal(err)
		}
		if final := <-done; final == nil || final.Status != pushauth.StatusApproved {
			b.Fatalf("hold ended with %+v", final)
		}
	}
}
