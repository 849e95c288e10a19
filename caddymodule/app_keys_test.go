package caddymodule

import "testing"

// TestEngineKeyFollowsTheEncryptionKeys: the engine pool is keyed by the
// keys too, so a reload with a new key starts a store that seals with it.
func TestEngineKeyFollowsTheEncryptionKeys(t *testing.T) {
	const k1, k2 = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=", "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI="
	id := func(key string, previous ...string) string {
		t.Helper()
		_, got, err := (&App{EncryptionKey: key, PreviousEncryptionKeys: previous}).sealerAndID()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if id("") != "" {
		t.Fatal("no key, yet a fingerprint")
	}
	if id(k1) != id(k1) {
		t.Fatal("the same key gives two fingerprints")
	}
	for _, other := range []string{id(k2), id(k2, k1), id(k1, k2)} {
		if other == id(k1) {
			t.Fatalf("different keys give the same fingerprint %s", other)
		}
	}
	if _, _, err := (&App{EncryptionKey: "not base64!"}).sealerAndID(); err == nil {
		t.Fatal("a malformed key was accepted")
	}
}
