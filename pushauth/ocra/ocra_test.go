package ocra

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfcKey is the RFC's "Standard nnByte" key: the digits 1234567890
// repeated to n bytes.
func rfcKey(n int) []byte {
	return []byte(strings.Repeat("1234567890", 7)[:n])
}

// TestRFC6287AppendixC computes every test vector of RFC 6287 Appendix C
// (testdata/rfc6287-appendix-c.tsv) and wants the RFC's response.
func TestRFC6287AppendixC(t *testing.T) {
	f, err := os.Open("testdata/rfc6287-appendix-c.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pin := sha1.Sum([]byte("1234"))
	if got := hex.EncodeToString(pin[:]); got != "7110eda4d09e062aa5e4a390b0a572ac0d2c0220" {
		t.Fatalf("SHA-1 of the PIN 1234 = %s, not the RFC's", got)
	}
	n := 0
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if sc.Text() == "" || strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		col := strings.Split(sc.Text(), "\t")
		if len(col) != 7 {
			t.Fatalf("line %d: %d columns, want 7", line, len(col))
		}
		suite, key, c, q, p, ts, want := col[0], col[1], col[2], col[3], col[4], col[5], col[6]
		s, err := ParseSuite(suite)
		if err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		keyLen, _ := strconv.Atoi(key)
		in := Input{Question: q}
		if c != "-" {
			if in.Counter, err = strconv.ParseUint(c, 10, 64); err != nil {
				t.Fatalf("line %d: counter %q: %v", line, c, err)
			}
		}
		if p == "1234" {
			in.PasswordHash = pin[:]
		}
		if ts != "-" {
			steps, err := strconv.ParseUint(ts, 16, 64)
			if err != nil {
				t.Fatalf("line %d: timestamp %q: %v", line, ts, err)
			}
			in.Time = time.Unix(int64(steps)*int64(s.TimeStep/time.Second), 0)
		}
		got, err := s.Compute(rfcKey(keyLen), in)
		if err != nil {
			t.Fatalf("line %d: %s C=%s Q=%s: %v", line, suite, c, q, err)
		}
		if got != want {
			t.Errorf("line %d: %s C=%s Q=%s P=%s T=%s: response %s, RFC says %s", line, suite, c, q, p, ts, got, want)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 70 {
		t.Fatalf("%d vectors read, Appendix C has 70", n)
	}
}

// TestTimeIsInWholeSteps: the RFC's date, 2008-03-25 12:06:30 UTC, and
// any time in the same minute give T1M's vector; the next minute does not.
func TestTimeIsInWholeSteps(t *testing.T) {
	s, err := ParseSuite("OCRA-1:HOTP-SHA512-8:QN08-T1M")
	if err != nil {
		t.Fatal(err)
	}
	at := func(tm time.Time) string {
		r, err := s.Compute(rfcKey(64), Input{Question: "00000000", Time: tm})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rfcDate := time.Date(2008, time.March, 25, 12, 6, 30, 0, time.UTC)
	if got := at(rfcDate); got != "95209754" {
		t.Fatalf("at the RFC's date: %s, want 95209754", got)
	}
	if got := at(rfcDate.Add(29 * time.Second)); got != "95209754" {
		t.Fatalf("later in the same minute: %s, want 95209754", got)
	}
	if got := at(rfcDate.Add(30 * time.Second)); got == "95209754" {
		t.Fatal("the next minute gives the same response")
	}
}

func TestParseSuite(t *testing.T) {
	good := []struct {
		suite string
		want  Suite
	}{
		{"OCRA-1:HOTP-SHA1-6:QN08", Suite{Digits: 6, QuestionFormat: 'N', QuestionLength: 8}},
		{"OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1", Suite{Digits: 8, Counter: true, QuestionFormat: 'N', QuestionLength: 8}},
		{"OCRA-1:HOTP-SHA512-8:QA10-T1M", Suite{Digits: 8, QuestionFormat: 'A', QuestionLength: 10, TimeStep: time.Minute}},
		{"OCRA-1:HOTP-SHA256-8:QH64", Suite{Digits: 8, QuestionFormat: 'H', QuestionLength: 64}},
		{"OCRA-1:HOTP-SHA1-10:C-QH40-PSHA512-S064-T48H", Suite{Digits: 10, Counter: true, QuestionFormat: 'H', QuestionLength: 40, SessionLength: 64, TimeStep: 48 * time.Hour}},
		{"OCRA-1:HOTP-SHA1-4:QA04-S512-T59S", Suite{Digits: 4, QuestionFormat: 'A', QuestionLength: 4, SessionLength: 512, TimeStep: 59 * time.Second}},
	}
	for _, tc := range good {
		s, err := ParseSuite(tc.suite)
		if err != nil {
			t.Errorf("%s: %v", tc.suite, err)
			continue
		}
		if s.String() != tc.suite || s.Digits != tc.want.Digits || s.Counter != tc.want.Counter ||
			s.QuestionFormat != tc.want.QuestionFormat || s.QuestionLength != tc.want.QuestionLength ||
			s.SessionLength != tc.want.SessionLength || s.TimeStep != tc.want.TimeStep {
			t.Errorf("%s: parsed %+v, want %+v", tc.suite, *s, tc.want)
		}
	}
	bad := []struct{ suite, want string }{
		{"", "three parts"},
		{"OCRA-2:HOTP-SHA1-6:QN08", "only OCRA-1"},
		{"OCRA-1:TOTP-SHA1-6:QN08", "crypto function"},
		{"OCRA-1:HOTP-MD5-6:QN08", "hash \"MD5\""},
		{"OCRA-1:HOTP-SHA1-0:QN08", "truncation \"0\""}, // the whole HMAC: untypeable
		{"OCRA-1:HOTP-SHA1-3:QN08", "truncation"},
		{"OCRA-1:HOTP-SHA1-11:QN08", "truncation"},
		{"OCRA-1:HOTP-SHA1-06:QN08", "truncation"},
		{"OCRA-1:HOTP-SHA1-6:C", "want a question"},
		{"OCRA-1:HOTP-SHA1-6:QX08", "format must be A, N or H"},
		{"OCRA-1:HOTP-SHA1-6:QN03", "04 to 64"},
		{"OCRA-1:HOTP-SHA1-6:QN65", "04 to 64"},
		{"OCRA-1:HOTP-SHA1-6:QN08-PMD5", "password"},
		{"OCRA-1:HOTP-SHA1-6:QN08-S64", "session"},
		{"OCRA-1:HOTP-SHA1-6:QN08-S000", "session"},
		{"OCRA-1:HOTP-SHA1-6:QN08-T0H", "timestamp"},
		{"OCRA-1:HOTP-SHA1-6:QN08-T60M", "timestamp"},
		{"OCRA-1:HOTP-SHA1-6:QN08-T49H", "timestamp"},
		{"OCRA-1:HOTP-SHA1-6:QN08-T1D", "timestamp"},
		{"OCRA-1:HOTP-SHA1-6:QN08-T1M-PSHA1", "in that order"},
		{"OCRA-1:HOTP-SHA1-6:QN08-C", "in that order"},
		{"OCRA-1:HOTP-SHA1-6:QN08-QN08", "in that order"},
	}
	for _, tc := range bad {
		_, err := ParseSuite(tc.suite)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), strconv.Quote(tc.suite)) {
			t.Errorf("ParseSuite(%q) = %v, want an error naming the suite and %q", tc.suite, err, tc.want)
		}
	}
}

// TestComputeRefusesInputTheSuiteDoesNotName: an input the suite does not
// cover would not be in the HMAC, so a caller passing one would believe
// the response binds it.
func TestComputeRefusesInputTheSuiteDoesNotName(t *testing.T) {
	plain, _ := ParseSuite("OCRA-1:HOTP-SHA1-6:QN08")
	full, _ := ParseSuite("OCRA-1:HOTP-SHA1-6:C-QN08-PSHA1-S004-T1M")
	pin := sha1.Sum([]byte("1234"))
	tests := []struct {
		name string
		s    *Suite
		key  []byte
		in   Input
		want string
	}{
		{"counter without C", plain, rfcKey(20), Input{Question: "1", Counter: 1}, "no C"},
		{"password without P", plain, rfcKey(20), Input{Question: "1", PasswordHash: pin[:]}, "no P"},
		{"session without S", plain, rfcKey(20), Input{Question: "1", Session: []byte("abcd")}, "no S"},
		{"time without T", plain, rfcKey(20), Input{Question: "1", Time: time.Now()}, "no T"},
		{"no time with T", full, rfcKey(20), Input{Question: "1", PasswordHash: pin[:], Session: []byte("abcd")}, "no time"},
		{"short session", full, rfcKey(20), Input{Question: "1", PasswordHash: pin[:], Session: []byte("abc"), Time: time.Now()}, "want exactly 4"},
		{"PIN not hashed", full, rfcKey(20), Input{Question: "1", PasswordHash: []byte("1234"), Session: []byte("abcd"), Time: time.Now()}, "want 20"},
		{"empty key", plain, nil, Input{Question: "1"}, "empty key"},
		{"empty question", plain, rfcKey(20), Input{}, "empty question"},
		{"letters in a numeric question", plain, rfcKey(20), Input{Question: "12a4"}, "not a decimal digit"},
		{"question over 128 bytes", plain, rfcKey(20), Input{Question: "9" + strings.Repeat("9", 310)}, "longer than 128 bytes"},
	}
	for _, tc := range tests {
		if _, err := tc.s.Compute(tc.key, tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Compute = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
