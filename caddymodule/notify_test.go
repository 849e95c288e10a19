package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestNotifyCaddyfile(t *testing.T) {
	const secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	tests := []struct {
		name, input string
		want        *NotifyConfig
		ttl         time.Duration
		wantErr     string
	}{
		{"complete", `onepush {
			notify {
				url https://notify.bank.internal/onepush
				secret {env.SECRET}
				repudiation "Call us."
				timeout 5s
			}
			unbound_credential_ttl 10m
		}`, &NotifyConfig{URL: "https://notify.bank.internal/onepush", Secret: "{env.SECRET}", Repudiation: "Call us.", Timeout: caddy.Duration(5 * time.Second)}, 10 * time.Minute, ""},
		{"no secret", "onepush {\n notify {\n url https://x/\n }\n}", nil, 0, "notify: url and secret are required"},
		{"unknown option", "onepush {\n notify {\n url https://x/\n secret s\n retries 3\n }\n}", nil, 0, `notify: unknown option "retries"`},
		{"bad timeout", "onepush {\n notify {\n url https://x/\n secret s\n timeout soon\n }\n}", nil, 0, `timeout: "soon" is not a positive duration`},
		{"bad ttl", "onepush {\n unbound_credential_ttl -1m\n}", nil, 0, `unbound_credential_ttl: "-1m" is not a positive duration`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := new(App)
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *a.Notify != *tc.want || time.Duration(a.UnboundCredentialTTL) != tc.ttl {
				t.Fatalf("got %+v ttl %s", *a.Notify, time.Duration(a.UnboundCredentialTTL))
			}
		})
	}
	// Provisioning checks the secret's form after placeholders.
	t.Setenv("SECRET", "not-a-whsec")
	if _, err := (&NotifyConfig{URL: "https://x/", Secret: "{env.SECRET}"}).config(caddy.NewReplacer()); err == nil || !strings.Contains(err.Error(), "whsec_") {
		t.Fatalf("a malformed secret: %v", err)
	}
	t.Setenv("SECRET", secret)
	if c, err := (&NotifyConfig{URL: "https://x/", Secret: "{env.SECRET}"}).config(caddy.NewReplacer()); err != nil || c.Secret != secret {
		t.Fatalf("a good secret: %+v %v", c, err)
	}
}
