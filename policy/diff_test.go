package policy

import (
	"reflect"
	"strings"
	"testing"
)

const diffBase = `version: 1
session: {cookie: S}
rules:
  - name: login
    kind: login
    match: {path: {exact: /login}, fields: [user]}
    user: {template: "{form.user}"}
    not_enrolled: allow
  - name: transfer
    kind: transaction
    match: {path: {regex: "/transfer(/.*)?"}, fields: [amount]}
    user: {session: true}
  - name: logout
    kind: logout
    match: {path: {exact: /logout}}
    user: {session: true}
`

func TestDiff(t *testing.T) {
	base := mustParse(t, diffBase)
	tests := []struct {
		name string
		edit func(string) string
		want Changes
	}{
		{"comments and spelling only", func(s string) string {
			return "# a comment\n\n" + strings.Replace(s, "not_enrolled: allow", "not_enrolled: allow # kept", 1)
		}, Changes{}},
		{"login switched to deny", func(s string) string {
			return strings.Replace(s, "not_enrolled: allow", "not_enrolled: deny", 1)
		}, Changes{Changed: []RuleChange{{Name: "login", Fields: []string{"not_enrolled"}}}}},
		{"path regex changed", func(s string) string {
			return strings.Replace(s, `"/transfer(/.*)?"`, `"/transfers?(/.*)?"`, 1)
		}, Changes{Changed: []RuleChange{{Name: "transfer", Fields: []string{"match, user, display or transaction"}}}}},
		{"rule removed and added", func(s string) string {
			return strings.Replace(s, "name: logout", "name: signout", 1)
		}, Changes{Added: []string{"signout"}, Removed: []string{"logout"}}},
		{"rules reordered", func(s string) string {
			i := strings.Index(s, "  - name: transfer")
			j := strings.Index(s, "  - name: logout")
			return s[:i] + s[j:] + s[i:j]
		}, Changes{Reordered: true}},
		{"session ttl", func(s string) string {
			return strings.Replace(s, "{cookie: S}", "{cookie: S, ttl: 5m}", 1)
		}, Changes{Settings: []string{"session"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(base, mustParse(t, tt.edit(diffBase)))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Diff = %+v, want %+v", got, tt.want)
			}
			if got.Empty() != reflect.DeepEqual(tt.want, Changes{}) {
				t.Fatalf("Empty() = %v for %+v", got.Empty(), got)
			}
		})
	}
	if c := Diff(nil, base); !reflect.DeepEqual(c.Added, []string{"login", "transfer", "logout"}) {
		t.Fatalf("Diff(nil, p).Added = %v", c.Added)
	}
}
