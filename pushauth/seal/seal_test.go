package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

func mustKey(t *testing.T) string {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	s, err := ParseKeys(mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("password=alice-pass-1&txn_password=alice-txn-1")
	sealed, err := s.Seal(secret, []byte("u:1001/alice:ch:abc"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) || bytes.Contains(sealed, []byte("alice")) {
		t.Fatalf("sealed value holds the plaintext: %q", sealed)
	}
	if !IsSealed(sealed) || !s.Current(sealed) {
		t.Fatalf("IsSealed %v Current %v, want both true", IsSealed(sealed), s.Current(sealed))
	}
	got, err := s.Open(sealed, []byte("u:1001/alice:ch:abc"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v; want the plaintext", got, err)
	}
	again, _ := s.Seal(secret, []byte("u:1001/alice:ch:abc"))
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
}

func TestOpenRefuses(t *testing.T) {
	s, _ := ParseKeys(mustKey(t))
	other, _ := ParseKeys(mustKey(t))
	sealed, _ := s.Seal([]byte("otp-secret"), []byte("cred:OPA"))
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	cases := []struct {
		name  string
		s     *Sealer
		value []byte
		ad    string
	}{
		{"another record's key as associated data", s, sealed, "cred:OPB"},
		{"another key", other, sealed, "cred:OPA"},
		{"tampered", s, tampered, "cred:OPA"},
		{"clear text", s, []byte("otp-secret"), "cred:OPA"},
		{"truncated", s, sealed[:len(prefix)+2], "cred:OPA"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if pt, err := c.s.Open(c.value, []byte(c.ad)); !errors.Is(err, ErrOpen) {
				t.Fatalf("Open = %q, %v; want ErrOpen", pt, err)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := mustKey(t), mustKey(t)
	oldS, _ := ParseKeys(oldKey)
	sealedOld, _ := oldS.Seal([]byte("v"), []byte("k"))

	rotated, err := ParseKeys(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Current(sealedOld) {
		t.Fatal("a value sealed under the previous key counts as current")
	}
	if got, err := rotated.Open(sealedOld, []byte("k")); err != nil || string(got) != "v" {
		t.Fatalf("previous key no longer opens: %q %v", got, err)
	}
	resealed, _ := rotated.Seal([]byte("v"), []byte("k"))
	if !rotated.Current(resealed) {
		t.Fatal("a fresh seal is not under the current key")
	}
	newOnly, _ := ParseKeys(newKey)
	if _, err := newOnly.Open(sealedOld, []byte("k")); !errors.Is(err, ErrOpen) {
		t.Fatalf("a dropped key still opens: %v", err)
	}
}

func TestParseKeysErrors(t *testing.T) {
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, k := range []string{"", "not base64!", short} {
		if _, err := ParseKeys(k); err == nil {
			t.Errorf("ParseKeys(%q) accepted", k)
		}
	}
	raw := make([]byte, KeySize)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		if _, err := ParseKeys(enc.EncodeToString(raw)); err != nil {
			t.Errorf("ParseKeys(%s) = %v", enc.EncodeToString(raw), err)
		}
	}
}
