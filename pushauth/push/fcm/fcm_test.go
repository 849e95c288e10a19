package fcm_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/push"
	"github.com/onepush/onepush/pushauth/push/fcm"
	"github.com/onepush/onepush/pushauth/push/fcm/fcmfake"
	"github.com/onepush/onepush/pushauth/push/pushtest"
)

const project = "onepush-test"

func setup(t *testing.T, retry push.RetryPolicy) (*fcmfake.Server, *fcm.Pusher) {
	t.Helper()
	fake := fcmfake.New(fcmfake.Options{Project: project})
	t.Cleanup(fake.Close)
	sa, err := fake.WriteServiceAccount(t.TempDir(), project)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fcm.New(context.Background(), fcm.Options{
		CredentialsFile: sa, ProjectID: project, Endpoint: fake.Endpoint(), Retry: retry,
	})
	if err != nil {
		t.Fatal(err)
	}
	return fake, p
}

func regToken(i int) string { return fmt.Sprintf("fcm-token-%d:APA91b%040d", i, i) }

// TestContract runs the push contract (pushtest) against the FCM fake.
// The APNs package runs the full 10,000-challenge burst; 2,000 here keep
// the run short (20ms × 2,000 / 8 workers = 5s).
func TestContract(t *testing.T) {
	pushtest.Run(t, pushtest.Suite[fcmfake.Request]{
		Platform: "fcm",
		Setup: func(t *testing.T, retry push.RetryPolicy) (pushtest.Fake[fcmfake.Request], pushauth.Pusher) {
			return setup(t, retry)
		},
		Token:       regToken,
		DeadReasons: []string{"UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH"},
		BurstN:      2000,
	})
}

func message(validity time.Duration) pushauth.PushMessage { return pushtest.Message(validity) }

func send(p *fcm.Pusher, token string, m pushauth.PushMessage) error {
	return pushtest.Send(p, "fcm", token, m)
}

func TestPushSendsOneWellFormedRequest(t *testing.T) {
	fake, p := setup(t, push.RetryPolicy{})
	m := message(time.Minute)
	if err := send(p, regToken(0), m); err != nil {
		t.Fatalf("Push: %v", err)
	}
	reqs := fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("fake got %d sends, want exactly 1", len(reqs))
	}
	if fake.TokenRequests() != 1 {
		t.Errorf("access tokens issued = %d, want 1", fake.TokenRequests())
	}
	r := reqs[0]
	if r.Status != 200 || r.Token != regToken(0) {
		t.Fatalf("send: status %d token %q", r.Status, r.Token)
	}
	msg := r.Message
	for k := range msg {
		if k != "token" && k != "data" && k != "android" {
			t.Errorf("message carries %q: %s", k, r.Body)
		}
	}
	data, _ := msg["data"].(map[string]any)
	if len(data) != 2 || data["challenge_id"] != m.ChallengeID || data["kind"] != m.Kind {
		t.Errorf("data = %v, want exactly challenge_id and kind", data)
	}
	android, _ := msg["android"].(map[string]any)
	if android["priority"] != "high" {
		t.Errorf("android.priority = %v", android["priority"])
	}
	if android["collapse_key"] != push.CollapseID(m.UserKey) {
		t.Errorf("android.collapse_key = %v", android["collapse_key"])
	}
	if _, ok := android["notification"]; ok {
		t.Errorf("android carries a notification (display data): %s", r.Body)
	}
	ttlStr, _ := android["ttl"].(string)
	ttl, err := time.ParseDuration(ttlStr)
	if err != nil || ttl > time.Minute || ttl < 55*time.Second {
		t.Errorf("android.ttl = %q, want the remaining validity (~60s)", ttlStr)
	}
	if strings.Contains(string(r.Body), "user-42") || strings.Contains(string(r.Body), "contract") {
		t.Errorf("message leaks the user key: %s", r.Body)
	}
}

func TestInvalidArgumentNotAboutTheToken(t *testing.T) {
	fake, p := setup(t, push.RetryPolicy{Base: 10 * time.Millisecond})
	tok := regToken(9)
	fake.ScriptReplies(tok, fcmfake.Reply{Status: 400, ErrorStatus: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT",
		Message: "Invalid value at 'message.android.ttl'"})
	err := send(p, tok, message(time.Minute))
	if err == nil || errors.Is(err, pushauth.ErrDeadToken) {
		t.Fatalf("err = %v, want a plain error", err)
	}
	if n := len(fake.RequestsFor(tok)); n != 1 {
		t.Errorf("attempts = %d, want 1", n)
	}
}

func TestRetries429And500ThenSucceeds(t *testing.T) {
	fake, p := setup(t, push.RetryPolicy{Base: 50 * time.Millisecond})
	tok := regToken(8)
	fake.Script(tok, 429, 500, 200)
	m := message(10 * time.Second)
	start := time.Now()
	if err := send(p, tok, m); err != nil {
		t.Fatalf("Push: %v", err)
	}
	reqs := fake.RequestsFor(tok)
	if len(reqs) != 3 {
		t.Fatalf("attempts = %d, want 3", len(reqs))
	}
	for i, r := range reqs {
		t.Logf("attempt %d: +%v status %d", i+1, r.At.Sub(start).Round(time.Millisecond), r.Status)
	}
}

func TestPersistent503StopsAtTheDeadline(t *testing.T) {
	fake, p := setup(t, push.RetryPolicy{})
	tok := regToken(10)
	fake.Script(tok, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503)
	m := message(1500 * time.Millisecond)
	err := send(p, tok, m)
	late := time.Since(m.ExpiresAt)
	if err == nil {
		t.Fatal("Push succeeded")
	}
	// The SDK's next wait is 2s: a retry past the deadline would be far
	// later than this slack for a loaded machine.
	if late > 500*time.Millisecond {
		t.Errorf("returned %v after the deadline", late)
	}
	for _, r := range fake.RequestsFor(tok) {
		if r.At.After(m.ExpiresAt.Add(100 * time.Millisecond)) {
			t.Errorf("attempt past the deadline")
		}
	}
	// SDK: attempts at 0s, 0s, 1s; the next (after 2s more) is past the
	// deadline. Our layer adds none.
	if n := len(fake.RequestsFor(tok)); n != 3 {
		t.Errorf("attempts = %d, want 3", n)
	}
}

type bogusAuth struct{}

func (bogusAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer not-issued-by-the-server")
	return http.DefaultTransport.RoundTrip(r)
}

func TestUnknownBearerIsRejected(t *testing.T) {
	fake := fcmfake.New(fcmfake.Options{Project: project})
	defer fake.Close()
	p, err := fcm.New(context.Background(), fcm.Options{
		ProjectID: project, Endpoint: fake.Endpoint(), HTTPClient: &http.Client{Transport: bogusAuth{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = send(p, regToken(12), message(time.Minute))
	if err == nil || errors.Is(err, pushauth.ErrDeadToken) {
		t.Fatalf("err = %v, want an authentication error", err)
	}
	if fake.Count() != 1 || fake.Requests()[0].Status != 401 {
		t.Errorf("fake: %d sends, want one answered 401", fake.Count())
	}
}

func TestUntrustedServiceAccountGetsNoToken(t *testing.T) {
	fake := fcmfake.New(fcmfake.Options{Project: project})
	defer fake.Close()
	other := fcmfake.New(fcmfake.Options{Project: project})
	defer other.Close()
	// A key the fake never saw, but token_uri pointing at the fake.
	sa, err := other.WriteServiceAccount(t.TempDir(), project)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := readFile(sa)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFile(sa, strings.ReplaceAll(raw, other.URL, fake.URL)); err != nil {
		t.Fatal(err)
	}
	p, err := fcm.New(context.Background(), fcm.Options{CredentialsFile: sa, ProjectID: project, Endpoint: fake.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	if err := send(p, regToken(13), message(1500*time.Millisecond)); err == nil {
		t.Fatal("a push with an untrusted service account succeeded")
	}
	if fake.TokenRequests() != 0 || fake.Count() != 0 {
		t.Errorf("fake issued %d tokens and got %d sends, want 0 and 0", fake.TokenRequests(), fake.Count())
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := fcm.New(context.Background(), fcm.Options{CredentialsFile: "x.json", HTTPClient: http.DefaultClient, ProjectID: project}); err == nil {
		t.Error("New accepted both an HTTP client and a credentials file")
	}
	if _, err := fcm.New(context.Background(), fcm.Options{CredentialsFile: t.TempDir() + "/missing.json", ProjectID: project}); err == nil {
		t.Error("New accepted a missing credentials file")
	}
}
