package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// The audit trail's hash chain against whoever holds the store: an event
// edited or deleted in the embedded store's file, or in the Redis stream,
// is named by `caddy onepush audit verify`, which exits non-zero.

// verifyCLI runs `caddy onepush audit verify` with this env's Caddy
// directories and returns its output and exit code.
func (e *env) verifyCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	for _, v := range []string{"HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"} {
		t.Setenv(v, e.dir)
	}
	return cli(t, append([]string{"audit", "verify"}, args...)...)
}

// moreEvents suspends and resumes alice a few times through the admin API
// at api: events for the trail.
func moreEvents(t *testing.T, api string) {
	t.Helper()
	for range 3 {
		for _, action := range []string{"suspend", "resume"} {
			resp := adminCall(t, api, e2eAdminToken, "clerk", http.MethodPost, "/user/"+action, map[string]string{"key": keyOf(alice)})
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d", action, resp.StatusCode)
			}
		}
	}
}

// seqOf is an audit record's seq.
func seqOf(t *testing.T, rec []byte) uint64 {
	t.Helper()
	var ev struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(rec, &ev); err != nil || ev.Seq == 0 {
		t.Fatalf("audit record without a seq (%v): %s", err, rec)
	}
	return ev.Seq
}

// edited is rec with its detail rewritten, as an insider covering tracks would.
func edited(t *testing.T, rec []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec, &m); err != nil {
		t.Fatal(err)
	}
	m["outcome"] = "nothing happened"
	out, _ := json.Marshal(m)
	return out
}

func TestAuditVerifyNamesAnEditedEmbeddedStore(t *testing.T) {
	e := newEnv(t, envOptions{})
	sg := newStoreGateway(t, e, "")
	enroll(t, sg.gateway, alice, newPhone(t, sg.gateway))
	moreEvents(t, sg.adminAPI)
	// Online, through the admin API of the running gateway.
	if out, code := e.verifyCLI(t, "--admin", sg.adminAPI); code != 0 || !strings.Contains(out, "audit trail intact") {
		t.Fatalf("verify through the admin API: exit %d\n%s", code, out)
	}
	sg.stop(t, syscall.SIGTERM)
	cfg := filepath.Join(e.dir, "Caddyfile")
	offline := func() (string, int) { return e.verifyCLI(t, "--config", cfg, "--adapter", "caddyfile") }
	if out, code := offline(); code != 0 || !strings.Contains(out, "audit trail intact") {
		t.Fatalf("verify of the untouched file: exit %d\n%s", code, out)
	}

	file := filepath.Join(e.dir, "caddy", "onepush", "store.db")
	// tamper runs f on the audit bucket's keys and values, in order.
	tamper := func(f func(b *bolt.Bucket, keys, vals [][]byte) error) {
		t.Helper()
		db, err := bolt.Open(file, 0o600, &bolt.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("audit"))
			var keys, vals [][]byte
			_ = b.ForEach(func(k, v []byte) error {
				keys, vals = append(keys, append([]byte(nil), k...)), append(vals, append([]byte(nil), v...))
				return nil
			})
			if len(keys) < 5 {
				return fmt.Errorf("only %d audit events to tamper with", len(keys))
			}
			return f(b, keys, vals)
		}); err != nil {
			t.Fatal(err)
		}
	}
	var original []byte
	var changedSeq uint64
	tamper(func(b *bolt.Bucket, keys, vals [][]byte) error {
		original, changedSeq = vals[2], seqOf(t, vals[2])
		return b.Put(keys[2], edited(t, vals[2]))
	})
	out, code := offline()
	if code == 0 || !strings.Contains(out, fmt.Sprintf("event seq %d changed", changedSeq)) {
		t.Fatalf("verify after event seq %d was edited: exit %d\n%s", changedSeq, code, out)
	}
	var removedSeq uint64
	var removedKey, removedVal []byte
	tamper(func(b *bolt.Bucket, keys, vals [][]byte) error {
		if err := b.Put(keys[2], original); err != nil {
			return err
		}
		removedSeq, removedKey, removedVal = seqOf(t, vals[3]), keys[3], vals[3]
		return b.Delete(keys[3])
	})
	out, code = offline()
	if code == 0 || !strings.Contains(out, fmt.Sprintf("event seq %d removed", removedSeq)) {
		t.Fatalf("verify after event seq %d was deleted: exit %d\n%s", removedSeq, code, out)
	}
	// Review 3: the oldest events passed off as older than the chain (seq
	// and prev removed) and the third of them edited. verify used to say
	// "intact … 3 older events predate the chain".
	var strippedSeq uint64
	tamper(func(b *bolt.Bucket, keys, vals [][]byte) error {
		if err := b.Put(removedKey, removedVal); err != nil {
			return err
		}
		for i := range 3 {
			var m map[string]any
			if err := json.Unmarshal(vals[i], &m); err != nil {
				return err
			}
			strippedSeq = seqOf(t, vals[i])
			delete(m, "seq")
			delete(m, "prev")
			if i == 2 {
				m["outcome"] = "nothing happened"
			}
			rec, _ := json.Marshal(m)
			if err := b.Put(keys[i], rec); err != nil {
				return err
			}
		}
		return nil
	})
	out, code = offline()
	if code == 0 || !strings.Contains(out, fmt.Sprintf("event seq %d changed", strippedSeq)) {
		t.Fatalf("verify after the chain fields of seq 1 to %d were removed and seq %d edited: exit %d\n%s", strippedSeq, strippedSeq, code, out)
	}
}

func TestAuditVerifyNamesAnEditedRedisStream(t *testing.T) {
	addr := redistest.Start(t)
	const prefix = "audit-e2e:"
	e := newEnv(t, envOptions{})
	t.Setenv("ONEPUSH_ADMIN_TOKEN", e2eAdminToken)
	port, adminPort, internal := freePort(t), freePort(t), freePort(t)
	g, err := e.runCaddy(e.caddyfile(port, adminPort, caddyConfig{Global: redisGlobal(addr, "prefix "+prefix),
		AdminAPIPort: internal, AdminToken: "{env.ONEPUSH_ADMIN_TOKEN}"}), port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	enroll(t, g, alice, newPhone(t, g))
	api := fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", internal)
	moreEvents(t, api)
	offline := func() (string, int) { return e.verifyCLI(t, "--config", g.file, "--adapter", "caddyfile") }
	if out, code := offline(); code != 0 || !strings.Contains(out, "audit trail intact") {
		t.Fatalf("verify of the untouched stream: exit %d\n%s", code, out)
	}

	// Whoever holds Redis rewrites the stream: entries cannot be edited in
	// place, so they delete it and add the entries back under their IDs.
	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := prefix + "audit"
	msgs, err := rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil || len(msgs) < 5 {
		t.Fatalf("the stream holds %d entries (%v)", len(msgs), err)
	}
	rewrite := func(f func(i int, rec []byte) []byte) {
		t.Helper()
		pipe := rdb.TxPipeline()
		pipe.Del(ctx, key)
		for i, m := range msgs {
			if rec := f(i, []byte(m.Values["e"].(string))); rec != nil {
				pipe.XAdd(ctx, &goredis.XAddArgs{Stream: key, ID: m.ID, Values: []any{"e", rec}})
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	changedSeq := seqOf(t, []byte(msgs[2].Values["e"].(string)))
	rewrite(func(i int, rec []byte) []byte {
		if i == 2 {
			return edited(t, rec)
		}
		return rec
	})
	out, code := offline()
	if code == 0 || !strings.Contains(out, fmt.Sprintf("event seq %d changed", changedSeq)) {
		t.Fatalf("verify after event seq %d was edited: exit %d\n%s", changedSeq, code, out)
	}
	// The running gateway sees it too.
	if out, code := e.verifyCLI(t, "--admin", api); code == 0 || !strings.Contains(out, "seq "+strconv.FormatUint(changedSeq, 10)) {
		t.Fatalf("verify through the admin API after the edit: exit %d\n%s", code, out)
	}
	removedSeq := seqOf(t, []byte(msgs[3].Values["e"].(string)))
	rewrite(func(i int, rec []byte) []byte {
		if i == 3 {
			return nil
		}
		return rec
	})
	out, code = offline()
	if code == 0 || !regexp.MustCompile(fmt.Sprintf(`event seq %d removed`, removedSeq)).MatchString(out) {
		t.Fatalf("verify after event seq %d was deleted: exit %d\n%s", removedSeq, code, out)
	}
}
