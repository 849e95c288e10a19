package caddymodule

import (
	"reflect"
	"strings"
	"testing"
)

func TestPolicyPaths(t *testing.T) {
	tests := []struct {
		name, cfg string
		want      []string
	}{
		{"one gate", `{"apps":{"http":{"servers":{"s":{"routes":[{"handle":[{"handler":"onepush_device"},{"handler":"onepush","policy":"/etc/caddy/policy.yaml"},{"handler":"reverse_proxy"}]}]}}}}}`,
			[]string{"/etc/caddy/policy.yaml"}},
		{"two sites, one file", `{"apps":{"http":{"servers":{"a":{"routes":[{"handle":[{"handler":"onepush","policy":"/p.yaml"}]}]},"b":{"routes":[{"handle":[{"handler":"subroute","routes":[{"handle":[{"handler":"onepush","policy":"/p.yaml"}]}]}]}]}}}}}`,
			[]string{"/p.yaml"}},
		{"two files", `{"x":[{"handler":"onepush","policy":"/b.yaml"},{"handler":"onepush","policy":"/a.yaml"}]}`,
			[]string{"/a.yaml", "/b.yaml"}},
		{"a policy key elsewhere is not a gate's", `{"x":{"handler":"other","policy":"/x.yaml"}}`, []string{}},
		{"not JSON", `{`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policyPaths([]byte(tt.cfg)); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("policyPaths = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestLocalAdmin(t *testing.T) {
	for addr, want := range map[string]bool{
		"localhost:2019":          true,
		"127.0.0.1:2019":          true,
		"[::1]:2019":              true,
		"unix//run/caddy/admin":   true,
		"10.0.0.5:2019":           false,
		"gw2.bank.internal:2019":  false,
		"not an address at all:x": false,
	} {
		if got := localAdmin(addr); got != want {
			t.Errorf("localAdmin(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestChoosePolicyPath(t *testing.T) {
	tests := []struct {
		paths   []string
		want    string
		got     string
		errPart string
	}{
		{[]string{"/p.yaml"}, "", "/p.yaml", ""},
		{[]string{"/a.yaml", "/b.yaml"}, "", "", "say which one with --policy-file"},
		{[]string{"/a.yaml", "/b.yaml"}, "/b.yaml", "/b.yaml", ""},
		{[]string{"/a.yaml"}, "/c.yaml", "", "is not one the running configuration names"},
		{nil, "", "", "no onepush handler"},
		{[]string{"policy.yaml"}, "", "", "relative to Caddy's working directory"},
	}
	for _, tt := range tests {
		got, err := choosePolicyPath(tt.paths, tt.want)
		if got != tt.got || (err == nil) != (tt.errPart == "") || (err != nil && !strings.Contains(err.Error(), tt.errPart)) {
			t.Errorf("choosePolicyPath(%v, %q) = %q, %v; want %q, error containing %q", tt.paths, tt.want, got, err, tt.got, tt.errPart)
		}
	}
}
