package pushauth

import (
	"context"
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestEscapeUntrusted(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (X11; Linux x86_64)"},
		{"UA \u202eevil\u202c", `UA \u202Eevil\u202C`},
		{"line\nbreak\ttab", `line\u000Abreak\u0009tab`},
		{"caf\u00e9 \u5c71\u7530", `caf\u00E9 \u5C71\u7530`},
		{"bad \xff byte", `bad \xFF byte`},
	} {
		if got := escapeUntrusted(tt.in, 256); got != tt.want {
			t.Errorf("escapeUntrusted(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := escapeUntrusted(string(make([]rune, 1000)), 256)
	if len(long) > 256 {
		t.Errorf("escaped length %d over the bound", len(long))
	}
}

func TestStripSetCookies(t *testing.T) {
	h := http.Header{}
	h.Add("Set-Cookie", "BANKSESSION=abc; Path=/; HttpOnly")
	h.Add("Set-Cookie", "lang=ja; Path=/")
	h.Add("Set-Cookie", "AUTH=x")
	h.Add("Set-Cookie", "BANKSESSION=\x01bad") // unparsable, still names the cookie
	stripSetCookies(h, "BANKSESSION", "AUTH")
	if got := h.Values("Set-Cookie"); !reflect.DeepEqual(got, []string{"lang=ja; Path=/"}) {
		t.Fatalf("after stripping: %q", got)
	}
	if setCookieValue(http.Header{"Set-Cookie": {"S=v; Max-Age=0", "S=; Path=/"}}, "S") != "" {
		t.Error("a cleared cookie counted as a session")
	}
	if setCookieValue(http.Header{"Set-Cookie": {"S=v1", "T=x"}}, "S") != "v1" {
		t.Error("set session not found")
	}
}

// TestSessionLocksSerialiseAndStayBounded: one holder per session at a
// time, waiters give up when their request ends, and no entry outlives its
// holders and waiters.
func TestSessionLocksSerialiseAndStayBounded(t *testing.T) {
	k := keyedLocks{m: map[string]*keyedLock{}}
	unlock, ok := k.lock(context.Background(), "s1")
	if !ok {
		t.Fatal("first lock refused")
	}
	other, ok := k.lock(context.Background(), "s2")
	if !ok {
		t.Fatal("another session's lock waited")
	}
	other()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := k.lock(ctx, "s1"); ok {
		t.Fatal("second holder of s1 while the first holds it")
	}
	got := make(chan struct{})
	go func() {
		u, ok := k.lock(context.Background(), "s1")
		if ok {
			u()
		}
		close(got)
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-got:
		t.Fatal("waiter got s1 before it was released")
	default:
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter never got s1")
	}
	k.mu.Lock()
	n := len(k.m)
	k.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d lock entries left with no holder", n)
	}
	if u, ok := k.lock(context.Background(), ""); !ok {
		t.Fatal("no session refused")
	} else {
		u()
	}
}
