package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/internal/caddyrig"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
	redisstore "github.com/onepush/onepush/pushauth/store/redis"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// TestStoreResealCommand: `caddy onepush store reseal --config` seals the
// records the previous version wrote in clear and moves records sealed
// under a previous key to the current one, after which the previous key
// can be dropped from the config; a Redis store without a key does not
// start.
func TestStoreResealCommand(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc := goredis.NewClient(&goredis.Options{Addr: srv})
	defer rc.Close()

	const secret, txn = "JBSWY3DPEHPK3PXPRESEALTEST", "txn-password-reseal-1"
	oldKey, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	// What the previous version wrote: a credential and a challenge in clear.
	clearCred, _ := json.Marshal(pushauth.Credential{ID: "OPCLEAR", OTPSecret: secret, Platform: "none"})
	held := &pushauth.Challenge{ID: "clearch", UserKey: "1001/alice", CredentialID: "OPCLEAR", Status: pushauth.StatusPending,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute), Context: "{}"}
	held.Held = &pushauth.HeldRequest{Method: "POST", URI: "/transfer", Host: "bank", Body: []byte("txn_password=" + txn)}
	clearCh, _ := json.Marshal(held)
	for k, v := range map[string][]byte{
		"onepush:cred:OPCLEAR":              clearCred,
		"onepush:{u:1001/alice}:ch:clearch": clearCh,
		"onepush:ch:clearch":                []byte("0123456789abcdef:1001/alice"),
	} {
		if err := rc.Set(ctx, k, v, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// And a credential sealed under the key being rotated out.
	raw, _ := base64.StdEncoding.DecodeString(oldKey)
	oldSealer, _ := seal.New(raw)
	old, err := redisstore.New(ctx, redisstore.Options{Addrs: []string{srv}, Sealer: oldSealer})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.PutCredential(ctx, &pushauth.Credential{ID: "OPOLDKEY", OTPSecret: secret}); err != nil {
		t.Fatal(err)
	}
	old.Close()

	config := func(global string) string {
		f := filepath.Join(e.dir, "Caddyfile.reseal")
		if err := os.WriteFile(f, []byte(e.caddyfile(freePort(t), freePort(t), caddyConfig{Global: global})), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	run := func(file string) (string, error) {
		cmd := exec.Command(caddyBin, "onepush", "store", "reseal", "--config", file)
		cmd.Env = append(caddyrig.Env(e.dir), "ONEPUSH_OLD_KEY="+oldKey)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	rotated := config(redisGlobal(srv) + "\n\t\tprevious_encryption_keys {env.ONEPUSH_OLD_KEY}")
	out, err := run(rotated)
	if err != nil || !strings.Contains(out, "3 resealed") || !strings.Contains(out, "rewrote its persistence file") {
		t.Fatalf("store reseal: %v\n%s", err, out)
	}
	keys, err := rc.Keys(ctx, "onepush:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if typ, _ := rc.Type(ctx, k).Result(); typ != "string" {
			continue
		}
		v, _ := rc.Get(ctx, k).Bytes()
		if leaks := redistest.FindSecrets(v, secret, txn); len(leaks) > 0 {
			t.Errorf("after store reseal, key %s: %v", k, leaks)
		}
	}
	if out, err := run(rotated); err != nil || !strings.Contains(out, "0 resealed") {
		t.Fatalf("a second store reseal: %v\n%s", err, out)
	}
	// The previous key is not needed any more.
	curRaw, _ := base64.StdEncoding.DecodeString(testEncryptionKey)
	cur, _ := seal.New(curRaw)
	now, err := redisstore.New(ctx, redisstore.Options{Addrs: []string{srv}, Sealer: cur})
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	for _, id := range []string{"OPCLEAR", "OPOLDKEY"} {
		if c, err := now.GetCredential(ctx, id); err != nil || c.OTPSecret != secret {
			t.Fatalf("credential %s under the current key alone: %+v, %v", id, c, err)
		}
	}
	if c, err := now.GetChallenge(ctx, "clearch"); err != nil || c.Held == nil || !bytes.Contains(c.Held.Body, []byte(txn)) {
		t.Fatalf("challenge under the current key alone: %+v, %v", c, err)
	}

	// Refusals that say what is wrong.
	if out, err := run(config("")); err == nil || !strings.Contains(out, "nothing to reseal") {
		t.Fatalf("store reseal on the memory store: %v\n%s", err, out)
	}
	noKey := "\t\tstore redis {\n\t\t\taddresses " + srv + "\n\t\t}"
	if out, err := run(config(noKey)); err == nil || !strings.Contains(out, "encryption_key") {
		t.Fatalf("store reseal without a key: %v\n%s", err, out)
	}
	port, adminPort := freePort(t), freePort(t)
	if g, err := e.runCaddy(e.caddyfile(port, adminPort, caddyConfig{Global: noKey}), port, adminPort); err == nil || !strings.Contains(err.Error(), "encryption_key") {
		t.Fatalf("a gateway on Redis without encryption_key started (%v): %v", g, err)
	}
}
