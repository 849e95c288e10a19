// Package actcode is the activation codes' format and their stored hash:
// what a code looks like, how a typed one is read, and Argon2id bounded by cores.
package actcode

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"strings"
	"unicode"

	"golang.org/x/crypto/argon2"
)

// An activation code is 10 characters of Crockford's base32 (50 random
// bits), shown as XXXXX-XXXXX. Typed together with the user's own
// identifiers (the login that leads to the enrolment page), that is above
// the 40 bits NIST SP 800-63B rev 4 §4.1.2.2 asks of a binding code.
const (
	Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	Len      = 10
)

// Argon2id costs of the stored hash: a code sent by post lives for days,
// so a copy of the store must not give it away to a brute-force search.
const (
	activationArgonTime   = 2
	activationArgonMemory = 19 * 1024 // KiB
)

// New returns a fresh code, XXXXX-XXXXX.
func New() (string, error) {
	b := make([]byte, Len)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("actcode: reading randomness: %w", err)
	}
	for i := range b {
		b[i] = Alphabet[b[i]&31]
	}
	return string(b[:5]) + "-" + string(b[5:]), nil
}

// Normal is how a typed code is compared: case, spaces and
// hyphens do not matter, and O, I, L read as 0, 1, 1. It returns "" for
// anything that cannot be a code.
func Normal(typed string) string {
	var out strings.Builder
	for _, r := range strings.ToUpper(typed) {
		switch r {
		case ' ', '-', '\t':
			continue
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		if r > unicode.MaxASCII || !strings.ContainsRune(Alphabet, r) {
			return ""
		}
		out.WriteRune(r)
	}
	if out.Len() != Len {
		return ""
	}
	return out.String()
}

// argonSlots bounds the Argon2id hashes computed at once to the cores Go
// runs on: each holds 19 MiB and a core for tens of milliseconds, and
// enrolment posts with an activation code (right, wrong, or for a user who
// has none: the same work) arrive as fast as the rate limits let them
// (500 a second per instance), so unbounded they could hold gigabytes at
// once. A post waits for a slot instead.
var argonSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))

// argonKey is the hash (a variable so a test can watch its concurrency).
var argonKey = argon2.IDKey

// Hash is the stored form of user's code: Argon2id over both, salted.
func Hash(user, code string, salt []byte) []byte {
	argonSlots <- struct{}{}
	defer func() { <-argonSlots }()
	return argonKey([]byte(user+"\x00"+code), salt, activationArgonTime, activationArgonMemory, 1, 32)
}
