package caddymodule_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/pushauth/seal"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// loginAndTransfer runs alice's interstitial login (stored with her
// password, approved on phone, replayed) and then her interstitial
// transfer (stored with the transaction password) through the gateway at
// gw, and returns the bank session cookie the login set and the codes
// the two waiting pages showed.
func loginAndTransfer(t *testing.T, ctx context.Context, gw string, phone *device.Phone) (cookie string, codes [2]string) {
	t.Helper()
	b := newBrowser()
	w := startWait(t, ctx, b, gw+"/login", loginBody(alice))
	approve(t, ctx, phone, w.code)
	codes[0] = w.code
	if resp, page, err := w.post(ctx, gw, "continue", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("continue of the login: %v %v %.200q", err, resp, page)
	}
	for _, c := range b.Jar.Cookies(mustURL(t, gw)) {
		if c.Name == bank.SessionCookieName {
			cookie = c.Value
		}
	}
	if cookie == "" {
		t.Fatal("the approved login set no bank session cookie")
	}
	w = startWait(t, ctx, b, gw+"/transfer", transferForm("5550001", "98765", alice.TxnPassword))
	approve(t, ctx, phone, w.code)
	codes[1] = w.code
	if resp, page, err := w.post(ctx, gw, "continue", nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("continue of the transfer: %v %v %.200q", err, resp, page)
	}
	return cookie, codes
}

// secretReporter returns a function that fails the test for each of
// secrets found in a blob, naming it by names and saying where.
func secretReporter(t *testing.T, secrets, names []string) func(where string, blob []byte) {
	return func(where string, blob []byte) {
		t.Helper()
		for _, f := range redistest.FindSecrets(blob, secrets...) {
			for i, n := range names {
				f = strings.Replace(f, "secret "+string(rune('0'+i)), n, 1)
			}
			t.Errorf("%s: %s", where, f)
		}
	}
}

// TestRedisKeepsNoSecretInClear: after an enrolment, an interstitial login
// and an interstitial transfer through a real Caddy on Redis, neither the
// data set (an RDB written by SAVE, and every key read back), nor the
// append-only file, nor any message published on any channel holds the
// login password, the transaction password, the bank's session cookie or
// the phone's security-code secret: not in clear, not in base64 at any
// alignment (redistest.FindSecrets decodes every base64 run it finds).
// The stored requests carried the passwords, so they went through Redis;
// before they were sealed, the stored request was base64 in the challenge
// JSON and on the channel, and the secret in the credential JSON.
func TestRedisKeepsNoSecretInClear(t *testing.T) {
	// Uncompressed RDB and a plain AOF, so a secret on disk is visible.
	srv := redistest.StartServer(t, "--appendonly", "yes", "--appendfsync", "always",
		"--aof-use-rdb-preamble", "no", "--rdbcompression", "no")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rc.Close()
	sub := rc.PSubscribe(ctx, "*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	var messages []*goredis.Message
	captured := make(chan struct{})
	go func() {
		defer close(captured)
		for m := range sub.Channel() {
			messages = append(messages, m)
		}
	}()

	e := newEnv(t, envOptions{edit: func(s string) string { return interstitialLogins(interstitialTransfers(s)) }})
	g, phone := e.gatewayWithAlice(redisGlobal(srv.Addr())) // the enrolment, with a security code

	cookie, codes := loginAndTransfer(t, ctx, g.URL, phone)
	ops := e.ops(t)
	if loginsByUser(ops)[alice.UserID] != 2 || transfersOf(ops)[alice.UserID] != 1 { // password-only before enrolment, then the approved one
		t.Fatalf("bank ops %+v, want alice's two logins and her transfer", ops)
	}

	if phone.OCRAKey() == "" {
		t.Fatal("the registration gave the phone no OCRA key")
	}
	if _, err := phone.Respond("12345678", "5550001", "98765"); err != nil {
		t.Fatalf("the registration's OCRA key and suite do not answer a transaction: %v", err)
	}
	// The codes the waiting pages showed, as a challenge record would hold
	// them in clear (six digits alone would match timestamps).
	secrets := []string{alice.Password, alice.TxnPassword, cookie, phone.OTPSecret(), phone.OCRAKey(),
		`"code":"` + codes[0] + `"`, `"code":"` + codes[1] + `"`}
	names := []string{"login password", "transaction password", "bank session cookie", "security-code secret", "OCRA key",
		"login's transferred code", "transfer's transferred code"}
	report := secretReporter(t, secrets, names)

	// The data set, as read back key by key.
	var challenges, sealed int
	iter := rc.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		typ, err := rc.Type(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		var blob []byte
		switch typ {
		case "string":
			blob, err = rc.Get(ctx, key).Bytes()
		case "set":
			var m []string
			m, err = rc.SMembers(ctx, key).Result()
			blob = []byte(strings.Join(m, "\n"))
		case "zset":
			var m []string
			m, err = rc.ZRange(ctx, key, 0, -1).Result()
			blob = []byte(strings.Join(m, "\n"))
		case "stream":
			var m []goredis.XMessage
			m, err = rc.XRange(ctx, key, "-", "+").Result()
			for _, x := range m {
				for k, v := range x.Values {
					blob = append(blob, []byte(k+"="+v.(string)+"\n")...)
				}
			}
		default:
			t.Fatalf("key %s of type %s: not read", key, typ)
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.Contains(key, ":ch:"):
			challenges++
		case strings.Contains(key, ":sec:") && seal.IsSealed(blob):
			sealed++ // a stored request, sealed
		}
		report("key "+key, blob)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if challenges < 2 || sealed < 2 {
		t.Errorf("%d challenge records, %d with a sealed request; want the login's and the transfer's", challenges, sealed)
	}

	// The data set and the append-only file on disk.
	if err := rc.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var files int
	err := filepath.WalkDir(srv.Dir(), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		if name != "dump.rdb" && !strings.Contains(path, "appendonly") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		report(path, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 {
		t.Fatalf("read %d RDB/AOF files under %s, want the RDB and the AOF", files, srv.Dir())
	}

	// Everything published.
	_ = sub.Close()
	<-captured
	var resolved int
	for _, m := range messages {
		if strings.HasSuffix(m.Channel, "resolved") {
			resolved++
		}
		report("message on "+m.Channel, []byte(m.Payload))
	}
	if resolved < 2 {
		t.Fatalf("captured %d messages on the resolved channel, want the login's and the transfer's approvals", resolved)
	}
}

// approve approves the phone's next pending challenge with the code its
// waiting page shows.
func approve(t *testing.T, ctx context.Context, phone *device.Phone, code string) {
	t.Helper()
	ch := waitChallenge(t, phone)
	if st, err := phone.DecideWithCode(ctx, ch, device.Approve, code); err != nil || st != http.StatusOK {
		t.Fatalf("approving %s: %d %v", ch.ID, st, err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
