package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestPasskeyConfig: what a site's passkeys block accepts and refuses,
// with the value at fault in the message.
func TestPasskeyConfig(t *testing.T) {
	tests := []struct {
		input   string
		wantErr string // "" accepted
		path    string
	}{
		{"onepush {\n policy p.yaml\n passkeys {\n rp_id bank.example.com\n origins https://bank.example.com https://www.bank.example.com\n }\n}", "", "/onepush/passkeys"},
		{"onepush {\n policy p.yaml\n passkeys {\n rp_id bank.localhost\n origins http://bank.localhost:8080\n path off\n }\n}", "", ""},
		{"onepush {\n policy p.yaml\n passkeys {\n origins https://bank.example.com\n }\n}", "rp_id is required", ""},
		{"onepush {\n policy p.yaml\n passkeys {\n rp_id 10.0.0.5\n origins https://10.0.0.5\n }\n}", `rp_id "10.0.0.5": an IP address cannot be a WebAuthn RP ID`, ""},
		{"onepush {\n policy p.yaml\n passkeys {\n rp_id bank.example.com\n }\n}", "origins are required", ""},
		{"onepush {\n policy p.yaml\n passkeys {\n rp_id bank.example.com\n origins https://bank-example.com\n }\n}", `origin "https://bank-example.com": its host is not bank.example.com or under it`, ""},
		{"onepush {\n policy p.yaml\n passkeys {\n rp_id bank.example.com\n origins https://bank.example.com/login\n }\n}", `must be scheme://host[:port]`, ""},
		{"onepush {\n policy p.yaml\n passkeys {\n rp_id bank.example.com\n origins https://bank.example.com\n path /onepush/passkeys/\n }\n}", `must start with / and not end with one`, ""},
		{"onepush {\n policy p.yaml\n passkeys {\n rp_id bank.example.com\n origins https://bank.example.com\n attestation direct\n }\n}", `passkeys: unknown option "attestation"`, ""},
	}
	for _, tc := range tests {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil && h.Passkeys == nil {
			t.Fatalf("%q: no passkeys parsed", tc.input)
		}
		if err == nil {
			p, gerr := h.Passkeys.gatePasskeys()
			if err = gerr; err == nil && (p.Path != tc.path || p.RP.ID != h.Passkeys.RPID || len(p.RP.Origins) != len(h.Passkeys.Origins)) {
				t.Errorf("%q: got %+v", tc.input, p)
			}
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.input, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want %q", tc.input, err, tc.wantErr)
		}
	}
}
