package policy

import (
	"net/http"
	"strings"
	"testing"
)

const stepUpBase = `version: 1
session: {cookie: S}
rules:
  - name: login
    kind: login
    match: {path: {exact: /login}, fields: [u]}
    user: {template: "{form.u}"}
`

func TestStepUpOptions(t *testing.T) {
	tests := []struct {
		name    string
		extra   string
		wantErr string // "" parses
	}{
		{"after_success complete", "    challenge: after_success\n    success: {status: [303], set_cookie: S, location_prefix: /dash}\n    logout: {path: /logout}\n", ""},
		{"after_success without success", "    challenge: after_success\n    logout: {path: /logout}\n", "test.yaml:4: rules[0].success: required with challenge: after_success"},
		{"after_success without logout", "    challenge: after_success\n    success: {status: [303]}\n", "rules[0].logout: required"},
		{"bad challenge value", "    challenge: later\n", "test.yaml:8: rules[0].challenge: must be before_forward or after_success"},
		{"bad status", "    challenge: after_success\n    success: {status: [3030]}\n    logout: {path: /logout}\n", "rules[0].success.status: \"3030\" is not an HTTP status code"},
		{"empty success", "    challenge: after_success\n    success: {}\n    logout: {path: /logout}\n", "rules[0].success"},
		{"logout path without slash", "    challenge: after_success\n    success: {status: [303]}\n    logout: {path: logout}\n", "rules[0].logout.path: required and must start with /"},
		{"number matching is replaced", "    number_matching: true\n", "test.yaml:8: rules[0].number_matching: replaced by code transfer"},
		{"number matching with interstitial is replaced", "    mode: interstitial\n    number_matching: true\n", "test.yaml:9: rules[0].number_matching: replaced by code transfer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("test.yaml", []byte(stepUpBase+tc.extra))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if p.Rules[0].Challenge == "" {
					t.Fatal("Challenge not defaulted")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestSuccessConditionMatches(t *testing.T) {
	c := &SuccessCondition{Status: []int{302, 303}, SetCookie: "S", LocationPrefix: "/dashboard"}
	ok := http.Header{"Location": {"/dashboard"}, "Set-Cookie": {"S=abc; Path=/"}}
	tests := []struct {
		name   string
		status int
		h      http.Header
		want   bool
	}{
		{"all hold", 303, ok, true},
		{"wrong status", 200, ok, false},
		{"wrong location", 303, http.Header{"Location": {"/login"}, "Set-Cookie": {"S=abc"}}, false},
		{"no cookie", 303, http.Header{"Location": {"/dashboard"}}, false},
		{"cookie cleared", 303, http.Header{"Location": {"/dashboard"}, "Set-Cookie": {"S=; Max-Age=-1"}}, false},
		{"other cookie", 303, http.Header{"Location": {"/dashboard"}, "Set-Cookie": {"T=abc"}}, false},
		{"cookie cleared by an Expires in the past", 303, http.Header{"Location": {"/dashboard"}, "Set-Cookie": {"S=deleted; Expires=Thu, 01 Jan 1970 00:00:01 GMT"}}, false},
	}
	for _, tc := range tests {
		if got := c.Matches(tc.status, tc.h); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}
