// Package seal encrypts the records a store keeps outside the process
// (stored requests, stored bank responses, security-code secrets) so that
// a copy of the store, its replicas, its append-only file or its backups
// holds no secret in clear.
//
// A Sealer uses AES-256-GCM with a random 96-bit nonce and the record's
// own key as associated data, so a sealed value moved to another record
// does not open. It seals with its current key and opens with the current
// or any older key, which is how keys are rotated: add the new key as
// current, keep the old one listed until `store reseal` has rewritten
// every record, then drop it.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of a key: AES-256.
const KeySize = 32

// prefix starts every sealed value, so a reader can tell a sealed record
// from one an earlier version wrote in clear.
var prefix = []byte("onepush-sealed-v1:")

const keyIDSize = 4

// ErrOpen is returned for a value that no configured key opens: a
// different key, a value moved from another record, or tampering.
var ErrOpen = errors.New("seal: cannot open value (wrong key, another record's value, or tampered)")

// Sealer seals with its first key and opens with any of its keys.
// It is safe for concurrent use.
type Sealer struct {
	keys []key
}

type key struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

// New builds a Sealer from raw 32-byte keys: current first, then the
// older keys that may still open records.
func New(current []byte, older ...[]byte) (*Sealer, error) {
	s := &Sealer{}
	for i, raw := range append([][]byte{current}, older...) {
		if len(raw) != KeySize {
			return nil, fmt.Errorf("seal: key %d is %d bytes, want %d", i, len(raw), KeySize)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i, err)
		}
		s.keys = append(s.keys, key{id: keyID(raw), aead: aead})
	}
	return s, nil
}

// ParseKeys builds a Sealer from base64 keys (standard or URL alphabet,
// padded or not), as the config gives them: current first.
func ParseKeys(current string, older ...string) (*Sealer, error) {
	var raws [][]byte
	for i, s := range append([]string{current}, older...) {
		raw, err := decodeKey(s)
		if err != nil {
			name := "encryption_key"
			if i > 0 {
				name = fmt.Sprintf("previous key %d", i)
			}
			return nil, fmt.Errorf("seal: %s: %w", name, err)
		}
		raws = append(raws, raw)
	}
	return New(raws[0], raws[1:]...)
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil {
			if len(raw) != KeySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d (base64 of 32 random bytes, e.g. `openssl rand -base64 32`)", len(raw), KeySize)
			}
			return raw, nil
		}
	}
	return nil, errors.New("not base64 (want base64 of 32 random bytes, e.g. `openssl rand -base64 32`)")
}

// NewKey returns a fresh random key, base64 encoded as the config takes it.
func NewKey() (string, error) {
	var raw [KeySize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("seal: reading randomness: %w", err)
	}
	return base64.StdEncoding.EncodeToString(raw[:]), nil
}

// keyID names a key without revealing it, so Open picks the right key.
func keyID(raw []byte) [keyIDSize]byte {
	h := sha256.Sum256(append([]byte("onepush-seal-key-id\x00"), raw...))
	var id [keyIDSize]byte
	copy(id[:], h[:keyIDSize])
	return id
}

// Seal encrypts plaintext for the record named by ad (its store key).
// The result is prefix | key id | nonce | ciphertext+tag.
func (s *Sealer) Seal(plaintext, ad []byte) ([]byte, error) {
	k := s.keys[0]
	out := make([]byte, 0, len(prefix)+keyIDSize+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	out = append(out, prefix...)
	out = append(out, k.id[:]...)
	nonce := out[len(out) : len(out)+k.aead.NonceSize()]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: reading randomness: %w", err)
	}
	out = out[:len(out)+len(nonce)]
	return k.aead.Seal(out, nonce, plaintext, ad), nil
}

// Open decrypts a value Seal produced for the same ad with any of the
// Sealer's keys.
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	if !IsSealed(sealed) {
		return nil, fmt.Errorf("%w: not a sealed value", ErrOpen)
	}
	rest := sealed[len(prefix):]
	if len(rest) < keyIDSize {
		return nil, ErrOpen
	}
	id, rest := rest[:keyIDSize], rest[keyIDSize:]
	for _, k := range s.keys {
		if !bytes.Equal(k.id[:], id) {
			continue
		}
		n := k.aead.NonceSize()
		if len(rest) < n+k.aead.Overhead() {
			return nil, ErrOpen
		}
		pt, err := k.aead.Open(nil, rest[:n], rest[n:], ad)
		if err != nil {
			return nil, ErrOpen
		}
		return pt, nil
	}
	return nil, fmt.Errorf("%w: sealed under a key that is not configured (add it to the previous keys)", ErrOpen)
}

// Current reports whether sealed was sealed under the current key; a
// record that is not needs resealing (key rotation).
func (s *Sealer) Current(sealed []byte) bool {
	return IsSealed(sealed) && len(sealed) >= len(prefix)+keyIDSize &&
		bytes.Equal(sealed[len(prefix):len(prefix)+keyIDSize], s.keys[0].id[:])
}

// IsSealed reports whether b looks like a value Seal produced (and not a
// record an earlier version wrote in clear).
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, prefix) }
