package enrol

import (
	"strings"
	"testing"
)

func TestPlausibleCredID(t *testing.T) {
	for id, want := range map[string]bool{
		"OPABCDEFGHIJKLMNOP":             true,
		"OP234567":                       true,
		"":                               false,
		"OP<SCRIPT>":                     false,
		"OPÄ":                            false,
		"OP ABC":                         false,
		strings.Repeat("A", 64):          true,
		strings.Repeat("A", 65):          false,
		"OPABC\r\nX-INJECTED: 1":         false,
		normalCredID("  opabcdefgh234 "): true,
	} {
		if got := plausibleCredID(id); got != want {
			t.Errorf("plausibleCredID(%q) = %v, want %v", id, got, want)
		}
	}
}
