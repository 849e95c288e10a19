package policy

import (
	"strings"
	"testing"
)

// TestAssuranceOfEachRule: what lint tells a security team about each
// rule, and which code_digits and number_matching settings it refuses,
// flags or accepts.
func TestAssuranceOfEachRule(t *testing.T) {
	tests := []struct {
		name       string
		extra      string // appended to stepUpBase's login rule (line 8 on)
		wantErr    string // "" parses
		assurance  Assurance
		digits     int
		wantLint   string // a warning's "field: message" part, "" none
		lintRefuse bool   // the warning is an Error
	}{
		{"a held login is approve-only", "", "", AssuranceApproveOnly, 0, "", false},
		{"a waiting page transfers 6 digits", "    mode: interstitial\n", "", AssuranceCodeTransfer, 6, "", false},
		{"8 digits", "    mode: interstitial\n    code_digits: 8\n", "", AssuranceCodeTransfer, 8, "", false},
		{"4 digits: accepted, below the standard", "    mode: interstitial\n    code_digits: 4\n", "", AssuranceShortCode, 4,
			`line 9: rules[0].code_digits: rule "login" transfers a 4-digit code: SP 800-63B rev 4 §3.1.3 asks for at least 6`, false},
		{"3 digits", "    mode: interstitial\n    code_digits: 3\n", "test.yaml:9: rules[0].code_digits: must be 4 to 10, not 3", "", 0, "", false},
		{"11 digits", "    mode: interstitial\n    code_digits: 11\n", "rules[0].code_digits: must be 4 to 10, not 11", "", 0, "", false},
		{"not a number", "    mode: interstitial\n    code_digits: six\n", `rules[0].code_digits: must be a whole number, not "six"`, "", 0, "", false},
		{"a code on a held request", "    code_digits: 6\n", "test.yaml:8: rules[0].code_digits: needs mode: interstitial", "", 0, "", false},
		{"number_matching: refused", "    mode: interstitial\n    number_matching: true\n",
			"test.yaml:9: rules[0].number_matching: replaced by code transfer: remove it; the waiting page of an interstitial rule shows a 6-digit code", "", 0, "", false},
		{"number_matching on a held rule", "    number_matching: true\n",
			"test.yaml:8: rules[0].number_matching: replaced by code transfer", "", 0, "", false},
		{"number_matching beside code_digits", "    mode: interstitial\n    number_matching: true\n    code_digits: 6\n",
			"test.yaml:9: rules[0].number_matching: replaced by code transfer", "", 0, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := parseOrRefused(t, stepUpBase+tc.extra, tc.wantErr)
			if p == nil {
				return
			}
			r := p.Rules[0]
			if r.Assurance() != tc.assurance || r.CodeDigits != tc.digits {
				t.Fatalf("assurance %q with %d digits, want %q with %d", r.Assurance(), r.CodeDigits, tc.assurance, tc.digits)
			}
			ws := p.Warnings()
			if tc.wantLint == "" {
				for _, w := range ws {
					if strings.Contains(w.Field, "code_digits") || strings.Contains(w.Field, "number_matching") {
						t.Fatalf("unexpected warning %s", w)
					}
				}
				return
			}
			for _, w := range ws {
				if strings.HasPrefix(w.String(), tc.wantLint) {
					if w.Error != tc.lintRefuse {
						t.Fatalf("%s: Error = %v, want %v", w, w.Error, tc.lintRefuse)
					}
					return
				}
			}
			t.Fatalf("warnings %v, want one starting %q", ws, tc.wantLint)
		})
	}
}

// TestAssuranceByKindAndDefaults: logout rules approve nothing; a policy
// whose default mode is interstitial transfers codes for login and
// transaction rules alike.
func TestAssuranceByKindAndDefaults(t *testing.T) {
	p, err := Parse("test.yaml", []byte(`version: 1
session: {cookie: S}
defaults: {mode: interstitial}
rules:
  - name: transfer
    kind: transaction
    match: {path: {exact: /transfer}, fields: [amount]}
    user: {session: true}
  - name: logout
    kind: logout
    match: {path: {exact: /logout}}
    user: {session: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if a := p.Rules[0].Assurance(); a != AssuranceCodeTransfer {
		t.Errorf("transfer: %q", a)
	}
	if a, n := p.Rules[1].Assurance(), p.Rules[1].CodeDigits; a != "" || n != 0 {
		t.Errorf("logout: %q, %d digits", a, n)
	}
}
