package policy

import (
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Parse compiles a policy from data; name is used in error messages (usually the file path).
// All problems found are returned together, each as an *Error with its line and field path.
//
// The YAML is walked as a syntax tree rather than decoded into structs so that every
// message, including type mismatches and unknown keys, carries the line and field path.
func Parse(name string, data []byte) (*Policy, error) {
	d := &decoder{file: name}
	root, err := d.parseYAML(data)
	if err != nil {
		return nil, err
	}
	p := d.policy(root)
	if len(d.errs) > 0 {
		sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
		errs := make([]error, len(d.errs))
		for i, e := range d.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	return p, nil
}

type decoder struct {
	file string
	errs []*Error
}

func (d *decoder) errorf(line int, field, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// parseYAML returns the single document's body. The third-party parser is shielded with
// recover because a malformed file must produce an error, never take the server down.
func (d *decoder) parseYAML(data []byte) (body ast.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			body, err = nil, &Error{File: d.file, Line: 1, Msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	f, perr := parser.ParseBytes(data, 0)
	if perr != nil {
		line := 1
		msg := perr.Error()
		var se *yaml.SyntaxError
		if errors.As(perr, &se) {
			msg = se.Message
			if se.Token != nil && se.Token.Position != nil {
				line = se.Token.Position.Line
			}
		}
		return nil, &Error{File: d.file, Line: line, Field: "yaml", Msg: msg}
	}
	var docs []ast.Node
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			docs = append(docs, doc.Body)
		}
	}
	switch len(docs) {
	case 0:
		return nil, &Error{File: d.file, Line: 1, Msg: "empty policy file"}
	case 1:
		return docs[0], nil
	default:
		return nil, &Error{File: d.file, Line: lineOf(docs[1]), Msg: "a policy file holds exactly one YAML document"}
	}
}

func lineOf(n ast.Node) int {
	if n == nil {
		return 0
	}
	if m, ok := n.(*ast.MappingNode); ok && len(m.Values) > 0 {
		return lineOf(m.Values[0].Key)
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// entry is one key of a mapping, kept with its line for messages.
type entry struct {
	key   string
	line  int
	value ast.Node
}

// unwrap strips anchors and tags; aliases are refused because expanding them is how
// "billion laughs" files exhaust memory, and a policy file gains nothing from them.
func (d *decoder) unwrap(n ast.Node, field string) (ast.Node, bool) {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AliasNode:
			d.errorf(lineOf(v), field, "YAML aliases are not supported; write the value out")
			return nil, false
		case *ast.NullNode, nil:
			return nil, true
		default:
			return n, true
		}
	}
}

// mapping returns the entries of a mapping node and reports keys outside allowed.
// A nil result with ok=true means the value was null/absent.
func (d *decoder) mapping(n ast.Node, field string, allowed ...string) (map[string]entry, int, bool) {
	line := lineOf(n)
	n, ok := d.unwrap(n, field)
	if !ok {
		return nil, line, false
	}
	if n == nil {
		return nil, line, true
	}
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		d.errorf(line, field, "must be a mapping, not %s", describe(n))
		return nil, line, false
	}
	out := make(map[string]entry, len(values))
	for _, mv := range values {
		kl := lineOf(mv.Key)
		if _, isMerge := mv.Key.(*ast.MergeKeyNode); isMerge {
			d.errorf(kl, field, "YAML merge keys (<<) are not supported")
			continue
		}
		k := scalarText(mv.Key)
		sub := join(field, k)
		if !contains(allowed, k) {
			d.errorf(kl, sub, "unknown field (allowed: %s)", strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[k]; dup {
			d.errorf(kl, sub, "repeated")
			continue
		}
		out[k] = entry{key: k, line: kl, value: mv.Value}
	}
	return out, line, true
}

func (d *decoder) sequence(e entry, field string) ([]ast.Node, bool) {
	n, ok := d.unwrap(e.value, field)
	if !ok || n == nil {
		return nil, ok
	}
	s, isSeq := n.(*ast.SequenceNode)
	if !isSeq {
		d.errorf(e.line, field, "must be a list, not %s", describe(n))
		return nil, false
	}
	return s.Values, true
}

// str reads a scalar as text. Numbers and booleans are accepted as written so that
// e.g. a host or label that looks numeric needs no quoting.
func (d *decoder) str(e entry, field string) (string, bool) {
	n, ok := d.unwrap(e.value, field)
	if !ok {
		return "", false
	}
	switch v := n.(type) {
	case nil:
		return "", true
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return v.GetToken().Value, true
	case *ast.MappingNode, *ast.MappingValueNode:
		d.errorf(lineOf(n), field, "must be a string, not a mapping (quote values that start with {)")
	default:
		d.errorf(lineOf(n), field, "must be a string, not %s", describe(n))
	}
	return "", false
}

func (d *decoder) strList(e entry, field string) ([]string, bool) {
	items, ok := d.sequence(e, field)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	good := true
	for i, it := range items {
		s, ok := d.str(entry{line: lineOf(it), value: it}, fmt.Sprintf("%s[%d]", field, i))
		if !ok {
			good = false
			continue
		}
		out = append(out, s)
	}
	return out, good
}

func (d *decoder) boolean(e entry, field string) (bool, bool) {
	n, ok := d.unwrap(e.value, field)
	if !ok || n == nil {
		return false, ok
	}
	b, isBool := n.(*ast.BoolNode)
	if !isBool {
		d.errorf(e.line, field, "must be true or false, not %s", describe(n))
		return false, false
	}
	return b.Value, true
}

func (d *decoder) duration(e entry, field string) (time.Duration, bool) {
	n, ok := d.unwrap(e.value, field)
	if !ok || n == nil {
		return 0, ok
	}
	if _, isInt := n.(*ast.IntegerNode); isInt {
		d.errorf(e.line, field, "a duration needs a unit, e.g. 90s or 2m")
		return 0, false
	}
	s, ok := d.str(e, field)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(e.line, field, "invalid duration %q (use e.g. 90s or 2m)", s)
		return 0, false
	}
	return v, true
}

// size accepts a byte count or a number with a unit, because limits read better as 16KiB.
func (d *decoder) size(e entry, field string) (int64, bool) {
	n, ok := d.unwrap(e.value, field)
	if !ok || n == nil {
		return 0, ok
	}
	s, ok := d.str(e, field)
	if !ok {
		return 0, false
	}
	v, err := parseSize(s)
	if err != nil {
		d.errorf(e.line, field, "%v", err)
		return 0, false
	}
	return v, true
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1000}, {"MB", 1000 * 1000}, {"B", 1}}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q (use bytes or e.g. 16KiB, 1MiB)", s)
	}
	if v > MaxBodyLimit/mult+1 {
		return MaxBodyLimit + 1, nil // out of range; reported by the caller's range check
	}
	return v * mult, nil
}

func formatSize(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10)
}

func (d *decoder) policy(root ast.Node) *Policy {
	top, line, ok := d.mapping(root, "", "version", "session", "paths", "app", "protected", "defaults", "rules",
		"step_up_required", "deregistration_grace", "enrolment", "service")
	if !ok {
		return nil
	}
	if top == nil {
		d.errorf(line, "", "empty policy file")
		return nil
	}
	p := &Policy{Session: SessionConfig{TTL: DefaultSessionTTL}}

	if e, ok := top["version"]; !ok {
		d.errorf(line, "version", "required (version: 1)")
	} else if n, ok := d.unwrap(e.value, "version"); ok {
		iv, isInt := n.(*ast.IntegerNode)
		if !isInt || iv.GetToken().Value != "1" {
			d.errorf(e.line, "version", "must be 1")
		} else {
			p.Version = 1
		}
	}

	if e, ok := top["session"]; ok {
		m, _, _ := d.mapping(e.value, "session", "cookie", "ttl")
		if c, ok := m["cookie"]; ok {
			p.Session.Cookie, _ = d.str(c, "session.cookie")
			if p.Session.Cookie != "" && !isToken(p.Session.Cookie) {
				d.errorf(c.line, "session.cookie", "%q is not a valid cookie name", p.Session.Cookie)
			}
		}
		if t, ok := m["ttl"]; ok {
			if v, ok := d.duration(t, "session.ttl"); ok {
				if v <= 0 {
					d.errorf(t.line, "session.ttl", "must be positive")
				} else {
					p.Session.TTL = v
				}
			}
		}
	}

	if e, ok := top["paths"]; ok {
		m, _, _ := d.mapping(e.value, "paths", "case_insensitive")
		if c, ok := m["case_insensitive"]; ok {
			p.Paths.CaseInsensitive, _ = d.boolean(c, "paths.case_insensitive")
		}
	}

	if e, ok := top["app"]; ok {
		m, _, _ := d.mapping(e.value, "app", "fields_in_query")
		if c, ok := m["fields_in_query"]; ok {
			p.App.FieldsInQuery, _ = d.boolean(c, "app.fields_in_query")
		}
	}

	if e, ok := top["protected"]; ok {
		p.Protected = d.protected(e, p.Paths.CaseInsensitive)
	}

	if e, ok := top["step_up_required"]; ok {
		p.StepUp = d.stepUpRequired(e)
	}
	if e, ok := top["deregistration_grace"]; ok {
		p.DeregistrationGrace = d.deregistrationGrace(e)
	}
	p.Enrolment = DefaultEnrolment()
	if e, ok := top["enrolment"]; ok {
		p.Enrolment = d.enrolment(e)
	}
	if e, ok := top["service"]; ok {
		p.Service = d.service(e, "service")
	}

	def := ruleDefaults{timeout: DefaultTimeout, bodyLimit: DefaultBodyLimit, mode: ModeHold}
	if e, ok := top["defaults"]; ok {
		m, _, _ := d.mapping(e.value, "defaults", "timeout", "body_limit", "mode")
		d.timing(m, "defaults", &def.timeout, &def.bodyLimit, &def.mode)
	}

	e, ok := top["rules"]
	if !ok {
		d.errorf(line, "rules", "at least one rule is required")
		return p
	}
	items, ok := d.sequence(e, "rules")
	if ok && len(items) == 0 {
		d.errorf(e.line, "rules", "at least one rule is required")
	}
	names := map[string]int{}
	usesSession := 0
	for i, it := range items {
		field := fmt.Sprintf("rules[%d]", i)
		r := d.rule(it, field, def, p.Paths.CaseInsensitive)
		if r == nil {
			continue
		}
		if r.Name != "" {
			if first, dup := names[r.Name]; dup {
				d.errorf(r.Line, field+".name", "%q already used by the rule on line %d", r.Name, first)
			} else {
				names[r.Name] = r.Line
			}
		}
		if r.userSession && usesSession == 0 {
			usesSession = r.Line
		}
		p.Rules = append(p.Rules, r)
	}
	if usesSession != 0 && p.Session.Cookie == "" {
		d.errorf(usesSession, "session.cookie", "required because a rule takes its user from the session")
	}
	for _, r := range p.Rules {
		r.cookie = p.Session.Cookie
		r.queryFields = p.App.FieldsInQuery
		if r.Service == "" {
			r.Service = p.Service
		}
		for _, m := range r.methods {
			if !contains(p.methods, m) {
				p.methods = append(p.methods, m)
			}
		}
	}
	return p
}

// protected reads `protected: {prefix: /, except: [/search]}`.
func (d *decoder) protected(e entry, ci bool) *Protected {
	m, line, ok := d.mapping(e.value, "protected", "prefix", "except")
	if !ok || m == nil {
		return nil
	}
	pe, ok := m["prefix"]
	if !ok {
		d.errorf(line, "protected.prefix", "required (e.g. prefix: /)")
		return nil
	}
	s, ok := d.str(pe, "protected.prefix")
	if !ok {
		return nil
	}
	if !strings.HasPrefix(s, "/") {
		d.errorf(pe.line, "protected.prefix", "must start with /")
		return nil
	}
	norm, err := NormalizePath(s, ci)
	if err != nil {
		d.errorf(pe.line, "protected.prefix", "%v", err)
		return nil
	}
	pr := &Protected{Prefix: norm}
	if xe, ok := m["except"]; ok {
		list, _ := d.strList(xe, "protected.except")
		for i, x := range list {
			f := fmt.Sprintf("protected.except[%d]", i)
			if !strings.HasPrefix(x, "/") {
				d.errorf(xe.line, f, "must start with /")
				continue
			}
			nx, err := NormalizePath(x, ci)
			if err != nil {
				d.errorf(xe.line, f, "%v", err)
				continue
			}
			if !underPrefix(nx, norm) {
				d.errorf(xe.line, f, "%q is not under the protected prefix %q", x, norm)
				continue
			}
			pr.Except = append(pr.Except, nx)
		}
	}
	return pr
}

type ruleDefaults struct {
	timeout   time.Duration
	bodyLimit int64
	mode      Mode
}

func (d *decoder) timing(m map[string]entry, field string, timeout *time.Duration, limit *int64, mode *Mode) {
	if e, ok := m["timeout"]; ok {
		if v, ok := d.duration(e, join(field, "timeout")); ok {
			if v <= 0 || v > MaxTimeout {
				d.errorf(e.line, join(field, "timeout"), "must be > 0 and <= %s", MaxTimeout)
			} else {
				*timeout = v
			}
		}
	}
	if e, ok := m["body_limit"]; ok {
		if v, ok := d.size(e, join(field, "body_limit")); ok {
			if v <= 0 || v > MaxBodyLimit {
				d.errorf(e.line, join(field, "body_limit"), "must be > 0 and <= %s", formatSize(MaxBodyLimit))
			} else {
				*limit = v
			}
		}
	}
	if e, ok := m["mode"]; ok {
		if s, ok := d.str(e, join(field, "mode")); ok {
			switch Mode(s) {
			case ModeHold, ModeInterstitial:
				*mode = Mode(s)
			default:
				d.errorf(e.line, join(field, "mode"), "must be hold or interstitial, not %q", s)
			}
		}
	}
}

var defaultContentTypes = []string{"application/x-www-form-urlencoded", "multipart/form-data", "application/json"}

func (d *decoder) rule(n ast.Node, field string, def ruleDefaults, ci bool) *Rule {
	m, line, ok := d.mapping(n, field, "name", "kind", "match", "user", "display", "not_enrolled",
		"timeout", "body_limit", "mode", "dry_run", "number_matching", "challenge", "success", "logout",
		"transaction", "service", "code_digits", "aggregate",
		"method", "instrument")
	if !ok {
		return nil
	}
	if m == nil {
		d.errorf(line, field, "empty rule")
		return nil
	}
	r := &Rule{Line: line, Timeout: def.timeout, BodyLimit: def.bodyLimit, Mode: def.mode}

	if e, ok := m["name"]; ok {
		r.Name, _ = d.str(e, field+".name")
	}
	if r.Name == "" {
		d.errorf(line, field+".name", "required")
	}

	if e, ok := m["kind"]; !ok {
		d.errorf(line, field+".kind", "required (login, transaction or logout)")
	} else if s, ok := d.str(e, field+".kind"); ok {
		switch Kind(s) {
		case KindLogin, KindTransaction, KindLogout:
			r.Kind = Kind(s)
		default:
			d.errorf(e.line, field+".kind", "must be login, transaction or logout, not %q", s)
		}
	}

	d.timing(m, field, &r.Timeout, &r.BodyLimit, &r.Mode)

	if e, ok := m["dry_run"]; ok {
		r.DryRun, _ = d.boolean(e, field+".dry_run")
	}
	d.stepUp(m, field, line, r)
	d.codeTransfer(m, field, r)
	d.method(m, field, r)

	if e, ok := m["not_enrolled"]; ok {
		if s, ok := d.str(e, field+".not_enrolled"); ok {
			switch {
			case r.Kind == KindLogout:
				d.errorf(e.line, field+".not_enrolled", "has no effect on logout rules; remove it")
			case Action(s) == ActionAllow || Action(s) == ActionDeny:
				r.NotEnrolled = Action(s)
			case Action(s) == ActionEnrol:
				d.enrolAction(e, field, line, r)
			default:
				d.errorf(e.line, field+".not_enrolled", "must be allow, deny or enrol, not %q", s)
			}
		}
	}
	if r.NotEnrolled == "" {
		switch r.Kind {
		case KindLogin:
			r.NotEnrolled = ActionAllow
		case KindTransaction:
			r.NotEnrolled = ActionDeny
		}
	}

	if e, ok := m["match"]; !ok {
		d.errorf(line, field+".match", "required")
	} else {
		d.match(e, field+".match", r, ci)
	}

	if e, ok := m["user"]; !ok {
		d.errorf(line, field+".user", "required (template, header or session: true)")
	} else {
		d.user(e, field+".user", r)
	}

	if e, ok := m["display"]; ok {
		items, _ := d.sequence(e, field+".display")
		for i, it := range items {
			df := fmt.Sprintf("%s.display[%d]", field, i)
			dm, dl, ok := d.mapping(it, df, "label", "value")
			if !ok {
				continue
			}
			var dt displayTmpl
			if le, ok := dm["label"]; ok {
				dt.label, dt.labels, _ = d.perLanguage(le, df+".label")
				for _, l := range append([]string{dt.label}, mapValues(dt.labels)...) {
					if msg := shownProblem(l); msg != "" {
						d.errorf(le.line, df+".label", "%s", msg)
						break
					}
				}
			}
			if strings.TrimSpace(dt.label) == "" {
				d.errorf(dl, df+".label", "required and must not be blank")
			}
			if ve, ok := dm["value"]; !ok {
				d.errorf(dl, df+".value", "required")
			} else if s, ok := d.str(ve, df+".value"); ok {
				t, err := compileTemplate(s)
				if err != nil {
					d.errorf(ve.line, df+".value", "%v", err)
				} else if d.checkShownTemplate(t, ve.line, df+".value") && d.checkRefs(t, ve.line, df+".value", r) {
					dt.tmpl = t
				}
			}
			if dt.tmpl != nil {
				r.display = append(r.display, dt)
			}
		}
	}

	if e, ok := m["transaction"]; ok {
		d.transaction(e, field+".transaction", r)
	}
	if e, ok := m["service"]; ok {
		r.Service = d.service(e, field+".service")
	}
	if e, ok := m["aggregate"]; ok {
		d.aggregate(e, field+".aggregate", r)
	}

	// Every body field whose value matters is watched for repetition, so the phone can
	// never show one value while the bank reads another.
	r.watched = append(r.watched, r.fields...)
	addRefs := func(t *template) {
		if t == nil {
			return
		}
		for _, s := range t.parts {
			if s.ns == nsForm && !contains(r.watched, s.name) {
				r.watched = append(r.watched, s.name)
			}
		}
	}
	addRefs(r.userTmpl)
	for _, dt := range r.display {
		addRefs(dt.tmpl)
	}
	if t := r.transaction; t != nil {
		addRefs(t.amount)
		addRefs(t.currency)
		addRefs(t.payee)
		addRefs(t.payeeName)
	}
	if r.aggregate != nil {
		r.aggregate.watch(addRefs)
	}
	r.needsBody = len(r.watched) > 0
	return r
}

func (d *decoder) match(e entry, field string, r *Rule, ci bool) {
	m, line, ok := d.mapping(e.value, field, "methods", "path", "hosts", "content_types", "fields")
	if !ok {
		return
	}
	if m == nil {
		d.errorf(line, field+".path", "exactly one of exact, prefix, regex is required")
		return
	}

	r.methods = []string{"POST"}
	if me, ok := m["methods"]; ok {
		list, _ := d.strList(me, field+".methods")
		if len(list) == 0 {
			d.errorf(me.line, field+".methods", "must list at least one method")
		}
		r.methods = r.methods[:0]
		for i, s := range list {
			u := strings.ToUpper(s)
			if !isToken(u) {
				d.errorf(me.line, fmt.Sprintf("%s.methods[%d]", field, i), "%q is not a valid HTTP method", s)
				continue
			}
			if !contains(r.methods, u) {
				r.methods = append(r.methods, u)
			}
		}
	}

	if he, ok := m["hosts"]; ok {
		list, _ := d.strList(he, field+".hosts")
		for i, s := range list {
			h, err := normalizeRuleHost(s)
			if err != nil {
				d.errorf(he.line, fmt.Sprintf("%s.hosts[%d]", field, i), "%v", err)
				continue
			}
			r.hosts = append(r.hosts, h)
		}
	}

	r.contentTypes = defaultContentTypes
	if ce, ok := m["content_types"]; ok {
		list, _ := d.strList(ce, field+".content_types")
		if len(list) == 0 {
			d.errorf(ce.line, field+".content_types", "must list at least one media type")
		}
		r.contentTypes = nil
		for i, s := range list {
			t := strings.ToLower(strings.TrimSpace(s))
			if !contains(defaultContentTypes, t) {
				d.errorf(ce.line, fmt.Sprintf("%s.content_types[%d]", field, i),
					"%q cannot be parsed; supported: %s", s, strings.Join(defaultContentTypes, ", "))
				continue
			}
			r.contentTypes = append(r.contentTypes, t)
		}
	}

	if fe, ok := m["fields"]; ok {
		list, _ := d.strList(fe, field+".fields")
		for i, s := range list {
			switch {
			case s == "":
				d.errorf(fe.line, fmt.Sprintf("%s.fields[%d]", field, i), "must not be empty")
			case contains(r.fields, s):
				d.errorf(fe.line, fmt.Sprintf("%s.fields[%d]", field, i), "%q listed twice", s)
			default:
				r.fields = append(r.fields, s)
			}
		}
	}

	pe, ok := m["path"]
	if !ok {
		d.errorf(line, field+".path", "exactly one of exact, prefix, regex is required")
		return
	}
	pm, pl, ok := d.mapping(pe.value, field+".path", "exact", "prefix", "regex")
	if !ok {
		return
	}
	if len(pm) != 1 {
		d.errorf(pl, field+".path", "exactly one of exact, prefix, regex is required")
		return
	}
	for k, v := range pm {
		pf := field + ".path." + k
		s, ok := d.str(v, pf)
		if !ok {
			return
		}
		switch k {
		case "exact", "prefix":
			if !strings.HasPrefix(s, "/") {
				d.errorf(v.line, pf, "must start with /")
				return
			}
			norm, err := NormalizePath(s, ci)
			if err != nil {
				d.errorf(v.line, pf, "%v", err)
				return
			}
			if k == "exact" {
				r.match.exact = norm
			} else {
				r.match.prefix = norm
				r.match.dir = strings.HasSuffix(s, "/")
			}
		case "regex":
			if s == "" {
				d.errorf(v.line, pf, "must not be empty")
				return
			}
			if _, err := regexp.Compile(s); err != nil {
				d.errorf(v.line, pf, "%v", err)
				return
			}
			// Anchored so that "/transfer" cannot match "/x/transfer/y" by accident;
			// (?i) because the path it sees is lower-cased in case-insensitive mode.
			src := "^(?:" + s + ")$"
			if ci {
				src = "(?i)" + src
			}
			r.match.re = regexp.MustCompile(src)
		}
	}
}

func (d *decoder) user(e entry, field string, r *Rule) {
	m, line, ok := d.mapping(e.value, field, "template", "header", "session")
	if !ok {
		return
	}
	set := 0
	if te, ok := m["template"]; ok {
		set++
		if s, ok := d.str(te, field+".template"); ok {
			t, err := compileTemplate(s)
			switch {
			case err != nil:
				d.errorf(te.line, field+".template", "%v", err)
			case !t.hasPlaceholder():
				d.errorf(te.line, field+".template", "has no placeholder, so every request would be the same user")
			default:
				r.userTmpl = t
			}
		}
	}
	if he, ok := m["header"]; ok {
		set++
		if s, ok := d.str(he, field+".header"); ok {
			if !isToken(s) {
				d.errorf(he.line, field+".header", "%q is not a valid header name", s)
			} else {
				r.userHeader = textproto.CanonicalMIMEHeaderKey(s)
			}
		}
	}
	if se, ok := m["session"]; ok {
		set++
		if b, ok := d.boolean(se, field+".session"); ok && !b {
			d.errorf(se.line, field+".session", "only session: true is meaningful; use template or header instead")
		}
		r.userSession = true
	}
	if set != 1 {
		d.errorf(line, field, "exactly one of template, header, session is required")
		return
	}
	if r.Kind == KindLogout && !r.userSession {
		d.errorf(line, field, "logout rules must use session: true")
	}
	if r.Kind == KindLogin && r.userSession {
		d.errorf(line, field+".session", "a login rule cannot take its user from the session it is about to create")
	}
}

func normalizeRuleHost(s string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	h = strings.TrimSuffix(h, ".")
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if h == "" {
		return "", errors.New("must not be empty")
	}
	if ip := net.ParseIP(h); ip != nil {
		return h, nil
	}
	if strings.ContainsAny(h, ":/ *?#@") {
		return "", fmt.Errorf("%q is not a host name (no scheme, port, path or wildcard)", s)
	}
	return h, nil
}

// isToken reports whether s is an RFC 9110 token, the syntax of methods, header and cookie names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	}
	return n.Type().String()
}

func scalarText(n ast.Node) string {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value
	case nil:
		return ""
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return n.String()
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
