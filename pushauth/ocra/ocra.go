// Package ocra computes OATH challenge-response codes (RFC 6287, OCRA) and
// builds onepush's transaction question, so that the gateway and an offline
// phone compute the same code over the same challenge, payee and amount.
//
// It is the RFC's algorithm and nothing else: no Caddy, no HTTP, no store.
// Written here because no well-kept Go module implements it (pquerna/otp,
// which onepush uses for TOTP, has HOTP and TOTP only).
package ocra

import (
	"crypto"
	"crypto/hmac"
	_ "crypto/sha1" // registered for crypto.SHA1.New
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Suite is a parsed OCRA suite string (RFC 6287 §6):
//
//	OCRA-1:HOTP-SHA1|SHA256|SHA512-t:[C-]QFxx[-PSHA1|PSHA256|PSHA512][-Snnn][-Txx]
type Suite struct {
	raw string
	// Hash is the HMAC's hash function.
	Hash crypto.Hash
	// Digits is the length of the response (4 to 10).
	Digits int
	// Counter says the data input carries an 8-byte counter C.
	Counter bool
	// QuestionFormat is 'A' (alphanumeric), 'N' (numeric) or 'H'
	// (hexadecimal), and QuestionLength the xx of QFxx (4 to 64).
	QuestionFormat byte
	QuestionLength int
	// Password is the hash of the PIN the data input carries (0: none).
	Password crypto.Hash
	// SessionLength is the length in bytes of the session information S
	// (0: none).
	SessionLength int
	// TimeStep is the step of the timestamp T (0: none).
	TimeStep time.Duration
}

// String returns the suite string exactly as parsed: it is the first part
// of the data input the HMAC covers.
func (s *Suite) String() string { return s.raw }

var hashes = map[string]crypto.Hash{"SHA1": crypto.SHA1, "SHA256": crypto.SHA256, "SHA512": crypto.SHA512}

// ParseSuite parses an OCRA suite string. Everything RFC 6287 defines is
// accepted except a truncation length of 0 (the whole HMAC), which no one
// can type, and a time step of 0 hours, which has no steps.
func ParseSuite(suite string) (*Suite, error) {
	bad := func(format string, a ...any) (*Suite, error) {
		return nil, fmt.Errorf("ocra: suite %q: %s", suite, fmt.Sprintf(format, a...))
	}
	parts := strings.Split(suite, ":")
	if len(parts) != 3 {
		return bad("want three parts, OCRA-1:HOTP-H-t:DataInput")
	}
	if parts[0] != "OCRA-1" {
		return bad("version %q: only OCRA-1 is defined", parts[0])
	}
	s := &Suite{raw: suite}
	cf := strings.Split(parts[1], "-")
	if len(cf) != 3 || cf[0] != "HOTP" {
		return bad("crypto function %q: want HOTP-SHA1|SHA256|SHA512-t", parts[1])
	}
	var ok bool
	if s.Hash, ok = hashes[cf[1]]; !ok {
		return bad("hash %q: want SHA1, SHA256 or SHA512", cf[1])
	}
	d, err := strconv.Atoi(cf[2])
	if err != nil || d < 4 || d > 10 || cf[2] != strconv.Itoa(d) {
		return bad("truncation %q: want 4 to 10 digits", cf[2])
	}
	s.Digits = d

	// The data input's members come in the RFC's order, each at most once;
	// Q is the only one required.
	in := strings.Split(parts[2], "-")
	i := 0
	if i < len(in) && in[i] == "C" {
		s.Counter = true
		i++
	}
	if i == len(in) || len(in[i]) != 4 || in[i][0] != 'Q' {
		return bad("data input %q: want a question QAxx, QNxx or QHxx after the optional C", parts[2])
	}
	q := in[i]
	if f := q[1]; f == 'A' || f == 'N' || f == 'H' {
		s.QuestionFormat = f
	} else {
		return bad("question %q: format must be A, N or H", q)
	}
	if s.QuestionLength, err = strconv.Atoi(q[2:]); err != nil || s.QuestionLength < 4 || s.QuestionLength > 64 {
		return bad("question %q: length must be two digits, 04 to 64", q)
	}
	i++
	if i < len(in) && strings.HasPrefix(in[i], "P") {
		if s.Password, ok = hashes[in[i][1:]]; !ok {
			return bad("password %q: want PSHA1, PSHA256 or PSHA512", in[i])
		}
		i++
	}
	if i < len(in) && strings.HasPrefix(in[i], "S") {
		n, err := strconv.Atoi(in[i][1:])
		if err != nil || len(in[i]) != 4 || n < 1 || n > 512 {
			return bad("session %q: want Snnn, 001 to 512 bytes", in[i])
		}
		s.SessionLength = n
		i++
	}
	if i < len(in) && strings.HasPrefix(in[i], "T") && len(in[i]) >= 3 {
		t := in[i]
		n, err := strconv.Atoi(t[1 : len(t)-1])
		unit := map[byte]struct {
			d   time.Duration
			max int
		}{'S': {time.Second, 59}, 'M': {time.Minute, 59}, 'H': {time.Hour, 48}}[t[len(t)-1]]
		if err != nil || unit.d == 0 || n < 1 || n > unit.max || t[1:len(t)-1] != strconv.Itoa(n) {
			return bad("timestamp %q: want T1S-T59S, T1M-T59M or T1H-T48H", t)
		}
		s.TimeStep = time.Duration(n) * unit.d
		i++
	}
	if i != len(in) {
		return bad("data input %q: %q is not C, Q, P, S or T in that order", parts[2], in[i])
	}
	return s, nil
}

// Input is what the data input carries besides the suite. Members the
// suite does not name must be left zero.
type Input struct {
	Counter uint64
	// Question as the RFC writes it: decimal digits (QN), letters and
	// digits (QA) or hex digits (QH).
	Question string
	// PasswordHash is the hash of the PIN by the suite's P algorithm.
	PasswordHash []byte
	// Session is exactly the suite's Snnn bytes.
	Session []byte
	// Time is turned into whole time steps since the Unix epoch.
	Time time.Time
}

// maxQuestion is the question's fixed size in the data input.
const maxQuestion = 128

// Compute returns the suite's response to in under key: HMAC over the
// suite, a zero byte, C, Q, P, S and T, dynamically truncated as in HOTP.
func (s *Suite) Compute(key []byte, in Input) (string, error) {
	bad := func(format string, a ...any) (string, error) {
		return "", fmt.Errorf("ocra: %s: %s", s.raw, fmt.Sprintf(format, a...))
	}
	if len(key) == 0 {
		return bad("empty key")
	}
	msg := make([]byte, 0, len(s.raw)+1+8+maxQuestion+64+s.SessionLength+8)
	msg = append(append(msg, s.raw...), 0)
	if s.Counter {
		msg = binary.BigEndian.AppendUint64(msg, in.Counter)
	} else if in.Counter != 0 {
		return bad("a counter is given but the suite has no C")
	}
	q, err := s.question(in.Question)
	if err != nil {
		return bad("%v", err)
	}
	msg = append(msg, q...)
	switch {
	case s.Password != 0 && len(in.PasswordHash) != s.Password.Size():
		return bad("password hash is %d bytes, want %d", len(in.PasswordHash), s.Password.Size())
	case s.Password == 0 && len(in.PasswordHash) > 0:
		return bad("a password hash is given but the suite has no P")
	}
	msg = append(msg, in.PasswordHash...)
	switch {
	case s.SessionLength != 0 && len(in.Session) != s.SessionLength:
		return bad("session information is %d bytes, want exactly %d", len(in.Session), s.SessionLength)
	case s.SessionLength == 0 && len(in.Session) > 0:
		return bad("session information is given but the suite has no S")
	}
	msg = append(msg, in.Session...)
	if s.TimeStep != 0 {
		if in.Time.IsZero() || in.Time.Unix() < 0 {
			return bad("the suite has T but no time (or one before 1970) is given")
		}
		msg = binary.BigEndian.AppendUint64(msg, uint64(in.Time.Unix())/uint64(s.TimeStep/time.Second))
	} else if !in.Time.IsZero() {
		return bad("a time is given but the suite has no T")
	}

	mac := hmac.New(s.Hash.New, key)
	mac.Write(msg)
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint64(1)
	for range s.Digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", s.Digits, uint64(bin)%mod), nil
}

// question is Q as the data input carries it: 128 bytes, the question's
// bytes first and zeros after. As in the RFC's reference code (whose
// output the test vectors are), a numeric question is the hex digits of
// its value and a hex question its digits, padded with "0" on the right
// when odd in number; an alphanumeric question is its ASCII bytes.
func (s *Suite) question(q string) ([]byte, error) {
	if q == "" {
		return nil, fmt.Errorf("empty question")
	}
	var hexDigits string
	switch s.QuestionFormat {
	case 'N':
		for i := 0; i < len(q); i++ {
			if q[i] < '0' || q[i] > '9' {
				return nil, fmt.Errorf("numeric question %q has a character that is not a decimal digit", q)
			}
		}
		n, _ := new(big.Int).SetString(q, 10)
		hexDigits = n.Text(16)
	case 'H':
		hexDigits = q
	case 'A':
		for i := 0; i < len(q); i++ {
			if c := q[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
				return nil, fmt.Errorf("alphanumeric question %q has a character that is not a letter or digit", q)
			}
		}
		hexDigits = hex.EncodeToString([]byte(q))
	}
	if len(hexDigits)%2 == 1 {
		hexDigits += "0"
	}
	b, err := hex.DecodeString(hexDigits)
	if err != nil {
		return nil, fmt.Errorf("hex question %q is not hex digits", q)
	}
	if len(b) > maxQuestion {
		return nil, fmt.Errorf("question %q is longer than %d bytes", q, maxQuestion)
	}
	out := make([]byte, maxQuestion)
	copy(out, b)
	return out, nil
}
