package redistest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// The scanner must find a secret however it is wrapped, or the secrets
// tests that rely on it prove nothing.
func TestFindSecretsSeesThroughEncodings(t *testing.T) {
	const secret = "alice-txn-1"
	body := "payee_account=5550001&amount=1200&txn_password=" + secret
	held, _ := json.Marshal(map[string]any{"method": "POST", "body": []byte(body)}) // base64 inside JSON
	outer := base64.URLEncoding.EncodeToString(held)                                // and that in base64 again
	escaped := strings.ReplaceAll(string(held), "/", `\/`)                          // as cjson writes it
	for _, tc := range []struct {
		name string
		blob string
	}{
		{"clear", "xx" + body + "yy"},
		{"base64", base64.StdEncoding.EncodeToString([]byte(secret))},
		{"base64 at offset 1", base64.StdEncoding.EncodeToString([]byte("a" + body))},
		{"base64 at offset 2", base64.RawStdEncoding.EncodeToString([]byte("ab" + body))},
		{"base64 at offset 3, URL alphabet", base64.RawURLEncoding.EncodeToString([]byte("abc" + body))},
		{"base64 in JSON", `{"held":` + string(held) + `}`},
		{"base64 in JSON in base64", "v=" + outer + ";"},
		{"JSON-escaped slashes", escaped},
	} {
		if got := FindSecrets([]byte(tc.blob), "not-there", secret); len(got) == 0 {
			t.Errorf("%s: %q not found in %q", tc.name, secret, tc.blob)
		} else if !strings.Contains(got[0], "secret 1") {
			t.Errorf("%s: reported %v, want secret 1", tc.name, got)
		}
	}
	if got := FindSecrets([]byte(base64.StdEncoding.EncodeToString([]byte("nothing secret here at all"))), secret); len(got) != 0 {
		t.Errorf("found %v in a blob without the secret", got)
	}
}
