package policy

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"
)

const (
	nsLiteral = iota
	nsForm
	nsHeader
)

type tmplPart struct {
	ns   int
	text string // literal text
	name string // field or canonical header name
}

// template is compiled once at load so that a malformed template fails the policy,
// not a customer's transfer.
type template struct {
	src   string
	parts []tmplPart
}

func compileTemplate(s string) (*template, error) {
	t := &template{src: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, tmplPart{ns: nsLiteral, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '{':
			if i+1 < len(s) && s[i+1] == '{' {
				lit.WriteByte('{')
				i++
				continue
			}
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return nil, fmt.Errorf("unclosed { at offset %d (write {{ for a literal brace)", i)
			}
			ph := s[i+1 : i+1+end]
			ns, name, ok := strings.Cut(ph, ".")
			if !ok || name == "" {
				return nil, fmt.Errorf("placeholder {%s} must be {form.NAME} or {header.NAME}", ph)
			}
			if strings.ContainsAny(name, "{") {
				return nil, fmt.Errorf("placeholder {%s} contains {", ph)
			}
			part := tmplPart{name: name}
			switch ns {
			case "form":
				part.ns = nsForm
			case "header":
				if !isToken(name) {
					return nil, fmt.Errorf("placeholder {%s}: %q is not a valid header name", ph, name)
				}
				part.ns = nsHeader
				part.name = textproto.CanonicalMIMEHeaderKey(name)
			default:
				return nil, fmt.Errorf("placeholder {%s}: unknown namespace %q (use form or header)", ph, ns)
			}
			flush()
			t.parts = append(t.parts, part)
			i += end + 1
		case '}':
			if i+1 < len(s) && s[i+1] == '}' {
				lit.WriteByte('}')
				i++
				continue
			}
			return nil, errors.New("unmatched } (write }} for a literal brace)")
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return t, nil
}

func (t *template) hasPlaceholder() bool {
	for _, p := range t.parts {
		if p.ns != nsLiteral {
			return true
		}
	}
	return false
}

// String returns the placeholder as written in the policy file.
func (p tmplPart) String() string {
	switch p.ns {
	case nsForm:
		return "{form." + p.name + "}"
	case nsHeader:
		return "{header." + p.name + "}"
	}
	return p.text
}

// String returns the template as written in the policy file.
func (t *template) String() string { return t.src }
