package apns_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/push"
	"github.com/onepush/onepush/pushauth/push/apns"
	"github.com/onepush/onepush/pushauth/push/apns/apnsfake"
	"github.com/onepush/onepush/pushauth/push/pushtest"
)

const (
	teamID = "TEAM123456"
	keyID  = "KEY1234567"
	topic  = "jp.example.bank.onepush"
)

// tokenSetup starts a fake that checks provider tokens signed by a fresh
// .p8 and returns it with a Pusher configured for it.
func tokenSetup(t *testing.T, retry push.RetryPolicy) (*apnsfake.Server, *apns.Pusher) {
	t.Helper()
	p8, key, err := apnsfake.WriteP8(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fake := apnsfake.New(apnsfake.Options{TeamID: teamID, KeyID: keyID, PublicKey: &key.PublicKey, Topic: topic})
	t.Cleanup(fake.Close)
	p, err := apns.New(apns.Options{
		KeyFile: p8, KeyID: keyID, TeamID: teamID, Topic: topic,
		Host: fake.URL, RootCAs: fake.RootCAs(), Retry: retry,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return fake, p
}

func devToken(i int) string { return fmt.Sprintf("%064x", i+1) }

// TestContract runs the push contract (pushtest) against the APNs fake.
func TestContract(t *testing.T) {
	n := 10000
	if raceEnabled {
		// 10,000 sends through in-process TLS under the race detector
		// take minutes on a small machine; the full burst runs without
		// -race.
		n = 2000
	}
	pushtest.Run(t, pushtest.Suite[apnsfake.Request]{
		Platform: "apns",
		Setup: func(t *testing.T, retry push.RetryPolicy) (pushtest.Fake[apnsfake.Request], pushauth.Pusher) {
			return tokenSetup(t, retry)
		},
		Token:       devToken,
		DeadReasons: []string{"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"},
		DeadStatus:  map[string]int{"Unregistered": 410},
		Backoff:     true,
		BurstN:      n,
	})
}

func message(validity time.Duration) pushauth.PushMessage { return pushtest.Message(validity) }

func send(p *apns.Pusher, token string, m pushauth.PushMessage) error {
	return pushtest.Send(p, "apns", token, m)
}

func TestPushSendsOneWellFormedRequest(t *testing.T) {
	fake, p := tokenSetup(t, push.RetryPolicy{})
	m := message(time.Minute)
	if err := send(p, devToken(0), m); err != nil {
		t.Fatalf("Push: %v", err)
	}
	reqs := fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("fake got %d requests, want exactly 1", len(reqs))
	}
	r := reqs[0]
	if r.Status != 200 {
		t.Fatalf("fake answered %d %s", r.Status, r.Reason)
	}
	if r.Token != devToken(0) {
		t.Errorf("path token %q", r.Token)
	}
	want := map[string]string{
		"apns-topic":      topic,
		"apns-push-type":  "alert",
		"apns-priority":   "10",
		"apns-expiration": strconv.FormatInt(m.ExpiresAt.Unix(), 10),
	}
	for h, v := range want {
		if got := r.Header.Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
	cid := r.Header.Get("apns-collapse-id")
	if cid == "" || len(cid) > 64 || cid != push.CollapseID(m.UserKey) || strings.Contains(cid, "user-42") {
		t.Errorf("apns-collapse-id %q: want the short hash of the user key", cid)
	}
	if !strings.HasPrefix(strings.ToLower(r.Header.Get("authorization")), "bearer ") {
		t.Errorf("no provider token")
	}
	// Payload: challenge id, kind, alert title, category; nothing else.
	pl := r.Payload
	if pl["challenge_id"] != m.ChallengeID || pl["kind"] != m.Kind {
		t.Errorf("payload ids: %s", r.Body)
	}
	if len(pl) != 3 {
		t.Errorf("payload has keys beyond aps, challenge_id, kind: %s", r.Body)
	}
	aps, _ := pl["aps"].(map[string]any)
	alert, _ := aps["alert"].(map[string]any)
	if alert["title"] != apns.DefaultTitle || aps["category"] != apns.DefaultCategory || aps["sound"] != "default" {
		t.Errorf("aps: %s", r.Body)
	}
	if len(alert) != 1 {
		t.Errorf("alert carries more than a title: %s", r.Body)
	}
	if strings.Contains(string(r.Body), "user-42") || strings.Contains(string(r.Body), "contract") {
		t.Errorf("payload leaks the user key: %s", r.Body)
	}
}

func TestOther4xxIsNotRetried(t *testing.T) {
	fake, p := tokenSetup(t, push.RetryPolicy{Base: 10 * time.Millisecond})
	tok := devToken(8)
	fake.ScriptReplies(tok, apnsfake.Reply{Status: 400, Reason: "BadExpirationDate"})
	err := send(p, tok, message(time.Minute))
	if err == nil || errors.Is(err, pushauth.ErrDeadToken) {
		t.Fatalf("err = %v, want a non-dead-token error", err)
	}
	if n := len(fake.RequestsFor(tok)); n != 1 {
		t.Errorf("attempts = %d, want 1", n)
	}
}

func TestRetriesStopAtTheDeadline(t *testing.T) {
	fake, p := tokenSetup(t, push.RetryPolicy{Attempts: 100, Base: 150 * time.Millisecond, Max: 150 * time.Millisecond})
	tok := devToken(9)
	fake.Script(tok, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503)
	m := message(500 * time.Millisecond)
	err := send(p, tok, m)
	done := time.Now()
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want the last 503", err)
	}
	// An attempt started just before the deadline is cut by it; no
	// backoff is waited past it.
	// A backoff waited past the deadline would cost 150ms; allow less than
	// that for a busy CI machine.
	if late := done.Sub(m.ExpiresAt); late > 120*time.Millisecond {
		t.Errorf("returned %v after the deadline", late)
	}
	for _, r := range fake.RequestsFor(tok) {
		// Arrival, not start, is recorded: allow for a busy scheduler.
		if r.At.After(m.ExpiresAt.Add(100 * time.Millisecond)) {
			t.Errorf("an attempt arrived %v past the deadline", r.At.Sub(m.ExpiresAt))
		}
	}
	if n := len(fake.RequestsFor(tok)); n < 2 || n > 7 {
		t.Errorf("attempts = %d, want a few inside 500ms", n)
	}
}

func TestWrongSigningKeyIsRejected(t *testing.T) {
	fake, _ := tokenSetup(t, push.RetryPolicy{})
	other, _, err := apnsfake.WriteP8(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := apns.New(apns.Options{KeyFile: other, KeyID: keyID, TeamID: teamID, Topic: topic, Host: fake.URL, RootCAs: fake.RootCAs()})
	if err != nil {
		t.Fatal(err)
	}
	err = send(p, devToken(11), message(time.Minute))
	if err == nil || errors.Is(err, pushauth.ErrDeadToken) || !strings.Contains(err.Error(), "InvalidProviderToken") {
		t.Fatalf("err = %v, want 403 InvalidProviderToken", err)
	}
	if n := fake.Count(); n != 1 {
		t.Errorf("attempts = %d, want 1", n)
	}
}

func TestCertificateAuth(t *testing.T) {
	dir := t.TempDir()
	certFile, pool, err := apnsfake.WriteClientCert(dir, "Apple Push Services: "+topic)
	if err != nil {
		t.Fatal(err)
	}
	fake := apnsfake.New(apnsfake.Options{ClientCAs: pool, Topic: topic})
	defer fake.Close()
	p, err := apns.New(apns.Options{CertFile: certFile, Topic: topic, Host: fake.URL, RootCAs: fake.RootCAs()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := send(p, devToken(12), message(time.Minute)); err != nil {
		t.Fatalf("Push with a client certificate: %v", err)
	}
	if n := fake.Count(); n != 1 {
		t.Fatalf("fake got %d requests, want 1", n)
	}
	if h := fake.Requests()[0].Header.Get("authorization"); h != "" {
		t.Errorf("certificate auth sent a provider token too: %q", h)
	}

	// Without the certificate the fake refuses the TLS handshake.
	p8, _, err := apnsfake.WriteP8(dir)
	if err != nil {
		t.Fatal(err)
	}
	np, err := apns.New(apns.Options{KeyFile: p8, KeyID: keyID, TeamID: teamID, Topic: topic, Host: fake.URL, RootCAs: fake.RootCAs(),
		Retry: push.RetryPolicy{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := send(np, devToken(12), message(time.Minute)); err == nil {
		t.Fatal("a push without the client certificate succeeded")
	}
	if n := fake.Count(); n != 1 {
		t.Errorf("fake recorded %d requests, want still 1", n)
	}
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	p8, _, err := apnsfake.WriteP8(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]apns.Options{
		"no topic":      {KeyFile: p8, KeyID: keyID, TeamID: teamID},
		"no auth":       {Topic: topic},
		"both":          {KeyFile: p8, KeyID: keyID, TeamID: teamID, CertFile: p8, Topic: topic},
		"no key id":     {KeyFile: p8, TeamID: teamID, Topic: topic},
		"missing file":  {KeyFile: dir + "/nope.p8", KeyID: keyID, TeamID: teamID, Topic: topic},
		"cert not cert": {CertFile: p8, Topic: topic},
	} {
		if _, err := apns.New(o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	p, err := apns.New(apns.Options{KeyFile: p8, KeyID: keyID, TeamID: teamID, Topic: topic, Production: true})
	if err != nil || p.Host() != "https://api.push.apple.com" {
		t.Errorf("production host: %v %v", p, err)
	}
	p, err = apns.New(apns.Options{KeyFile: p8, KeyID: keyID, TeamID: teamID, Topic: topic})
	if err != nil || p.Host() != "https://api.sandbox.push.apple.com" {
		t.Errorf("sandbox host: %v %v", p, err)
	}
}
