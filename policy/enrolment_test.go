package policy

import (
	"strings"
	"testing"
	"time"
)

func TestEnrolmentSection(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Enrolment
	}{
		{"absent: the defaults", "", DefaultEnrolment()},
		{"activation codes for everyone", "enrolment:\n  first: activation_code\n  replace: support\n  binding_code_validity: 5m\n  recovery_code_validity: 168h\n",
			Enrolment{First: ProofActivationCode, Replace: ProofSupport, BindingCodeValidity: 5 * time.Minute, RecoveryCodeValidity: 7 * 24 * time.Hour}},
		{"only one field", "enrolment: {first: activation_code}\n",
			Enrolment{First: ProofActivationCode, Replace: ProofActivationCode, BindingCodeValidity: 10 * time.Minute, RecoveryCodeValidity: 14 * 24 * time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte("version: 1\n"+tc.doc+"rules:"+okRule))
			if err != nil {
				t.Fatal(err)
			}
			if p.Enrolment != tc.want {
				t.Fatalf("Enrolment = %+v, want %+v", p.Enrolment, tc.want)
			}
		})
	}
}

func TestEnrolmentErrors(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"password never replaces", "enrolment:\n  replace: password\n", `3: enrolment.replace: must be activation_code or support, not "password"`},
		{"support is not a first binding", "enrolment:\n  first: support\n", `3: enrolment.first: must be password or activation_code, not "support"`},
		{"binding code over rev 4's limit", "enrolment:\n  binding_code_validity: 11m\n", `3: enrolment.binding_code_validity: must be > 0 and <= 10m0s`},
		{"recovery code for a year", "enrolment:\n  recovery_code_validity: 8760h\n", `3: enrolment.recovery_code_validity: must be > 0 and <= 2160h`},
		{"unknown field", "enrolment:\n  second: password\n", `3: enrolment.second: unknown field (allowed: first, replace, binding_code_validity, recovery_code_validity)`},
	}
	for _, tc := range tests {
		_, err := Parse("p.yaml", []byte("version: 1\n"+tc.doc+"rules:"+okRule))
		if err == nil || !strings.Contains(err.Error(), "p.yaml:"+tc.want) {
			t.Errorf("%s: error %v, want p.yaml:%s", tc.name, err, tc.want)
		}
	}
}

// not_enrolled: enrol lets the bank check a password, so the rule must say how the bank
// shows an accepted one and how its session is ended.
func TestNotEnrolledEnrol(t *testing.T) {
	const complete = "    not_enrolled: enrol\n    success: {status: [303], location_prefix: /dash}\n    logout: {path: /logout}\n"
	tests := []struct {
		name, base, extra, wantErr string
	}{
		{"complete", stepUpBase, complete, ""},
		{"with after_success", stepUpBase, complete + "    challenge: after_success\n", ""},
		{"without success", stepUpBase, "    not_enrolled: enrol\n    logout: {path: /logout}\n", "test.yaml:4: rules[0].success: required with not_enrolled: enrol"},
		{"without logout", stepUpBase, "    not_enrolled: enrol\n    success: {status: [303]}\n", "test.yaml:4: rules[0].logout: required with not_enrolled: enrol"},
		{"on a transaction", strings.Replace(stepUpBase, "kind: login", "kind: transaction", 1), complete, "test.yaml:8: rules[0].not_enrolled: enrol is for login rules only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := parseOrRefused(t, tc.base+tc.extra, tc.wantErr)
			if p == nil {
				return
			}
			if p.Rules[0].NotEnrolled != ActionEnrol {
				t.Fatalf("NotEnrolled = %q", p.Rules[0].NotEnrolled)
			}
		})
	}
}

// TestLoginWithoutSuccessIsWarned: a login rule without success, where the
// policy learns the bank's session, is named with its line; the example
// policy (which has success) and a policy without session learning get no
// warning.
func TestLoginWithoutSuccessIsWarned(t *testing.T) {
	with := stepUpBase + "    success: {status: [303]}\n"
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"with success", with, nil},
		{"without success", stepUpBase, []string{"line 4: rules[0].success: login rule \"login\" has no success condition"}},
		{"without a session cookie", strings.Replace(stepUpBase, "session: {cookie: S}\n", "", 1), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("test.yaml", []byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			ws := p.Warnings()
			if len(ws) != len(tc.want) {
				t.Fatalf("warnings = %v, want %d", ws, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(ws[i].String(), w) {
					t.Fatalf("warning %q, want it to contain %q", ws[i], w)
				}
			}
		})
	}
}
