package caddymodule_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/pushauth/push/apns/apnsfake"
	"github.com/onepush/onepush/pushauth/push/fcm/fcmfake"
)

// TestRealPushThroughAPNsAndFCM runs the real apns2 and firebase clients
// inside Caddy against protocol-level fakes of Apple's and Google's
// services: one well-formed push per login, and a dead token that falls
// back to poll mode without losing the held login.
func TestRealPushThroughAPNsAndFCM(t *testing.T) {
	dir := t.TempDir()
	p8, key, err := apnsfake.WriteP8(dir)
	if err != nil {
		t.Fatal(err)
	}
	const topic, teamID, keyID, project = "jp.example.bank.onepush", "TEAM123456", "KEY1234567", "example-bank"
	apple := apnsfake.New(apnsfake.Options{TeamID: teamID, KeyID: keyID, PublicKey: &key.PublicKey, Topic: topic})
	t.Cleanup(apple.Close)
	caFile := filepath.Join(dir, "apns-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: apple.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	google := fcmfake.New(fcmfake.Options{Project: project})
	t.Cleanup(google.Close)
	sa, err := google.WriteServiceAccount(dir, project)
	if err != nil {
		t.Fatal(err)
	}

	e := newEnv(t, envOptions{})
	g := e.startGateway(fmt.Sprintf(`		apns {
			key_file %s
			key_id %s
			team_id %s
			topic %s
			host %s
			ca_file %s
		}
		fcm {
			credentials_file %s
			project_id %s
			endpoint %s
		}`, p8, keyID, teamID, topic, apple.URL, caFile, sa, project, google.Endpoint()))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	register := func(platform, token string) *device.Phone {
		p, err := device.New(g.URL + "/onepush/device/v1")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Register(ctx, platform, token); err != nil {
			t.Fatal(err)
		}
		return p
	}
	appleToken := fmt.Sprintf("%064x", 7)
	iphone := register("apns", appleToken)
	android := register("fcm", "fcm-registration-token-1")
	enroll(t, g, alice, iphone)
	enroll(t, g, carol, android)
	waitCount := func(what string, n func() int, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for n() < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := n(); got != want {
			t.Fatalf("%s: %d requests, want %d", what, got, want)
		}
	}
	// Enrolment sends a test push to each phone.
	waitCount("APNs after enrolment", apple.Count, 1)
	waitCount("FCM after enrolment", google.Count, 1)
	apple.Reset()

	login := func(u struct{ name, body string }, phone *device.Phone) int {
		res := newBrowser().postAsync(ctx, g.URL+"/login", u.body)
		ch := waitChallenge(t, phone)
		if st, _ := phone.Decide(ctx, ch, device.Approve, 0); st != http.StatusOK {
			t.Fatalf("%s: approve: %d", u.name, st)
		}
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.resp.StatusCode
	}

	t.Run("APNs: one well-formed request per login", func(t *testing.T) {
		res := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
		ch := waitChallenge(t, iphone)
		waitCount("APNs", apple.Count, 1)
		req := apple.Requests()[0]
		if req.Status != 200 || req.Token != appleToken || req.Payload["challenge_id"] != ch.ID || req.Payload["kind"] != "login" {
			t.Fatalf("APNs request: status %d token %s payload %s", req.Status, req.Token, req.Body)
		}
		if req.Header.Get("apns-topic") != topic || req.Header.Get("apns-push-type") != "alert" || req.Header.Get("apns-priority") != "10" {
			t.Fatalf("APNs headers: %v", req.Header)
		}
		if exp := req.Header.Get("apns-expiration"); exp != fmt.Sprint(ch.ExpiresAt.Unix()) {
			t.Fatalf("apns-expiration %s, want the challenge's expiry %d", exp, ch.ExpiresAt.Unix())
		}
		if len(req.Payload) != 3 { // aps, challenge_id, kind: no amounts, names or accounts
			t.Fatalf("APNs payload carries more than the challenge id and kind: %s", req.Body)
		}
		iphone.Decide(ctx, ch, device.Approve, 0)
		if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %v %v", r.err, r.resp)
		}
	})

	t.Run("FCM: one well-formed message per login", func(t *testing.T) {
		before := google.Count()
		if st := login(struct{ name, body string }{"carol", loginBody(carol)}, android); st != http.StatusSeeOther {
			t.Fatalf("carol's login: %d", st)
		}
		waitCount("FCM", google.Count, before+1)
		msg := google.Requests()[before]
		data, _ := msg.Message["data"].(map[string]any)
		android, _ := msg.Message["android"].(map[string]any)
		if msg.Status != 200 || msg.Token != "fcm-registration-token-1" || data["kind"] != "login" || data["challenge_id"] == "" || len(data) != 2 {
			t.Fatalf("FCM message: status %d token %s body %s", msg.Status, msg.Token, msg.Body)
		}
		if android["priority"] != "high" && android["priority"] != "HIGH" {
			t.Fatalf("FCM android priority: %v", android)
		}
	})

	t.Run("dead APNs token: poll mode still completes the login", func(t *testing.T) {
		apple.Reset()
		apple.MarkDead(appleToken, "Unregistered")
		if st := login(struct{ name, body string }{"alice", loginBody(alice)}, iphone); st != http.StatusSeeOther {
			t.Fatalf("login approved by polling: %d", st)
		}
		waitCount("APNs to the dead token", apple.Count, 1)
		// The credential is now in poll mode: the next login sends nothing
		// to Apple and is still approved by polling.
		if st := login(struct{ name, body string }{"alice", loginBody(alice)}, iphone); st != http.StatusSeeOther {
			t.Fatalf("second login in poll mode: %d", st)
		}
		if n := apple.Count(); n != 1 {
			t.Fatalf("APNs got %d requests after the token was reported dead, want still 1", n)
		}
		// A fresh token from the app brings push back.
		fresh := fmt.Sprintf("%064x", 8)
		if err := iphone.UpdatePushToken(ctx, "apns", fresh); err != nil {
			t.Fatal(err)
		}
		if st := login(struct{ name, body string }{"alice", loginBody(alice)}, iphone); st != http.StatusSeeOther {
			t.Fatalf("login after a new token: %d", st)
		}
		waitCount("APNs after a new token", func() int { return len(apple.RequestsFor(fresh)) }, 1)
	})
}
