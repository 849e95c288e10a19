// Package pushauthtest is the rig the pushauth packages' tests share: an
// engine on a memory store, a clock moved by hand, and phones' keys.
package pushauthtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// Clock is a clock a test moves by hand; safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Quiet is a logger that drops everything.
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Engine starts an engine with cfg, on a fresh memory store (on cfg.Now's
// clock) when cfg names none and with a quiet logger when it names none,
// and closes both when t ends. It returns the memory store it made (nil
// when cfg named one).
func Engine(t testing.TB, cfg pushauth.Config) (*pushauth.Engine, *memory.Store) {
	t.Helper()
	var mem *memory.Store
	if cfg.Store == nil {
		mem = memory.New(cfg.Now)
		t.Cleanup(func() { _ = mem.Close() })
		cfg.Store = mem
	}
	if cfg.Logger == nil {
		cfg.Logger = Quiet()
	}
	e, err := pushauth.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, mem
}

// Key is a new phone key and its public key in DER, as a phone registers it.
func Key(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// Phone registers a new phone on e (platform "none": it polls) and binds
// it to an active user userKey directly in store, as the enrolment page
// would have.
func Phone(t testing.TB, e *pushauth.Engine, userKey string) (*pushauth.User, *pushauth.Credential, *ecdsa.PrivateKey) {
	t.Helper()
	key, der := Key(t)
	ctx := context.Background()
	cred, err := e.RegisterCredential(ctx, der, "none", "")
	if err != nil {
		t.Fatal(err)
	}
	u := &pushauth.User{Key: userKey, CredentialID: cred.ID, State: pushauth.UserActive}
	if err := e.Store().PutUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	return u, cred, key
}
