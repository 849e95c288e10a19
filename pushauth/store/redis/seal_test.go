package redis

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

const (
	otpSecret  = "JBSWY3DPEHPK3PXPONEPUSHTEST"
	txnSecret  = "txn-password-4711"
	heldCookie = "BANKSESSION=cookie-value-0815"
)

func heldChallenge(id, user string) *pushauth.Challenge {
	now := time.Now()
	c := &pushauth.Challenge{ID: id, UserKey: user, CredentialID: "cred1", Rule: "transfer", Kind: "transaction",
		Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute), Context: "{}"}
	c.Held = &pushauth.HeldRequest{Method: "POST", URI: "/transfer", Host: "bank",
		Header: map[string][]string{"X-Test": {heldCookie}},
		Body:   []byte("payee_account=5550001&amount=1200&txn_password=" + txnSecret)}
	return c
}

// openWithClient opens a store on addr under a fresh prefix, and a plain
// client that reads what the store wrote there.
func openWithClient(t *testing.T, addr string) (*Store, *goredis.Client, string) {
	t.Helper()
	prefix := uniquePrefix()
	s := open(t, []string{addr}, prefix)
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = rc.Close() })
	return s, rc, prefix
}

// dump reads every key of the prefix as stored, and every message captured.
func dump(t *testing.T, rc *goredis.Client, prefix string) map[string][]byte {
	t.Helper()
	ctx := ctxT(t)
	out := map[string][]byte{}
	keys, err := rc.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if typ, _ := rc.Type(ctx, k).Result(); typ == "string" {
			b, err := rc.Get(ctx, k).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			out[k] = b
		}
	}
	return out
}

// TestNothingSecretInRedis: the stored request and the security-code
// secret are readable through the store and nowhere in Redis or on the
// channel, in clear or in base64.
func TestNothingSecretInRedis(t *testing.T) {
	addr := redistest.Start(t)
	s, rc, prefix := openWithClient(t, addr)
	ctx := ctxT(t)
	sub := rc.PSubscribe(ctx, "*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	if err := s.PutCredential(ctx, &pushauth.Credential{ID: "cred1", OTPSecret: otpSecret, Platform: "none"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateChallenge(ctx, heldChallenge("h1", "alice"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateChallenge(ctx, heldChallenge("h2", "alice"), time.Now().Add(time.Minute)); err != nil { // supersedes h1
		t.Fatal(err)
	}
	if _, err := s.Resolve(ctx, "h2", pushauth.StatusApproved, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPushResult(ctx, "h2", "sent"); err != nil {
		t.Fatal(err)
	}

	// Through the store: everything as it was put.
	cred, err := s.GetCredential(ctx, "cred1")
	if err != nil || cred.OTPSecret != otpSecret {
		t.Fatalf("GetCredential = %+v, %v", cred, err)
	}
	for _, id := range []string{"h1", "h2"} {
		c, err := s.GetChallenge(ctx, id)
		if err != nil || c.Held == nil || !bytes.Contains(c.Held.Body, []byte(txnSecret)) || c.Held.Header.Get("X-Test") != heldCookie {
			t.Fatalf("GetChallenge(%s) = %+v, %v; want the stored request", id, c, err)
		}
	}

	var messages int
	for {
		msg, err := sub.ReceiveTimeout(ctx, 200*time.Millisecond)
		if err != nil {
			break
		}
		m, ok := msg.(*goredis.Message)
		if !ok {
			continue
		}
		messages++
		if leaks := redistest.FindSecrets([]byte(m.Payload), otpSecret, txnSecret, heldCookie); len(leaks) > 0 {
			t.Errorf("message on %s: %v", m.Channel, leaks)
		}
	}
	if messages < 2 {
		t.Fatalf("captured %d messages, want the supersede and the approval", messages)
	}
	if leaks := leaksIn(t, rc, prefix); len(leaks) > 0 {
		t.Errorf("in Redis: %v", leaks)
	}
	if cred, _ := rc.Get(ctx, prefix+"cred:cred1").Bytes(); !seal.IsSealed(cred) {
		t.Errorf("credential stored as %.80q, want a sealed value", cred)
	}
}

// TestSealedPartIsBoundToItsRecord: a sealed value copied into another
// record does not open there, and a wrong key opens nothing: errors, never
// a record without its request or a credential "not found".
func TestSealedPartIsBoundToItsRecord(t *testing.T) {
	addr := redistest.Start(t)
	s, rc, prefix := openWithClient(t, addr)
	ctx := ctxT(t)
	for _, id := range []string{"m1", "m2"} {
		if _, err := s.CreateChallenge(ctx, heldChallenge(id, "u-"+id), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	// m1's sealed request, copied over m2's.
	moved, err := rc.Get(ctx, s.secretsKey("u-m1", "m1")).Bytes()
	if err != nil || !seal.IsSealed(moved) {
		t.Fatalf("m1's secrets: %.80q, %v", moved, err)
	}
	if err := rc.Set(ctx, s.secretsKey("u-m2", "m2"), moved, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if c, err := s.GetChallenge(ctx, "m2"); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("GetChallenge with another record's sealed request = %+v, %v; want ErrOpen", c, err)
	}

	if err := s.PutCredential(ctx, &pushauth.Credential{ID: "cred1", OTPSecret: otpSecret}); err != nil {
		t.Fatal(err)
	}
	other, err := seal.New(bytes.Repeat([]byte{9}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := New(ctx, Options{Addrs: []string{addr}, Prefix: prefix, Sealer: other})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if c, err := wrong.GetCredential(ctx, "cred1"); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("GetCredential under another key = %+v, %v; want ErrOpen", c, err)
	}
	if _, err := New(ctx, Options{Addrs: []string{addr}, Prefix: prefix}); err == nil || !strings.Contains(err.Error(), "encryption key") {
		t.Fatalf("New without a key: %v, want a refusal naming the encryption key", err)
	}
}

// clearRecords writes what the previous version wrote: a credential and a
// challenge (with its stored request) as plain JSON.
func clearRecords(t *testing.T, rc *goredis.Client, s *Store, user, id string) {
	t.Helper()
	ctx := ctxT(t)
	cred, _ := json.Marshal(pushauth.Credential{ID: "cred-" + id, OTPSecret: otpSecret, Platform: "none"})
	if err := rc.Set(ctx, s.credKey("cred-"+id), cred, 0).Err(); err != nil {
		t.Fatal(err)
	}
	ch, _ := json.Marshal(heldChallenge(id, user))
	if err := rc.Set(ctx, s.challengeKey(user, id), ch, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Set(ctx, s.challengeIndexKey(id), "0123456789abcdef:"+user, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
}

func leaksIn(t *testing.T, rc *goredis.Client, prefix string) []string {
	t.Helper()
	var out []string
	for k, v := range dump(t, rc, prefix) {
		for _, l := range redistest.FindSecrets(v, otpSecret, txnSecret, heldCookie) {
			out = append(out, k+": "+l)
		}
	}
	return out
}

// TestClearRecordsAreSealedOnFirstTouch: a rolling upgrade leaves no
// record of the previous version in clear once it has been read.
func TestClearRecordsAreSealedOnFirstTouch(t *testing.T) {
	addr := redistest.Start(t)
	s, rc, prefix := openWithClient(t, addr)
	ctx := ctxT(t)
	clearRecords(t, rc, s, "alice", "old1")
	if leaks := leaksIn(t, rc, prefix); len(leaks) == 0 {
		t.Fatal("the clear records of the previous version hold no secret: the test proves nothing")
	}
	cred, err := s.GetCredential(ctx, "cred-old1")
	if err != nil || cred.OTPSecret != otpSecret {
		t.Fatalf("GetCredential of a clear record = %+v, %v", cred, err)
	}
	c, err := s.GetChallenge(ctx, "old1")
	if err != nil || c.Held == nil || !bytes.Contains(c.Held.Body, []byte(txnSecret)) {
		t.Fatalf("GetChallenge of a clear record = %+v, %v", c, err)
	}
	if leaks := leaksIn(t, rc, prefix); len(leaks) > 0 {
		t.Fatalf("after the first read: %v", leaks)
	}
	if ttl, _ := rc.PTTL(ctx, s.secretsKey("alice", "old1")).Result(); ttl <= 0 {
		t.Fatalf("the resealed request has no TTL (%s)", ttl)
	}
	// Still readable, and still the same.
	if c, err := s.GetChallenge(ctx, "old1"); err != nil || c.Held == nil || c.Held.Header.Get("X-Test") != heldCookie {
		t.Fatalf("GetChallenge after resealing = %+v, %v", c, err)
	}

	// A clear record resolved before anyone read it is published without
	// its request.
	clearRecords(t, rc, s, "bob", "old2")
	sub := rc.Subscribe(ctx, s.channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(ctx, "old2", pushauth.StatusDenied, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg.Payload, "old2\n{") {
		t.Fatalf("published %.100q, want old2's record", msg.Payload)
	}
	if leaks := redistest.FindSecrets([]byte(msg.Payload), otpSecret, txnSecret, heldCookie); len(leaks) > 0 {
		t.Fatalf("the resolution of a clear record was published with: %v", leaks)
	}
}

// TestResealAndKeyRotation: `store reseal` seals every clear record and
// moves records sealed under a previous key to the current one, after
// which the previous key can be dropped.
func TestResealAndKeyRotation(t *testing.T) {
	addr := redistest.Start(t)
	prefix := uniquePrefix()
	ctx := ctxT(t)
	oldKey, newKey := bytes.Repeat([]byte{1}, seal.KeySize), bytes.Repeat([]byte{2}, seal.KeySize)
	withKeys := func(keys ...[]byte) *Store {
		sl, err := seal.New(keys[0], keys[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(ctx, Options{Addrs: []string{addr}, Prefix: prefix, Sealer: sl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()

	before := withKeys(oldKey)
	if err := before.PutCredential(ctx, &pushauth.Credential{ID: "cred-a", OTPSecret: otpSecret}); err != nil {
		t.Fatal(err)
	}
	if _, err := before.CreateChallenge(ctx, heldChallenge("sealed-old", "bob"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clearRecords(t, rc, before, "carol", "clear1")

	rotated := withKeys(newKey, oldKey)
	scanned, resealed, err := rotated.Reseal(ctx)
	if err != nil {
		t.Fatalf("Reseal: %v", err)
	}
	if resealed != 4 || scanned < 4 {
		t.Fatalf("Reseal scanned %d and resealed %d records, want 4 resealed (2 credentials, 2 challenges)", scanned, resealed)
	}
	if leaks := leaksIn(t, rc, prefix); len(leaks) > 0 {
		t.Fatalf("after Reseal: %v", leaks)
	}
	if _, again, err := rotated.Reseal(ctx); err != nil || again != 0 {
		t.Fatalf("a second Reseal resealed %d records (%v), want none", again, err)
	}
	// The previous key is no longer needed.
	after := withKeys(newKey)
	for _, id := range []string{"cred-a", "cred-clear1"} {
		if c, err := after.GetCredential(ctx, id); err != nil || c.OTPSecret != otpSecret {
			t.Fatalf("GetCredential(%s) with the new key only = %+v, %v", id, c, err)
		}
	}
	for _, id := range []string{"sealed-old", "clear1"} {
		if c, err := after.GetChallenge(ctx, id); err != nil || c.Held == nil || !bytes.Contains(c.Held.Body, []byte(txnSecret)) {
			t.Fatalf("GetChallenge(%s) with the new key only = %+v, %v", id, c, err)
		}
	}
	// Without the rotation, the old key's records do not open under the
	// new key alone.
	if err := before.PutCredential(ctx, &pushauth.Credential{ID: "cred-late", OTPSecret: otpSecret}); err != nil {
		t.Fatal(err)
	}
	if _, err := after.GetCredential(ctx, "cred-late"); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("a record sealed under a dropped key opened: %v", err)
	}
}
