package policy

import "testing"

// TestPasskeyMethod: what a security team writes to ask for a passkey,
// what lint then reports, and what is refused.
func TestPasskeyMethod(t *testing.T) {
	tests := []struct {
		name      string
		extra     string
		wantErr   string
		method    Method
		assurance Assurance
	}{
		{"push by default", "    mode: interstitial\n", "", MethodPush, AssuranceCodeTransfer},
		{"passkey", "    mode: interstitial\n    method: passkey\n", "", MethodPasskey, AssurancePhishingResistant},
		{"passkey or push", "    mode: interstitial\n    method: passkey_or_push\n", "", MethodPasskeyOrPush,
			AssurancePhishingResistantOrPush + AssuranceCodeTransfer},
		{"a passkey needs a page", "    method: passkey\n", "test.yaml:8: rules[0].method: passkey needs mode: interstitial", "", ""},
		{"unknown method", "    mode: interstitial\n    method: sms\n", `rules[0].method: must be push, passkey or passkey_or_push, not "sms"`, "", ""},
		{"an instrument is for transactions", "    mode: interstitial\n    method: passkey\n    instrument: {name: Card}\n",
			"rules[0].instrument: only transaction rules", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := parseOrRefused(t, stepUpBase+tc.extra, tc.wantErr)
			if p == nil {
				return
			}
			r := p.Rules[0]
			if r.Method != tc.method || r.Assurance() != tc.assurance {
				t.Fatalf("method %q assurance %q, want %q %q", r.Method, r.Assurance(), tc.method, tc.assurance)
			}
			if r.UsesPasskey() != (tc.method != MethodPush) {
				t.Fatalf("UsesPasskey = %v for %q", r.UsesPasskey(), r.Method)
			}
			warned := false
			for _, w := range p.Warnings() {
				warned = warned || w.Field == "rules[0].method"
			}
			if warned != (tc.method == MethodPasskey) {
				t.Fatalf("method %q on a login rule: warned %v, want %v", tc.method, warned, tc.method == MethodPasskey)
			}
		})
	}
}
