package policy

import (
	"reflect"
	"sort"
	"strings"
)

// Changes is what differs between two compiled policies, rule by rule
// (by name), so that whoever applies a policy to running gateways sees
// what the new file will do before and after it takes effect.
type Changes struct {
	// Added and Removed are rule names, in the order of the file that has them.
	Added, Removed []string
	// Changed lists the rules present in both whose compiled form differs.
	Changed []RuleChange
	// Reordered is true when the rules present in both are tried in another
	// order (the first match wins, so order is behaviour).
	Reordered bool
	// Settings names the top-level sections whose compiled values differ
	// (session, paths, app, protected, step_up_required,
	// deregistration_grace, enrolment, service).
	Settings []string
}

// RuleChange is one rule whose compiled form differs.
type RuleChange struct {
	Name string
	// Fields names what differs: the exported fields by their policy-file
	// key (not_enrolled, mode, timeout…) and "match, user, display or
	// transaction" for the compiled conditions and templates.
	Fields []string
}

// Empty reports whether the two policies behave alike.
func (c Changes) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0 && !c.Reordered && len(c.Settings) == 0
}

// Diff compares two compiled policies. It compares what Parse made of the
// files, not their text: comments, spelling (64KiB or 65536) and line
// numbers do not count as changes. old may be nil (no policy before).
func Diff(old, new *Policy) Changes {
	var c Changes
	if old == nil {
		old = &Policy{}
	}
	oldBy := map[string]*Rule{}
	for _, r := range old.Rules {
		oldBy[r.Name] = r
	}
	newBy := map[string]*Rule{}
	for _, r := range new.Rules {
		newBy[r.Name] = r
	}
	var oldOrder, newOrder []string
	for _, r := range old.Rules {
		if _, ok := newBy[r.Name]; !ok {
			c.Removed = append(c.Removed, r.Name)
		} else {
			oldOrder = append(oldOrder, r.Name)
		}
	}
	for _, r := range new.Rules {
		o, ok := oldBy[r.Name]
		if !ok {
			c.Added = append(c.Added, r.Name)
			continue
		}
		newOrder = append(newOrder, r.Name)
		if f := ruleDiff(o, r); len(f) > 0 {
			c.Changed = append(c.Changed, RuleChange{Name: r.Name, Fields: f})
		}
	}
	c.Reordered = !reflect.DeepEqual(oldOrder, newOrder)

	settings := []struct {
		key      string
		old, new any
	}{
		{"session", old.Session, new.Session},
		{"paths", old.Paths, new.Paths},
		{"app", old.App, new.App},
		{"protected", old.Protected, new.Protected},
		{"step_up_required", old.StepUp, new.StepUp},
		{"deregistration_grace", old.DeregistrationGrace, new.DeregistrationGrace},
		{"enrolment", old.Enrolment, new.Enrolment},
		{"service", old.Service, new.Service},
	}
	for _, s := range settings {
		if !reflect.DeepEqual(s.old, s.new) {
			c.Settings = append(c.Settings, s.key)
		}
	}
	// Fields another change adds to Policy are compared too, so a new
	// section can never change behaviour unseen.
	known := map[string]bool{"Version": true, "Session": true, "Paths": true, "App": true, "Protected": true,
		"StepUp": true, "DeregistrationGrace": true, "Enrolment": true, "Service": true, "Rules": true, "methods": true}
	pt := reflect.TypeOf(Policy{})
	ov, nv := reflect.ValueOf(*old), reflect.ValueOf(*new)
	for i := 0; i < pt.NumField(); i++ {
		f := pt.Field(i)
		if known[f.Name] || !f.IsExported() {
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			c.Settings = append(c.Settings, f.Name)
		}
	}
	return c
}

// ruleKeys names Rule's exported fields as the policy file spells them.
var ruleKeys = map[string]string{
	"Kind": "kind", "Mode": "mode", "Timeout": "timeout", "BodyLimit": "body_limit",
	"NotEnrolled": "not_enrolled", "DryRun": "dry_run", "CodeDigits": "code_digits",
	"Challenge": "challenge", "Success": "success", "Logout": "logout", "Service": "service",
}

// ruleDiff names what differs between two rules of the same name; their
// lines in the file do not count.
func ruleDiff(a, b *Rule) []string {
	x, y := *a, *b
	x.Line, y.Line = 0, 0
	x.codeDigitsLine, y.codeDigitsLine = 0, 0
	if reflect.DeepEqual(x, y) {
		return nil
	}
	var out []string
	t := reflect.TypeOf(x)
	xv, yv := reflect.ValueOf(&x).Elem(), reflect.ValueOf(&y).Elem()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || reflect.DeepEqual(xv.Field(i).Interface(), yv.Field(i).Interface()) {
			continue
		}
		if k, ok := ruleKeys[f.Name]; ok {
			out = append(out, k)
		} else {
			out = append(out, f.Name)
		}
		// Equal now, so that what is left to differ is unexported.
		xv.Field(i).Set(yv.Field(i))
	}
	sort.Strings(out)
	if !reflect.DeepEqual(x, y) {
		out = append(out, "match, user, display or transaction")
	}
	return out
}

// Summary is one line: the rules added, removed and changed, by name.
func (c Changes) Summary() string {
	if c.Empty() {
		return "no change in behaviour"
	}
	var parts []string
	list := func(what string, names []string) {
		if len(names) > 0 {
			parts = append(parts, what+" "+strings.Join(names, ", "))
		}
	}
	list("rules added:", c.Added)
	list("rules removed:", c.Removed)
	var changed []string
	for _, r := range c.Changed {
		changed = append(changed, r.Name)
	}
	list("rules changed:", changed)
	if c.Reordered {
		parts = append(parts, "rules reordered")
	}
	list("settings changed:", c.Settings)
	return strings.Join(parts, "; ")
}
