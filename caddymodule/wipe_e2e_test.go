package caddymodule_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// A Redis that loses its data while the gateway runs must not turn every
// enrolled user into a "not enrolled" one that the example policy
// (not_enrolled: allow) lets in on the password alone: the gateway fails
// closed with 503, and a restart against the wiped Redis is refused.
func TestRedisWipeFailsClosed(t *testing.T) {
	addr := redistest.Start(t)
	e := newEnv(t, envOptions{})
	global := redisGlobal(addr)
	g, _ := e.gatewayWithAlice(global)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	// alice's binding is in Redis, so the gateway would hold her login.
	if n, err := rc.Exists(ctx, "onepush:{u:"+alice.ContractNo+"/"+alice.UserID+"}:user").Result(); err != nil || n != 1 {
		t.Fatalf("alice's record in Redis: exists=%d %v", n, err)
	}

	if err := rc.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	e.resetOps(t)

	rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
	resp, page, err := newBrowser().post(rctx, g.URL+"/login", loginBody(alice))
	rcancel()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("alice's login after the Redis wipe: %v %v %.300q, want 503", err, resp, page)
	}
	// Users who never enrolled cannot be told apart from wiped ones now:
	// they wait for the operator too.
	rctx, rcancel = context.WithTimeout(ctx, 15*time.Second)
	resp, page, err = newBrowser().post(rctx, g.URL+"/login", loginBody(bob))
	rcancel()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("bob's login after the Redis wipe: %v %v %.300q, want 503", err, resp, page)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 0 {
		t.Fatalf("bank executed %d logins after the Redis wipe: %+v", len(logins), logins)
	}
	if n, err := rc.Exists(ctx, "onepush:epoch").Result(); err != nil || n != 0 {
		t.Fatalf("epoch key after the wipe: exists=%d %v; the gateway must not recreate it", n, err)
	}

	// A second instance (same data directory, as after a restart) refuses
	// to start on the wiped Redis and says why.
	port, adminPort := freePort(t), freePort(t)
	g2, err := e.runCaddy(e.caddyfile(port, adminPort, caddyConfig{Global: global}), port, adminPort)
	if err == nil {
		t.Fatalf("a gateway started on the wiped Redis (%s)", g2.URL)
	}
	for _, want := range []string{"holds no onepush data", "refusing to start", "to start fresh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not say %q: %.2000s", want, err)
		}
	}
}
