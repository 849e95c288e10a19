package caddymodule_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// forwardedFor sends every request as if a trusted proxy had forwarded it
// for client.
type forwardedFor struct{ client string }

func (f forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.client)
	return http.DefaultTransport.RoundTrip(r)
}

// register registers a poll-mode phone as client (through the trusted
// proxy header) and returns it and the device API's status.
func register(t *testing.T, g *gateway, client string) (*device.Phone, int) {
	t.Helper()
	p, err := device.New(g.URL+"/onepush/device/v1", device.WithHTTPClient(&http.Client{Transport: forwardedFor{client}, Timeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.Register(ctx, "none", "")
	var se *device.StatusError
	switch {
	case err == nil:
		return p, http.StatusCreated
	case errors.As(err, &se):
		return nil, se.Status
	}
	t.Fatalf("registering as %s: %v", client, err)
	return nil, 0
}

// TestRegistrationIsLimitedPerClient is attack 6: registrations are
// counted by the client address Caddy sees through its trusted proxies,
// an IPv6 client by its /64, so neither one load balancer's address nor
// one host's endless IPv6 addresses decide the budget.
func TestRegistrationIsLimitedPerClient(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := startBindingGateway(t, e, bindingOptions{servers: "\t\ttrusted_proxies static 127.0.0.1/32\n\t\tclient_ip_headers X-Forwarded-For"})
	created, limited := 0, 0
	for i := range 100 {
		switch _, st := register(t, g.gateway, fmt.Sprintf("2001:db8:5:6:%x::%x", i, i+1)); st {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("registration %d: status %d", i, st)
		}
	}
	if created != 20 || limited != 80 {
		t.Fatalf("100 registrations from one /64: %d created, %d limited; want 20 and 80", created, limited)
	}
	// Other clients behind the same proxy have their own budget.
	for _, client := range []string{"2001:db8:5:7::1", "198.51.100.7", "198.51.100.8"} {
		if _, st := register(t, g.gateway, client); st != http.StatusCreated {
			t.Fatalf("registration from %s after one /64 was limited: %d", client, st)
		}
	}
}

// TestUnboundCredentialsExpire: a registration nobody binds is gone after
// unbound_credential_ttl (in Redis by a TTL); a bound one stays.
func TestUnboundCredentialsExpire(t *testing.T) {
	const ttl = 3 * time.Second
	stores := []struct {
		name   string
		global func(t *testing.T) (string, string) // config, redis address
		// restart: Caddy is stopped before the TTL ends and started after
		// it (a durable store keeps the expiry).
		restart bool
	}{
		{"memory", func(t *testing.T) (string, string) { return "\t\tstore memory\n", "" }, false},
		{"embedded", func(t *testing.T) (string, string) { return embeddedGlobal, "" }, false},
		{"embedded across a restart", func(t *testing.T) (string, string) { return embeddedGlobal, "" }, true},
		{"redis", func(t *testing.T) (string, string) {
			addr := redistest.Start(t)
			return redisGlobal(addr, "prefix ttl-test:") + "\n", addr
		}, false},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			global, redisAddr := st.global(t)
			g := startBindingGateway(t, e, bindingOptions{global: global + "\t\tunbound_credential_ttl 3s\n"})
			unbound, bound := newPhone(t, g.gateway), newPhone(t, g.gateway)
			registered := time.Now()
			if code, out := g.admin(t, http.MethodPost, "/user/bind", map[string]string{"key": keyOf(alice), "credential_id": bound.CredentialID()}); code != http.StatusOK {
				t.Fatalf("bind: %d %v", code, out)
			}
			var rdb *goredis.Client
			if redisAddr != "" {
				rdb = goredis.NewClient(&goredis.Options{Addr: redisAddr})
				defer rdb.Close()
				left, err := rdb.PTTL(context.Background(), "ttl-test:cred:"+unbound.CredentialID()).Result()
				if err != nil || left <= 0 || left > ttl {
					t.Fatalf("TTL of the unbound credential in Redis: %v %v, want (0, %s]", left, err, ttl)
				}
				if left, _ := rdb.PTTL(context.Background(), "ttl-test:cred:"+bound.CredentialID()).Result(); left != -1 {
					t.Fatalf("TTL of the bound credential in Redis: %v, want none", left)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := unbound.Pending(ctx); err != nil {
				t.Fatalf("the unbound credential before its TTL: %v", err)
			}
			if st.restart {
				e.stopGateway(t, g.gateway, syscall.SIGTERM)
				time.Sleep(time.Until(registered.Add(ttl + time.Second)))
				e.startAgain(t, g.gateway)
			}
			time.Sleep(time.Until(registered.Add(ttl + time.Second)))
			var se *device.StatusError
			if _, err := unbound.Pending(ctx); !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
				t.Fatalf("the unbound credential after its TTL: %v, want 401", err)
			}
			if _, err := bound.Pending(ctx); err != nil {
				t.Fatalf("the bound credential after the TTL: %v", err)
			}
			b := newBrowser()
			if resp, _, err := b.post(ctx, g.URL+"/login", loginBody(bob)); err != nil || resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("bob's login: %v %v", err, resp)
			}
			if code, page, _ := unbound.Enrol(ctx, b.Client, g.URL+"/onepush/enroll", nil); code != http.StatusBadRequest || !strings.Contains(page, "App ID not found") {
				t.Fatalf("enrolment with the expired credential: %d %.300s", code, page)
			}
			if rdb != nil {
				if n, _ := rdb.Exists(context.Background(), "ttl-test:cred:"+unbound.CredentialID()).Result(); n != 0 {
					t.Fatal("the unbound credential is still in Redis after its TTL")
				}
			}
		})
	}
}

// TestOneIPv6SiteCannotSpendEveryonesRegistrations: registrations are
// limited per address (IPv6 per /64) and by one budget shared by every
// client. One household with an IPv6 /56 (what Japanese ISPs hand out) or
// a /48 used to spend the shared budget from a few of its /64s, and every
// other customer's registration got 429. Now a site's /64s share its /56's
// and /48's allowance, smaller than the shared budget, and the limiter's
// buckets are evicted least recently used instead of all at once.
func TestOneIPv6SiteCannotSpendEveryonesRegistrations(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := startBindingGateway(t, e, bindingOptions{servers: "\t\ttrusted_proxies static 127.0.0.1/32\n\t\tclient_ip_headers X-Forwarded-For"})
	created := 0
	for p := range 8 { // 8 of the household's /64s
		for i := range 15 {
			if _, st := register(t, g.gateway, fmt.Sprintf("2001:db8:77:%x::%x", p, i+1)); st == http.StatusCreated {
				created++
			}
		}
	}
	t.Logf("one /56 registered %d apps from 8 of its /64s", created)
	refused := 0
	for _, client := range []string{"198.51.100.7", "198.51.100.8", "203.0.113.9"} {
		if _, st := register(t, g.gateway, client); st == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused > 0 {
		t.Errorf("after one IPv6 /56 registered %d apps, %d of 3 other customers' registrations got 429", created, refused)
	}
}
