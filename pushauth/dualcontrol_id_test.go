package pushauth

import (
	"strings"
	"testing"
)

// TestAdminRequestIDsReadAsArguments: an operator pastes a request id into
// `caddy onepush requests approve ID`; one starting with "-" was read as a
// flag (a base64url id does one time in 64). 2000 ids: with the old
// alphabet at least one would start so, all but certainly.
func TestAdminRequestIDsReadAsArguments(t *testing.T) {
	for range 2000 {
		id, err := adminRequestID()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(id, "-") || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" || len(id) != 26 {
			t.Fatalf("request id %q: want 26 characters of lower-case base32", id)
		}
	}
}
