package policy

import (
	"strings"
	"testing"
	"time"
)

func TestStepUpRequiredAndGrace(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nstep_up_required:\n  users: [\"1001/boss\"]\n  pattern: \"9[0-9]*/.*\"\nderegistration_grace: 72h\nrules:"+okRule))
	if err != nil {
		t.Fatal(err)
	}
	if p.DeregistrationGrace != 72*time.Hour {
		t.Errorf("deregistration_grace = %s", p.DeregistrationGrace)
	}
	for key, want := range map[string]bool{
		"1001/boss": true, "9001/anyone": true, "1001/alice": false,
		"x9001/y":    false, // the pattern is anchored
		"1001/boss2": false, "": false,
	} {
		if got := p.RequiresStepUp(key); got != want {
			t.Errorf("RequiresStepUp(%q) = %v, want %v", key, got, want)
		}
	}
	plain, err := Parse("p.yaml", []byte("version: 1\nrules:"+okRule))
	if err != nil {
		t.Fatal(err)
	}
	if plain.RequiresStepUp("1001/boss") || plain.DeregistrationGrace != 0 {
		t.Error("a policy without step_up_required marks users or sets a grace")
	}
}

func TestStepUpRequiredErrors(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"bad regex", "step_up_required:\n  pattern: \"([\"\n", `3: step_up_required.pattern: error parsing regexp`},
		{"empty", "step_up_required: {}\n", `2: step_up_required: needs users or pattern`},
		{"unknown key", "step_up_required:\n  attribute: role\n", `3: step_up_required.attribute: unknown field (allowed: users, pattern)`},
		{"duplicate user", "step_up_required:\n  users: [a, a]\n", `3: step_up_required.users[1]: "a" listed twice`},
		{"not a list", "step_up_required:\n  users: a\n", `3: step_up_required.users: must be a list`},
		{"grace without unit", "deregistration_grace: 72\n", `2: deregistration_grace: a duration needs a unit`},
		{"grace negative", "deregistration_grace: -1h\n", `2: deregistration_grace: must be > 0`},
	}
	for _, tc := range tests {
		_, err := Parse("p.yaml", []byte("version: 1\n"+tc.doc+"rules:"+okRule))
		if err == nil || !strings.Contains(err.Error(), "p.yaml:"+tc.want) {
			t.Errorf("%s: error %v, want p.yaml:%s", tc.name, err, tc.want)
		}
	}
}
