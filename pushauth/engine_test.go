package pushauth

import "testing"

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
