package policy_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/onepush/onepush/policy"
)

// schemaFile is the policy file's JSON Schema, for editors and CI.
const schemaFile = "../docs/policy.schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("policy.schema.json", loadSchemaJSON(t)); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("policy.schema.json")
	if err != nil {
		t.Fatalf("%s does not compile: %v", schemaFile, err)
	}
	return sch
}

// schemaCheck validates a policy file's YAML as an editor with the schema
// would: converted to JSON by a YAML library, then validated.
func schemaCheck(sch *jsonschema.Schema, data []byte) error {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("YAML: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return fmt.Errorf("JSON: %w", err)
	}
	return sch.Validate(inst)
}

// schemaExceptions are the testdata files the parser refuses and the
// schema accepts, each with what a JSON Schema cannot express. Nothing may
// go the other way: the schema never refuses a file the parser accepts.
var schemaExceptions = map[string]string{
	"testdata/invalid/placeholder.yaml": "a placeholder must name a field the rule extracts (match.fields or the user template): a relation between two values' text",
	"testdata/invalid/alias.yaml":       "YAML aliases are refused by the parser; a schema validates the document after the YAML library has expanded them",
}

// TestSchemaAgreesWithParser: every example and testdata file is accepted
// by both the schema and the parser, or refused by both.
func TestSchemaAgreesWithParser(t *testing.T) {
	sch := compileSchema(t)
	var files []string
	for _, g := range []string{"../examples/policy/*.yaml", "testdata/*.yaml", "testdata/invalid/*.yaml"} {
		m, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 7 {
		t.Fatalf("only %d policy files found: %v", len(files), files)
	}
	used := map[string]bool{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, perr := policy.Parse(file, data)
		serr := schemaCheck(sch, data)
		wantValid := !strings.Contains(file, "invalid")
		if (perr == nil) != wantValid {
			t.Errorf("%s: parser: %v; a file under invalid/ must be refused, any other accepted", file, perr)
		}
		if (perr == nil) == (serr == nil) {
			continue
		}
		if reason, ok := schemaExceptions[file]; ok && perr != nil {
			used[file] = true
			t.Logf("%s: the parser refuses, the schema cannot: %s", file, reason)
			continue
		}
		t.Errorf("%s: the parser says %v but the schema says %v", file, orOK(perr), orOK(serr))
	}
	for f := range schemaExceptions {
		if !used[f] {
			t.Errorf("schemaExceptions lists %s, where schema and parser agree (or which is gone): remove it", f)
		}
	}
}

func orOK(err error) string {
	if err == nil {
		return "OK"
	}
	return err.Error()
}

// TestSchemaRefusesMisspeltFields: a typo in a field name is what an
// editor with the schema underlines, as lint refuses it.
func TestSchemaRefusesMisspeltFields(t *testing.T) {
	sch := compileSchema(t)
	base, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := schemaCheck(sch, base); err != nil {
		t.Fatalf("testdata/full.yaml: %v", err)
	}
	for _, tt := range []struct{ from, to, typo string }{
		{"    not_enrolled: allow", "    not_enroled: allow", "not_enroled"},
		{"content_types:", "content_type:", "content_type"},
		{"defaults: {timeout:", "defaults: {timout:", "timout"},
		{"enrolment:", "enrollment:", "enrollment"},
		{"{status: [303]", "{statuses: [303]", "statuses"},
		{"      payee_name:", "      payeename:", "payeename"},
		{"session: {cookie:", "session: {cookies:", "cookies"},
		{"path: {exact: /login}", "path: {exakt: /login}", "exakt"},
	} {
		t.Run(tt.typo, func(t *testing.T) {
			if !bytes.Contains(base, []byte(tt.from)) {
				t.Fatalf("testdata/full.yaml lacks %q", tt.from)
			}
			data := bytes.Replace(base, []byte(tt.from), []byte(tt.to), 1)
			typo := tt.typo
			err := schemaCheck(sch, data)
			if err == nil || !strings.Contains(err.Error(), typo) {
				t.Errorf("schema: %v; want a refusal naming %q", err, typo)
			}
			if _, err := policy.Parse("typo.yaml", data); err == nil || !strings.Contains(err.Error(), typo+": unknown field") {
				t.Errorf("parser: %v; want a refusal naming %q", err, typo)
			}
		})
	}
}

// probeKey is a field no policy will ever have.
const probeKey = "zz_schema_probe"

// freeFormMaps are the places (as schemaPath spells them) where a policy
// file's keys are data, not field names (a map keyed by language, say): the
// parser has no field list there to compare, so the probe skips them. Each
// with why.
var freeFormMaps = map[string]string{}

// TestSchemaFieldsMatchParser asks the parser itself which fields it
// accepts at each mapping of testdata/full.yaml (it names them when it
// refuses an unknown one) and compares them with the schema's properties
// there, so a field added to the parser or the schema alone fails here,
// named.
func TestSchemaFieldsMatchParser(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		t.Fatal(err)
	}
	root := loadSchemaJSON(t)
	probed := map[string]bool{}
	reported := map[string]bool{}
	errorf := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if !reported[msg] {
			reported[msg] = true
			t.Error(msg)
		}
	}
	walkMaps(tree, nil, func(loc []any, m map[string]any) {
		field := fieldPath(loc)
		where := schemaPath(loc)
		probed[where] = true
		if _, ok := freeFormMaps[where]; ok {
			return
		}
		allowed, err := parserFields(tree, loc)
		if err != nil {
			errorf("%s: %v", orRoot(field), err)
			return
		}
		node := resolveAt(t, root, loc)
		if node == nil {
			errorf("the schema has nothing at %s (%s), where the parser accepts %s", where, orRoot(field), strings.Join(allowed, ", "))
			return
		}
		if ap, ok := node["additionalProperties"]; !ok || ap != false {
			errorf("schema at %s: additionalProperties must be false: the parser refuses unknown fields there", where)
		}
		props, _ := node["properties"].(map[string]any)
		for _, f := range allowed {
			if _, ok := props[f]; !ok {
				errorf("docs/policy.schema.json lacks %s.%s, which the parser accepts: add %q to the properties at %s", where, f, f, where)
			}
		}
		for f := range props {
			if !contains(allowed, f) {
				errorf("docs/policy.schema.json has %s.%s, which the parser refuses (it accepts %s): remove it or teach the parser", where, f, strings.Join(allowed, ", "))
			}
		}
	})
	// Every object the schema describes must be in full.yaml, or the
	// fields inside it would never be compared.
	var objects []string
	schemaObjects(root, root, "", map[string]bool{}, &objects)
	for _, o := range objects {
		if !probed[o] {
			t.Errorf("the schema describes an object at %s that testdata/full.yaml lacks: add one there so its fields are compared with the parser's", o)
		}
	}
}

func orRoot(s string) string {
	if s == "" {
		return "the top level"
	}
	return s
}

// parserFields adds probeKey to the mapping at loc, parses the result and
// returns the field list of the parser's "unknown field (allowed: …)".
func parserFields(tree any, loc []any) ([]string, error) {
	cp := deepCopy(tree)
	m := at(cp, loc).(map[string]any)
	m[probeKey] = true
	data, err := yaml.Marshal(cp)
	if err != nil {
		return nil, err
	}
	_, perr := policy.Parse("probe.yaml", data)
	want := fieldPath(append(append([]any{}, loc...), probeKey))
	var pes []*policy.Error
	if j, ok := perr.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			var pe *policy.Error
			if errors.As(e, &pe) {
				pes = append(pes, pe)
			}
		}
	} else {
		var pe *policy.Error
		if errors.As(perr, &pe) {
			pes = append(pes, pe)
		}
	}
	for _, pe := range pes {
		if pe.Field != want {
			continue
		}
		list, ok := strings.CutPrefix(pe.Msg, "unknown field (allowed: ")
		if !ok {
			return nil, fmt.Errorf("the parser refused %s with %q, not as an unknown field: if the keys there are data (languages, say), list %s in freeFormMaps with why", want, pe.Msg, schemaPath(loc))
		}
		return strings.Split(strings.TrimSuffix(list, ")"), ", "), nil
	}
	return nil, fmt.Errorf("the parser did not refuse the unknown field %s (errors: %v): if its keys are data (languages, say), list %s in freeFormMaps with why", want, perr, schemaPath(loc))
}

func walkMaps(v any, loc []any, fn func([]any, map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(loc, x)
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walkMaps(x[k], append(append([]any{}, loc...), k), fn)
		}
	case []any:
		for i, y := range x {
			walkMaps(y, append(append([]any{}, loc...), i), fn)
		}
	}
}

func at(v any, loc []any) any {
	for _, l := range loc {
		switch k := l.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, y := range x {
			m[k] = deepCopy(y)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, y := range x {
			s[i] = deepCopy(y)
		}
		return s
	}
	return v
}

// fieldPath spells loc as the parser's messages do: rules[0].match.path.
func fieldPath(loc []any) string {
	var b strings.Builder
	for _, l := range loc {
		switch k := l.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return b.String()
}

// schemaPath spells loc without indexes, as the schema sees it: rules[].match.
func schemaPath(loc []any) string {
	var b strings.Builder
	b.WriteString("#")
	for _, l := range loc {
		switch k := l.(type) {
		case string:
			b.WriteString("." + k)
		case int:
			b.WriteString("[]")
		}
	}
	return b.String()
}

func loadSchemaJSON(t *testing.T) map[string]any {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemaFile, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is not a JSON object", schemaFile)
	}
	return m
}

// deref follows a local $ref ("#/$defs/x").
func deref(root, node map[string]any) map[string]any {
	for i := 0; node != nil && i < 10; i++ {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		node = nil
		if name, ok := strings.CutPrefix(ref, "#/$defs/"); ok {
			defs, _ := root["$defs"].(map[string]any)
			node, _ = defs[name].(map[string]any)
		}
	}
	return node
}

// resolveAt finds the schema node that describes the value at loc.
func resolveAt(t *testing.T, root map[string]any, loc []any) map[string]any {
	node := deref(root, root)
	for _, l := range loc {
		if node == nil {
			return nil
		}
		switch k := l.(type) {
		case string:
			props, _ := node["properties"].(map[string]any)
			next, _ := props[k].(map[string]any)
			node = deref(root, next)
		case int:
			next, _ := node["items"].(map[string]any)
			node = deref(root, next)
		}
	}
	return node
}

// schemaObjects lists the paths of the objects with properties that the
// schema describes, as schemaPath spells them.
func schemaObjects(root, node map[string]any, where string, seen map[string]bool, out *[]string) {
	node = deref(root, node)
	if node == nil || seen[where] {
		return
	}
	seen[where] = true
	if props, ok := node["properties"].(map[string]any); ok {
		*out = append(*out, "#"+where)
		for k, v := range props {
			if sub, ok := v.(map[string]any); ok {
				schemaObjects(root, sub, where+"."+k, seen, out)
			}
		}
	}
	if items, ok := node["items"].(map[string]any); ok {
		schemaObjects(root, items, where+"[]", seen, out)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
