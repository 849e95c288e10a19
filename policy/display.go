package policy

import (
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Languages are the languages a display label or an amount format may be given in: those
// of the gateway's pages (ja, en). The phone shows the one it speaks.
var Languages = []string{"ja", "en"}

// Formatting is presentation only: labels and amount formats change what people read,
// never what is signed, coded (OCRA) or summed, which stay the raw Transaction values.

// perLanguage reads a text given once for every language (`label: Amount`) or per
// language (`label: {ja: 金額, en: Amount}`). def is the text for a language not given
// (English when given, else the first given); by is nil for a plain string.
func (d *decoder) perLanguage(e entry, field string) (def string, by map[string]string, ok bool) {
	n, ok := d.unwrap(e.value, field)
	if !ok {
		return "", nil, false
	}
	if !isMapping(n) {
		s, ok := d.str(e, field)
		return s, nil, ok
	}
	m, line, ok := d.mapping(n, field, Languages...)
	if !ok {
		return "", nil, false
	}
	if len(m) == 0 {
		d.errorf(line, field, "names no language (allowed: %s)", strings.Join(Languages, ", "))
		return "", nil, false
	}
	by = make(map[string]string, len(m))
	for _, lang := range Languages {
		le, given := m[lang]
		if !given {
			continue
		}
		s, ok := d.str(le, field+"."+lang)
		if !ok {
			return "", nil, false
		}
		if strings.TrimSpace(s) == "" {
			d.errorf(le.line, field+"."+lang, "must not be blank")
			return "", nil, false
		}
		by[lang] = s
	}
	def = by["en"]
	if def == "" {
		def = by[Languages[0]]
	}
	return def, by, true
}

// amountFormat reads a transaction's `amount_format`: a pattern per language (or one for
// all) in which {amount} is the amount grouped by thousands and {currency} its ISO 4217
// code, e.g. {ja: "{amount}円", en: "¥{amount}"}.
func (d *decoder) amountFormat(e entry, field string) map[string]string {
	def, by, ok := d.perLanguage(e, field)
	if !ok {
		return nil
	}
	if by == nil {
		by = map[string]string{}
		for _, lang := range Languages {
			by[lang] = def
		}
	}
	for _, lang := range Languages {
		p, given := by[lang]
		if !given {
			continue
		}
		f := field
		if def != p || len(by) < len(Languages) {
			f = field + "." + lang
		}
		if !strings.Contains(p, "{amount}") {
			d.errorf(e.line, f, `%q does not show the amount: write {amount} where it goes, e.g. "{amount}円"`, p)
			return nil
		}
		rest := strings.NewReplacer("{amount}", "", "{currency}", "").Replace(p)
		if strings.ContainsAny(rest, "{}") {
			d.errorf(e.line, f, "%q: only {amount} and {currency} can be filled in", p)
			return nil
		}
		if msg := shownProblem(rest); msg != "" {
			d.errorf(e.line, f, "%s", msg)
			return nil
		}
	}
	return by
}

// formatAmount writes tx's amount in each language of formats.
func formatAmount(formats map[string]string, tx *Transaction) map[string]string {
	if len(formats) == 0 {
		return nil
	}
	out := make(map[string]string, len(formats))
	r := strings.NewReplacer("{amount}", GroupThousands(tx.Amount), "{currency}", tx.Currency)
	for lang, p := range formats {
		out[lang] = r.Replace(p)
	}
	return out
}

// GroupThousands writes ASCII digits grouped by thousands (1500000 → 1,500,000), the
// grouping of both page languages.
func GroupThousands(digits string) string {
	var b strings.Builder
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// In returns the text of f's label in lang: its own for that language, else Label.
func (f Field) In(lang string) string {
	if s, ok := f.Labels[lang]; ok {
		return s
	}
	return f.Label
}

// Language picks the language of Languages that an Accept-Language header
// names first ("ja-JP,ja;q=0.9" → ja), English when it names neither.
func Language(acceptLanguage string) string {
	for _, part := range strings.Split(acceptLanguage, ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch {
		case strings.HasPrefix(tag, "ja"):
			return "ja"
		case strings.HasPrefix(tag, "en"):
			return "en"
		}
	}
	return "en"
}

// isMapping reports whether n (unwrapped) is a YAML mapping.
func isMapping(n ast.Node) bool {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return true
	}
	return false
}

// mapValues lists m's values in the order of Languages.
func mapValues(m map[string]string) []string {
	var out []string
	for _, lang := range Languages {
		if v, ok := m[lang]; ok {
			out = append(out, v)
		}
	}
	return out
}
