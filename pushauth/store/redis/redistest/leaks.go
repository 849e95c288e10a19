package redistest

import (
	"bytes"
	"encoding/base64"
	"fmt"
)

// minBase64Run is the shortest run of base64 characters decoded: six
// encoded bytes, shorter than any secret the tests look for.
const minBase64Run = 8

// maxDepth bounds how many encodings deep FindSecrets looks (base64 inside
// JSON inside base64 ...).
const maxDepth = 3

// FindSecrets reports every place in blob where one of secrets appears: in
// clear, or inside base64 at any alignment. Every run of base64 characters
// (standard or URL alphabet; "\/", as JSON encoders write "/", counts as
// "/") is decoded from each of its first four offsets, since a secret
// inside a larger encoded value starts at any byte, and what it decodes
// to is searched the same way, a few levels deep. The answer names the
// secret's index and where it was, never the secret.
func FindSecrets(blob []byte, secrets ...string) []string {
	var found []string
	seen := map[string]bool{}
	var search func(b []byte, path string, depth int)
	search = func(b []byte, path string, depth int) {
		for i, s := range secrets {
			if s != "" && bytes.Contains(b, []byte(s)) {
				f := fmt.Sprintf("secret %d %s", i, path)
				if !seen[f] {
					seen[f] = true
					found = append(found, f)
				}
			}
		}
		if depth == maxDepth {
			return
		}
		for _, run := range base64Runs(bytes.ReplaceAll(b, []byte(`\/`), []byte("/"))) {
			for align := 0; align < 4 && len(run)-align >= minBase64Run; align++ {
				dec := decodeLoose(run[align:])
				if len(dec) > 0 {
					search(dec, fmt.Sprintf("%s, inside base64 read from character %d of a run", path, align), depth+1)
				}
			}
		}
	}
	search(blob, "in clear", 0)
	return found
}

func isBase64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

// base64Runs splits b into maximal runs of base64 characters ("=" ends a
// value, so it ends a run).
func base64Runs(b []byte) [][]byte {
	var runs [][]byte
	start := -1
	for i := 0; i <= len(b); i++ {
		if i < len(b) && isBase64(b[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start >= minBase64Run {
			runs = append(runs, b[start:i])
		}
		start = -1
	}
	return runs
}

// decodeLoose decodes as much of run as forms whole bytes, in either
// alphabet.
func decodeLoose(run []byte) []byte {
	norm := bytes.Map(func(r rune) rune {
		switch r {
		case '-':
			return '+'
		case '_':
			return '/'
		}
		return r
	}, run)
	if len(norm)%4 == 1 {
		norm = norm[:len(norm)-1]
	}
	dec, err := base64.RawStdEncoding.DecodeString(string(norm))
	if err != nil {
		return nil
	}
	return dec
}
