package notify_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/notifysink"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/enrol"
	"github.com/onepush/onepush/pushauth/notify"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

const testNotifySecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// signed is a notification as the gateway sends it: the Standard Webhooks
// test vector (id msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330).
func signed() (http.Header, []byte) {
	h := http.Header{}
	h.Set(notify.HeaderID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(notify.HeaderTimestamp, "1614265330")
	h.Set(notify.HeaderSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	return h, []byte(`{"test": 2432232314}`)
}

// TestVerifyNotification: the Standard Webhooks vector verifies; any
// change to the id, time, body, secret or signature does not.
func TestVerifyNotification(t *testing.T) {
	at := time.Unix(1614265330, 0)
	tests := []struct {
		name    string
		secret  string
		edit    func(h http.Header, body *[]byte)
		now     time.Time
		wantErr bool
	}{
		{"the vector", testNotifySecret, nil, at, false},
		{"within the tolerance", testNotifySecret, nil, at.Add(4 * time.Minute), false},
		{"one of several signatures (key rotation)", testNotifySecret, func(h http.Header, _ *[]byte) {
			h.Set(notify.HeaderSignature, "v1,AAAA "+h.Get(notify.HeaderSignature))
		}, at, false},
		{"body changed", testNotifySecret, func(_ http.Header, b *[]byte) { *b = []byte(`{"test": 2432232315}`) }, at, true},
		{"id changed", testNotifySecret, func(h http.Header, _ *[]byte) { h.Set(notify.HeaderID, "msg_other") }, at, true},
		{"timestamp changed", testNotifySecret, func(h http.Header, _ *[]byte) { h.Set(notify.HeaderTimestamp, "1614265331") }, at, true},
		{"replayed late", testNotifySecret, nil, at.Add(6 * time.Minute), true},
		{"from the future", testNotifySecret, nil, at.Add(-6 * time.Minute), true},
		{"another secret", "whsec_" + base64.StdEncoding.EncodeToString([]byte("another secret of 32 bytes......")), nil, at, true},
		{"no signature", testNotifySecret, func(h http.Header, _ *[]byte) { h.Del(notify.HeaderSignature) }, at, true},
		{"no id", testNotifySecret, func(h http.Header, _ *[]byte) { h.Del(notify.HeaderID) }, at, true},
		{"a v0 signature", testNotifySecret, func(h http.Header, _ *[]byte) {
			h.Set(notify.HeaderSignature, strings.Replace(h.Get(notify.HeaderSignature), "v1,", "v0,", 1))
		}, at, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, body := signed()
			if tc.edit != nil {
				tc.edit(h, &body)
			}
			id, err := notify.Verify(tc.secret, h, body, tc.now)
			if tc.wantErr {
				if !errors.Is(err, notify.ErrBadNotification) {
					t.Fatalf("VerifyNotification = %q, %v; want ErrBadNotification", id, err)
				}
				return
			}
			if err != nil || id != "msg_p5jXN8AQM9LWM0D4loKWxJek" {
				t.Fatalf("VerifyNotification = %q, %v", id, err)
			}
		})
	}
	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := notify.ParseSecret(bad); err == nil {
			t.Errorf("ParseNotifySecret(%q) accepted it", bad)
		}
	}
}

// TestOutboxDeliveryThroughFailures: the deliverer delivers each announcement
// to the sink at least once, retrying a failing sink with backoff, and
// never sends what the receiver could not verify.
func TestOutboxDeliveryThroughFailures(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	sink := notifysink.New(secret)
	srv := httptest.NewServer(sink)
	defer srv.Close()
	store := memory.New(nil)
	defer store.Close()
	audit := memory.NewAuditLog(0, 0, nil)
	eng, err := pushauth.NewEngine(pushauth.Config{Store: store, Audit: audit, Logger: pushauthtest.Quiet(),
		Repudiation: "Call 0120-000-000."})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	binder := enrol.New(eng)
	d, err := notify.Start(eng, notify.Config{URL: srv.URL + "/", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, der := pushauthtest.Key(t)
	cred, err := eng.RegisterCredential(ctx, der, "none", "")
	if err != nil {
		t.Fatal(err)
	}
	sink.FailNext(2)
	start := time.Now()
	if _, err := binder.Bind(ctx, "1001/alice", cred.ID, "clerk"); err != nil {
		t.Fatal(err)
	}
	m, err := sink.Wait(ctx, func(m notifysink.Message) bool { return m.Type == pushauth.EventPhoneBound })
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 3*time.Second {
		t.Fatalf("delivered %s after two failures: the retries did not back off (1 s, then 2 s)", took)
	}
	if m.User != "1001/alice" || m.Credential != cred.ID || m.Via != "support" || m.Actor != "clerk" || m.Repudiation != "Call 0120-000-000." {
		t.Fatalf("message: %+v", m)
	}
	// The outbox lets go of it once the sink has answered.
	var evs []pushauth.AuditEvent
	for n := 1; n != 0 || len(evs) < 3; {
		if ctx.Err() != nil {
			t.Fatalf("backlog %d, delivery audit %+v", n, evs)
		}
		time.Sleep(10 * time.Millisecond)
		n, _ = store.NotificationBacklog(ctx)
		evs, _ = audit.Query(ctx, pushauth.AuditQuery{Type: pushauth.AuditNotification})
	}
	all, rejected := sink.Attempts()
	if all != 3 || rejected != 0 || len(evs) != 3 || evs[2].Outcome != "delivered" || !strings.Contains(evs[0].Detail, "status 503") {
		t.Fatalf("%d attempts (%d rejected), audit %+v", all, rejected, evs)
	}
	// Nothing at the engine's door: the next binding is delivered at once.
	for i := range 3 {
		if _, err := binder.Bind(ctx, "1001/u"+strconv.Itoa(i), cred.ID, "clerk"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := sink.Wait(ctx, func(m notifysink.Message) bool { return m.User == "1001/u"+strconv.Itoa(i) }); err != nil {
			t.Fatal(err)
		}
	}
}
