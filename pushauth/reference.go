package pushauth

import (
	"crypto/sha256"
	"strings"
)

// referenceAlphabet is digits and capital letters that cannot be mistaken
// for each other when read out or typed: no 0/O, 1/I/L, nor U (V).
const referenceAlphabet = "23456789ABCDEFGHJKMNPQRSTVWXYZ"

// Reference is the reference number a customer reads out to the call
// centre for challenge id: twelve characters of referenceAlphabet in
// groups of four (7KQ2-M9XD-4HPR), derived from the id, which stays as it
// is everywhere else. Audit events carry both.
func Reference(id string) string {
	if id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("onepush-reference\x00" + id))
	var b strings.Builder
	for i := 0; i < 12; i++ {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		// Two bytes per character: the bias of 65536 mod 30 is negligible
		// for a number people read out.
		v := int(sum[2*i])<<8 | int(sum[2*i+1])
		b.WriteByte(referenceAlphabet[v%len(referenceAlphabet)])
	}
	return b.String()
}
