package policy

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadBank(t *testing.T) {
	p, err := Load(filepath.Join("..", "examples", "policy", "bank.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || p.Session.Cookie != "BANKSESSION" || p.Session.TTL != 30*time.Minute || p.Paths.CaseInsensitive {
		t.Fatalf("policy header = %+v %+v %+v", p.Version, p.Session, p.Paths)
	}
	type want struct {
		name        string
		kind        Kind
		mode        Mode
		timeout     time.Duration
		limit       int64
		notEnrolled Action
		session     bool
		line        int
		methods     string
		describe    string
		fields      string
	}
	wants := []want{
		{"login", KindLogin, ModeInterstitial, 90 * time.Second, 16 << 10, ActionAllow, false, 30, "POST", "exact /login", "contract_no,user_id,password"},
		{"bulk-transfer", KindTransaction, ModeHold, 2 * time.Minute, 1 << 20, ActionDeny, true, 59, "POST", "exact /transfer/bulk", "format"},
		{"transfer", KindTransaction, ModeHold, 2 * time.Minute, 64 << 10, ActionAllow, true, 76, "POST", "prefix /transfer", "payee_account,amount"},
		{"logout", KindLogout, ModeHold, 2 * time.Minute, 64 << 10, "", true, 95, "POST,GET", "exact /logout", ""},
		{"payroll", KindTransaction, ModeHold, 2 * time.Minute, 256 << 10, ActionDeny, true, 102, "POST", "exact /payroll", ""},
		{"batch-approval", KindTransaction, ModeHold, 2 * time.Minute, 64 << 10, ActionDeny, true, 117, "POST", "exact /batch/approve", "batch_no"},
		{"payeasy", KindTransaction, ModeHold, 2 * time.Minute, 64 << 10, ActionDeny, true, 131, "POST", "exact /payeasy", "collector_no,customer_no,confirm_no,amount"},
		{"direct-debit", KindTransaction, ModeHold, 2 * time.Minute, 64 << 10, ActionDeny, true, 143, "POST", "exact /debit/register", "biller_code,customer_no"},
		{"settings", KindTransaction, ModeHold, 2 * time.Minute, 64 << 10, ActionDeny, true, 154, "POST", "exact /settings", "daily_limit,email"},
	}
	if len(p.Rules) != len(wants) {
		t.Fatalf("got %d rules, want %d", len(p.Rules), len(wants))
	}
	for i, w := range wants {
		r := p.Rules[i]
		got := want{r.Name, r.Kind, r.Mode, r.Timeout, r.BodyLimit, r.NotEnrolled, r.UsesSession(), r.Line,
			strings.Join(r.Methods(), ","), r.Describe(), strings.Join(r.Fields(), ",")}
		if got != w {
			t.Errorf("rule %d = %+v\nwant %+v", i, got, w)
		}
	}
}

// TestParseErrorFixtures checks that every problem in a file is reported, each with its
// line and field path, in line order.
func TestParseErrorFixtures(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"many.yaml", []string{
			`:3: session.ttl: must be positive`,
			`:8: rules[0].match.methods[1]: "GE T" is not a valid HTTP method`,
			`:9: rules[0].match.path.exact: must start with /`,
			`:10: rules[0].match.hosts[0]: "bank.example.com:443" is not a host name (no scheme, port, path or wildcard)`,
			`:11: rules[0].match.content_types[0]: "text/plain" cannot be parsed; supported: application/x-www-form-urlencoded, multipart/form-data, application/json`,
			`:12: rules[0].user: exactly one of template, header, session is required`,
			`:13: rules[0].not_enrolled: must be allow, deny or enrol, not "maybe"`,
			`:14: rules[0].timeout: must be > 0 and <= 10m0s`,
			`:15: rules[0].body_limit: must be > 0 and <= 10MiB`,
			`:16: rules[0].mode: must be hold or interstitial, not "wait"`,
			`:17: rules[1].name: "login" already used by the rule on line 5`,
			`:17: session.cookie: required because a rule takes its user from the session`,
			`:18: rules[1].kind: must be login, transaction or logout, not "transfer"`,
			":19: rules[1].match.path.regex: error parsing regexp: missing closing ): `(/transfer`",
			`:22: rules[1].display[0].label: required and must not be blank`,
			`:22: rules[1].display[0].value: unclosed { at offset 0 (write {{ for a literal brace)`,
			`:26: rules[2].user: logout rules must use session: true`,
			`:27: rules[2].extra: unknown field (allowed: name, kind, match, user, display, not_enrolled, timeout, body_limit, mode, dry_run, number_matching, challenge, success, logout, transaction, service, code_digits, aggregate, method, instrument)`,
		}},
		{"placeholder.yaml", []string{
			`:11: rules[0].display[0].value: {form.ammount}: the rule does not extract "ammount" (match.fields: payee_account, amount)`,
			`:15: rules[0].transaction.payee: {form.payee_acount}: the rule does not extract "payee_acount" (match.fields: payee_account, amount)`,
		}},
		{"session.yaml", []string{
			`:3: session.cookie: required because a rule takes its user from the session`,
		}},
		{"syntax.yaml", []string{
			`:5: yaml: value is not allowed in this context`,
		}},
		{"types.yaml", []string{
			`:1: version: must be 1`,
			`:3: paths.case_insensitive: must be true or false, not a string`,
			`:8: rules[0].match.path: must be a mapping, not a string`,
			`:9: rules[0].match.fields: must be a list, not a string`,
			`:11: rules[0].body_limit: invalid size "lots" (use bytes or e.g. 16KiB, 1MiB)`,
			`:13: rules[0].display[0].value: must be a string, not a mapping (quote values that start with {)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "invalid", tt.file)
			p, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) succeeded: %+v", path, p)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(got), len(tt.want), err)
			}
			for i := 0; i < len(got) && i < len(tt.want); i++ {
				if got[i] != path+tt.want[i] {
					t.Errorf("error %d:\n got %s\nwant %s%s", i, got[i], path, tt.want[i])
				}
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != path || pe.Line == 0 {
				t.Errorf("errors.As(*Error) = %+v", pe)
			}
		})
	}
}

const okRule = `
  - name: r
    kind: login
    match: {path: {exact: /login}}
    user: {template: "{form.u}"}
`

// TestParseErrors covers one problem at a time; want is the whole message after "p.yaml:".
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", ``, `1: empty policy file`},
		{"comment only", "# nothing\n", `1: empty policy file`},
		{"not a mapping", "- a\n", `1: must be a mapping, not a list`},
		{"no version", "rules:" + okRule, `1: version: required (version: 1)`},
		{"version 2", "version: 2\nrules:" + okRule, `1: version: must be 1`},
		{"no rules", "version: 1\n", `1: rules: at least one rule is required`},
		{"empty rules", "version: 1\nrules: []\n", `2: rules: at least one rule is required`},
		{"two documents", "version: 1\nrules:" + okRule + "---\nversion: 1\n", `8: a policy file holds exactly one YAML document`},
		{"duplicate key", "version: 1\nversion: 1\nrules:" + okRule, `2: yaml: mapping key "version" already defined at [1:1]`},
		{"unknown top", "version: 1\nrule: []\nrules:" + okRule, `2: rule: unknown field (allowed: version, session, paths, app, protected, defaults, rules, step_up_required, deregistration_grace, enrolment, service)`},
		{"unknown session key", "version: 1\nsession: {cookie: S, ttl: 1m, domain: x}\nrules:" + okRule, `2: session.domain: unknown field (allowed: cookie, ttl)`},
		{"bad cookie name", "version: 1\nsession: {cookie: \"a b\"}\nrules:" + okRule, `2: session.cookie: "a b" is not a valid cookie name`},
		{"bad ttl", "version: 1\nsession: {ttl: soon}\nrules:" + okRule, `2: session.ttl: invalid duration "soon" (use e.g. 90s or 2m)`},
		{"defaults timeout", "version: 1\ndefaults: {timeout: 0s}\nrules:" + okRule, `2: defaults.timeout: must be > 0 and <= 10m0s`},
		{"defaults unknown", "version: 1\ndefaults: {not_enrolled: deny}\nrules:" + okRule, `2: defaults.not_enrolled: unknown field (allowed: timeout, body_limit, mode)`},
		{"alias", "version: 1\nx: &a 1\nrules:" + okRule, `2: x: unknown field (allowed: version, session, paths, app, protected, defaults, rules, step_up_required, deregistration_grace, enrolment, service)`},
		{"alias used", "version: 1\nsession: {cookie: &c S, ttl: *c}\nrules:" + okRule, `2: session.ttl: YAML aliases are not supported; write the value out`},
		{"rule not mapping", "version: 1\nrules:\n  - login\n", `3: rules[0]: must be a mapping, not a string`},
		{"no name", "version: 1\nrules:\n  - kind: login\n    match: {path: {exact: /l}}\n    user: {header: X-U}\n", `3: rules[0].name: required`},
		{"no kind", "version: 1\nrules:\n  - name: a\n    match: {path: {exact: /l}}\n    user: {header: X-U}\n", `3: rules[0].kind: required (login, transaction or logout)`},
		{"no match", "version: 1\nrules:\n  - name: a\n    kind: login\n    user: {header: X-U}\n", `3: rules[0].match: required`},
		{"no path", "version: 1\nrules:\n  - name: a\n    kind: login\n    match: {methods: [POST]}\n    user: {header: X-U}\n", `5: rules[0].match.path: exactly one of exact, prefix, regex is required`},
		{"two paths", "version: 1\nrules:\n  - name: a\n    kind: login\n    match:\n      path: {exact: /a, prefix: /b}\n    user: {header: X-U}\n", `6: rules[0].match.path: exactly one of exact, prefix, regex is required`},
		{"empty path", "version: 1\nrules:\n  - name: a\n    kind: login\n    match:\n      path: {}\n    user: {header: X-U}\n", `6: rules[0].match.path: exactly one of exact, prefix, regex is required`},
		{"unnormalisable rule path", "version: 1\nrules:\n  - name: a\n    kind: login\n    match: {path: {prefix: \"/a%zz\"}}\n    user: {header: X-U}\n", `5: rules[0].match.path.prefix: path cannot be normalised: invalid percent escape`},
		{"no methods", "version: 1\nrules:\n  - name: a\n    kind: login\n    match: {methods: [], path: {exact: /l}}\n    user: {header: X-U}\n", `5: rules[0].match.methods: must list at least one method`},
		{"bad header", "version: 1\nrules:\n  - name: a\n    kind: login\n    match: {path: {exact: /l}}\n    user: {header: \"X U\"}\n", `6: rules[0].user.header: "X U" is not a valid header name`},
		{"no user", "version: 1\nrules:\n  - name: a\n    kind: login\n    match: {path: {exact: /l}}\n", `3: rules[0].user: required (template, header or session: true)`},
		{"empty user", "version: 1\nrules:\n  - name: a\n    kind: login\n    match: {path: {exact: /l}}\n    user: {}\n", `6: rules[0].user: exactly one of template, header, session is required`},
		{"literal user", "version: 1\nrules:\n  - name: a\n    kind: login\n    match: {path: {exact: /l}}\n    user: {template: \"alice\"}\n", `6: rules[0].user.template: has no placeholder, so every request would be the same user`},
		{"login from session", "version: 1\nsession: {cookie: S}\nrules:\n  - name: a\n    kind: login\n    match: {path: {exact: /l}}\n    user: {session: true}\n", `7: rules[0].user.session: a login rule cannot take its user from the session it is about to create`},
		{"session false", "version: 1\nsession: {cookie: S}\nrules:\n  - name: a\n    kind: transaction\n    match: {path: {exact: /l}}\n    user: {session: false}\n", `7: rules[0].user.session: only session: true is meaningful; use template or header instead`},
		{"logout not_enrolled", "version: 1\nsession: {cookie: S}\nrules:\n  - name: a\n    kind: logout\n    match: {path: {exact: /l}}\n    user: {session: true}\n    not_enrolled: deny\n", `8: rules[0].not_enrolled: has no effect on logout rules; remove it`},
		{"unknown namespace", "version: 1\nrules:\n  - name: a\n    kind: login\n    match: {path: {exact: /l}}\n    user: {template: \"{query.u}\"}\n", `6: rules[0].user.template: placeholder {query.u}: unknown namespace "query" (use form or header)`},
		{"stray brace", "version: 1\nrules:\n  - name: a\n    kind: login\n    match: {path: {exact: /l}}\n    user: {template: \"{form.u}}\"}\n", `6: rules[0].user.template: unmatched } (write }} for a literal brace)`},
		{"display no value", "version: 1\nrules:" + okRule + "    display:\n      - {label: A}\n", `8: rules[0].display[0].value: required`},
		{"display unknown", "version: 1\nrules:" + okRule + "    display:\n      - {label: A, value: x, style: bold}\n", `8: rules[0].display[0].style: unknown field (allowed: label, value)`},
		{"field twice", "version: 1\nrules:\n  - name: a\n    kind: login\n    match:\n      path: {exact: /l}\n      fields: [u, u]\n    user: {template: \"{form.u}\"}\n", `7: rules[0].match.fields[1]: "u" listed twice`},
		{"dry_run type", "version: 1\nrules:" + okRule + "    dry_run: 1\n", `7: rules[0].dry_run: must be true or false, not a number`},
		{"merge key", "version: 1\nrules:\n  - <<: {name: a}\n    kind: login\n", `3: rules[0]: YAML merge keys (<<) are not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			msgs := strings.Split(err.Error(), "\n")
			found := false
			for _, m := range msgs {
				if m == "p.yaml:"+tt.want {
					found = true
				}
			}
			if !found {
				t.Errorf("want p.yaml:%s\ngot:\n%s", tt.want, err)
			}
		})
	}
}

func TestParseDefaultsAndOptions(t *testing.T) {
	src := `version: 1
session: {cookie: S}
paths: {case_insensitive: true}
defaults: {timeout: 45s, body_limit: 1MiB, mode: interstitial}
rules:
  - name: t
    kind: transaction
    match:
      methods: [post, put]
      path: {prefix: /Transfer/}
      hosts: ["Bank.Example.com.", "[::1]"]
    user: {header: x-remote-user}
    dry_run: true
  - name: u
    kind: transaction
    match: {path: {regex: "/pay/[0-9]+"}}
    user: {session: true}
    body_limit: 2048
    not_enrolled: allow
`
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.Rules[0], p.Rules[1]
	if a.Timeout != 45*time.Second || a.BodyLimit != 1<<20 || a.Mode != ModeInterstitial || !a.DryRun {
		t.Errorf("defaults not applied: %+v", a)
	}
	if got := strings.Join(a.Methods(), ","); got != "POST,PUT" {
		t.Errorf("methods = %s", got)
	}
	if got := strings.Join(a.Hosts(), ","); got != "bank.example.com,::1" {
		t.Errorf("hosts = %s", got)
	}
	if a.Describe() != "prefix /transfer/" || a.userHeader != "X-Remote-User" || a.NotEnrolled != ActionDeny {
		t.Errorf("rule a = %s %s %s", a.Describe(), a.userHeader, a.NotEnrolled)
	}
	if b.BodyLimit != 2048 || b.NotEnrolled != ActionAllow || b.Mode != ModeInterstitial || b.DryRun {
		t.Errorf("rule b = %+v", b)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512", 512, true},
		{"16KiB", 16 << 10, true},
		{"1MiB", 1 << 20, true},
		{"10 MiB", 10 << 20, true},
		{"64KB", 64000, true},
		{"100B", 100, true},
		{"1.5MiB", 0, false},
		{"-1", 0, false},
		{"KiB", 0, false},
		{"99999999999999999MiB", MaxBodyLimit + 1, true}, // out of range, never overflows
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
