package actcode

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestActivationCodeFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 11 || c[5] != '-' || Normal(c) != strings.ReplaceAll(c, "-", "") {
			t.Fatalf("code %q: want XXXXX-XXXXX of the alphabet", c)
		}
		if seen[c] {
			t.Fatalf("code %q issued twice in 200", c)
		}
		seen[c] = true
	}
	// 10 symbols of 32: 50 bits, above rev 4's 40 with the user's identifiers.
	if len(Alphabet) != 32 || Len*5 < 40 {
		t.Fatal("activation codes carry under 40 bits")
	}
	tests := []struct{ typed, want string }{
		{"ABCDE-FGHJK", "ABCDEFGHJK"},
		{" abcde fghjk ", "ABCDEFGHJK"},
		{"0O1IL-23456", "0011123456"}, // O reads as 0, I and L as 1
		{"ABCDE-FGHJ", ""},            // too short
		{"ABCDE-FGHJKM", ""},          // too long
		{"ABCDE-FGHJU", ""},           // U is not in the alphabet
		{"ＡBCDE-FGHJK", ""},           // full-width letters are not folded
		{"", ""},
	}
	for _, tc := range tests {
		if got := Normal(tc.typed); got != tc.want {
			t.Errorf("Normal(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
	salt := []byte("0123456789abcdef")
	h := Hash("1001/alice", "ABCDEFGHJK", salt)
	for _, other := range [][3]string{{"1001/bob", "ABCDEFGHJK", ""}, {"1001/alice", "ABCDEFGHJM", ""}, {"1001/alice", "ABCDEFGHJK", "x"}} {
		if string(Hash(other[0], other[1], append(salt, other[2]...))) == string(h) {
			t.Errorf("hash of %v equals alice's", other)
		}
	}
}

// TestActivationHashesAreBoundedByCores: however many enrolment posts with
// an activation code arrive at once, at most GOMAXPROCS Argon2id hashes
// (19 MiB each) are computed at a time.
func TestActivationHashesAreBoundedByCores(t *testing.T) {
	var mu sync.Mutex
	running, peak := 0, 0
	real := argonKey
	defer func() { argonKey = real }()
	argonKey = func(_, _ []byte, _, _ uint32, _ uint8, keyLen uint32) []byte {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		time.Sleep(20 * time.Millisecond)
		return make([]byte, keyLen)
	}
	var wg sync.WaitGroup
	for i := range 4 * cap(argonSlots) {
		wg.Go(func() { Hash("1001/alice", fmt.Sprint(i), make([]byte, 16)) })
	}
	wg.Wait()
	if peak > cap(argonSlots) || cap(argonSlots) != max(1, runtime.GOMAXPROCS(0)) {
		t.Fatalf("%d hashes at once, want at most %d (GOMAXPROCS)", peak, runtime.GOMAXPROCS(0))
	}
}
