package caddymodule_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/phone/device"
)

// TestReloadAppliesLimitsAndNamesWhatWaitsForARestart: a reload that keeps
// the store keeps the engine; its push_rate applies at once, and a
// push_workers it cannot change on a running engine is named in the log,
// never silently kept.
func TestReloadAppliesLimitsAndNamesWhatWaitsForARestart(t *testing.T) {
	e := newEnv(t, envOptions{})
	port, adminPort := freePort(t), freePort(t)
	g, err := e.runCaddy(e.caddyfile(port, adminPort, caddyConfig{Global: "\t\tpush_rate 1\n"}), port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	phone := newPhone(t, g)
	enroll(t, g, alice, phone)
	if s := time.Now().Second(); s > 45 {
		time.Sleep(time.Duration(61-s) * time.Second) // one minute's push budget for the whole test
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	login := func() (int, bool, error) {
		t.Helper()
		res := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		defer pcancel()
		ch, err := phone.WaitPending(pctx, 20*time.Millisecond)
		if err == nil {
			if st, err := phone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
				t.Fatalf("approve: %d %v", st, err)
			}
		}
		r := <-res
		if r.err != nil {
			return 0, false, r.err
		}
		return r.resp.StatusCode, err == nil, nil
	}
	if st, rang, err := login(); err != nil || !rang || st != http.StatusSeeOther {
		t.Fatalf("first login: %d, rang %v, %v", st, rang, err)
	}
	if st, rang, err := login(); err != nil || rang || st != http.StatusTooManyRequests {
		t.Fatalf("second login within the minute under push_rate 1: %d, rang %v, %v; want 429 and no push", st, rang, err)
	}

	cfg := e.caddyfile(port, adminPort, caddyConfig{Global: "\t\tpush_rate 5\n\t\tpush_workers 8\n"})
	if err := os.WriteFile(g.file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.caddyReload(t, g.file, strings.TrimPrefix(g.Admin, "http://"))
	// The old server lets go of the listener while the new one takes it: a
	// connection caught in between is reset and tried again (bounded).
	st, rang, err := login()
	for i := 0; err != nil && i < 5; i++ {
		time.Sleep(100 * time.Millisecond)
		st, rang, err = login()
	}
	if err != nil || !rang || st != http.StatusSeeOther {
		t.Fatalf("login after the reload raised push_rate: %d, rang %v, %v", st, rang, err)
	}
	if logs := g.logs.String(); !strings.Contains(logs, "push_workers changed but takes effect only when the engine restarts") {
		t.Fatalf("the reload kept push_workers silently:\n%s", logs)
	}
	if logs := g.logs.String(); strings.Contains(logs, "push_rate changed") {
		t.Fatal("push_rate, which applies on reload, was reported as waiting for a restart")
	}
}
