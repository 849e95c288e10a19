package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// maxParts bounds the work one multipart body can cause beyond its byte limit.
const maxParts = 1000

// Extract parses the buffered body once, by the request's content type, and returns the
// identity, display and typed transaction fields. Every error wraps ErrBadRequest: the gateway answers 400
// and forwards nothing, because a request the gateway reads differently from the bank
// could show the phone one amount and execute another.
//
// Watched fields (those listed in match.fields or used by a template) are ambiguous, and
// refused, when they appear twice in the body, appear in the URL query too, or appear in
// a case variant (ASP.NET and some JSON binders ignore case). Fields listed in
// match.fields and every field or header a template uses must be present. What the phone
// shows (display and transaction values) must also be non-empty, valid UTF-8 without
// control, format or separator characters, and at most MaxShownLength characters; an
// amount must be plain ASCII digits. Values are rendered exactly as decoded, never
// trimmed.
// The body is not parsed at all when the rule uses no body field.
func (r *Rule) Extract(req *http.Request, body []byte) (*Extraction, error) {
	if r.Kind == KindRefuse {
		return nil, fmt.Errorf("%w: path cannot be normalised", ErrBadRequest)
	}
	x := &Extraction{}
	var vals *formValues
	if r.needsBody || r.aggregate != nil {
		var err error
		if r.queryFields {
			vals, err = r.parseQueryAndBody(req, body)
		} else if err = r.checkQuery(req); err == nil {
			vals, err = r.parseBody(req, body, nil)
		}
		if err != nil {
			return nil, err
		}
		for _, f := range r.fields {
			if _, ok := vals.get(f); !ok {
				return nil, fmt.Errorf("%w: required field %q missing", ErrBadRequest, f)
			}
			if !vals.usable(f) {
				return nil, fmt.Errorf("%w: field %q is not a string or number", ErrBadRequest, f)
			}
		}
	}

	switch {
	case r.userTmpl != nil:
		key, err := r.userTmpl.render(vals, req.Header, false)
		if err != nil {
			return nil, err
		}
		if key == "" {
			return nil, fmt.Errorf("%w: user key is empty", ErrBadRequest)
		}
		x.UserKey = key
	case r.userHeader != "":
		v := req.Header.Values(r.userHeader)
		if len(v) > 1 {
			return nil, fmt.Errorf("%w: header %q repeated", ErrBadRequest, r.userHeader)
		}
		if len(v) == 0 || v[0] == "" {
			return nil, fmt.Errorf("%w: user key is empty (header %q)", ErrBadRequest, r.userHeader)
		}
		x.UserKey = v[0]
	}

	// Every rule reads the session cookie: transactions and logouts are attributed by it,
	// and a login or a stored request is bound to the session it was started in.
	if r.cookie != "" {
		cs := req.CookiesNamed(r.cookie)
		// Two session cookies could make the gateway ask one user while the bank acts
		// for another (cookie tossing from a sibling domain), so that is ambiguous too.
		if len(cs) > 1 {
			return nil, fmt.Errorf("%w: cookie %q repeated", ErrBadRequest, r.cookie)
		}
		if len(cs) == 1 {
			x.SessionID = cs[0].Value
		}
	}

	if len(r.display) > 0 {
		x.Display = make([]Field, 0, len(r.display))
		for _, d := range r.display {
			v, err := d.tmpl.renderShown(vals, req.Header, "display", d.label)
			if err != nil {
				return nil, err
			}
			x.Display = append(x.Display, Field{Label: d.label, Value: v, Labels: d.labels})
		}
	}
	if r.transaction != nil {
		tx, err := r.transaction.render(vals, req.Header)
		if err != nil {
			return nil, err
		}
		x.Transaction = tx
	}
	if r.aggregate != nil {
		var err error
		if x.Aggregate, x.Lookup, err = r.aggregate.extract(vals); err != nil {
			return nil, err
		}
		if x.Lookup != nil {
			if x.lookupFormat, err = r.aggregate.formatOf(vals); err != nil {
				return nil, err
			}
		}
	}
	x.Host = shownHost(requestHost(req))
	return x, nil
}

// formValues holds the values of the rule's watched fields only.
type formValues struct {
	names []string
	vals  []string
	has   []bool
	count []int
	types []bool // true when the value is usable text (JSON objects, arrays, bools and null are not)

	// The batch of an aggregate rule (aggregate.go): the repeated columns of a
	// many-row form, and the uploaded file.
	cols      []string
	colVals   [][]string
	fileField string
	file      []byte
	hasFile   bool
}

func newFormValues(names []string) *formValues {
	n := len(names)
	return &formValues{names: names, vals: make([]string, n), has: make([]bool, n), count: make([]int, n), types: make([]bool, n)}
}

// add records one occurrence of key; usable is false for JSON values that are not fields.
func (f *formValues) add(key, value string, usable bool) error {
	for i, n := range f.cols {
		if !strings.EqualFold(n, key) {
			continue
		}
		if n != key || !usable {
			return fmt.Errorf("%w: column %q sent as %q or not as text", ErrBadRequest, n, key)
		}
		f.colVals[i] = append(f.colVals[i], value)
		return nil
	}
	if f.fileField != "" && strings.EqualFold(f.fileField, key) {
		return fmt.Errorf("%w: file field %q sent as a plain field", ErrBadRequest, f.fileField)
	}
	for i, n := range f.names {
		if !strings.EqualFold(n, key) {
			continue
		}
		f.count[i]++
		if f.count[i] > 1 {
			return fmt.Errorf("%w: field %q repeated", ErrBadRequest, n)
		}
		if n == key {
			f.vals[i], f.has[i], f.types[i] = value, true, usable
		}
	}
	return nil
}

func (f *formValues) get(name string) (string, bool) {
	if f == nil {
		return "", false
	}
	for i, n := range f.names {
		if n == name {
			return f.vals[i], f.has[i]
		}
	}
	return "", false
}

func (f *formValues) usable(name string) bool {
	for i, n := range f.names {
		if n == name {
			return !f.has[i] || f.types[i]
		}
	}
	return true
}

// checkQuery refuses a watched field that also appears in the URL query, because many
// servers merge query and body parameters and either could win.
func (r *Rule) checkQuery(req *http.Request) error {
	if req.URL == nil || req.URL.RawQuery == "" {
		return nil
	}
	for _, pair := range strings.FieldsFunc(req.URL.RawQuery, func(c rune) bool { return c == '&' || c == ';' }) {
		k, _, _ := strings.Cut(pair, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if a := r.aggregate; a != nil && (a.file != "" && strings.EqualFold(a.file, k) || containsFold(a.columns[:], k)) {
			return fmt.Errorf("%w: batch field %q in the URL query", ErrBadRequest, k)
		}
		for _, w := range r.watched {
			if strings.EqualFold(w, k) {
				return fmt.Errorf("%w: field %q repeated in the URL query", ErrBadRequest, w)
			}
		}
	}
	return nil
}

// parseQueryAndBody reads watched fields from the URL query and the body into one set,
// for banks that read both (app.fields_in_query): a field in both places is repeated,
// hence refused. A request without body and without Content-Type is read from the query
// alone.
func (r *Rule) parseQueryAndBody(req *http.Request, body []byte) (*formValues, error) {
	vals := r.newValues()
	if req.URL != nil && req.URL.RawQuery != "" {
		// The query is parsed like a form body, semicolons included (refused).
		if err := parseURLEncoded([]byte(req.URL.RawQuery), vals); err != nil {
			return nil, fmt.Errorf("URL query: %w", err)
		}
	}
	if len(body) == 0 && len(req.Header.Values("Content-Type")) == 0 {
		return vals, nil
	}
	return r.parseBody(req, body, vals)
}

// parseBody parses body into vals (a new set when nil).
func (r *Rule) parseBody(req *http.Request, body []byte, vals *formValues) (*formValues, error) {
	cts := req.Header.Values("Content-Type")
	if len(cts) != 1 {
		if len(cts) == 0 {
			return nil, fmt.Errorf("%w: no content type", ErrBadRequest)
		}
		return nil, fmt.Errorf("%w: content type repeated", ErrBadRequest)
	}
	mt, params, err := mime.ParseMediaType(cts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: content type: %v", ErrBadRequest, err)
	}
	if !contains(r.contentTypes, mt) {
		return nil, fmt.Errorf("%w: unsupported content type %q", ErrBadRequest, mt)
	}
	if vals == nil {
		vals = r.newValues()
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		err = parseURLEncoded(body, vals)
	case "multipart/form-data":
		err = parseMultipart(body, params["boundary"], vals)
	case "application/json":
		err = parseJSON(body, vals)
	default:
		err = fmt.Errorf("%w: unsupported content type %q", ErrBadRequest, mt)
	}
	if err != nil {
		return nil, err
	}
	return vals, nil
}

func parseURLEncoded(body []byte, vals *formValues) error {
	// Browsers always encode ";" in form bodies; a raw one is a separator to some legacy
	// parsers (Perl CGI, old PHP) and not to others, so it is refused as ambiguous.
	if bytes.IndexByte(body, ';') >= 0 {
		return fmt.Errorf("%w: semicolon in form body", ErrBadRequest)
	}
	for _, pair := range strings.Split(string(body), "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return fmt.Errorf("%w: form body: %v", ErrBadRequest, err)
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return fmt.Errorf("%w: form body: %v", ErrBadRequest, err)
		}
		if err := vals.add(dk, dv, true); err != nil {
			return err
		}
	}
	return nil
}

func parseMultipart(body []byte, boundary string, vals *formValues) error {
	if boundary == "" {
		return fmt.Errorf("%w: multipart body without boundary", ErrBadRequest)
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for n := 0; ; n++ {
		if n >= maxParts {
			return fmt.Errorf("%w: more than %d multipart parts", ErrBadRequest, maxParts)
		}
		// NextRawPart, not NextPart: the bank sees quoted-printable bytes undecoded, so
		// the gateway must not decode them either; such parts are refused below.
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: multipart body: %v", ErrBadRequest, err)
		}
		cds := part.Header.Values("Content-Disposition")
		if len(cds) == 0 {
			continue
		}
		if len(cds) > 1 {
			return fmt.Errorf("%w: multipart part with two Content-Disposition headers", ErrBadRequest)
		}
		// A disposition Go cannot parse might still name a field for the bank.
		disp, dparams, err := mime.ParseMediaType(cds[0])
		if err != nil {
			return fmt.Errorf("%w: multipart Content-Disposition: %v", ErrBadRequest, err)
		}
		name := dparams["name"]
		if disp != "form-data" || name == "" {
			continue
		}
		if cte := strings.ToLower(strings.TrimSpace(part.Header.Get("Content-Transfer-Encoding"))); cte != "" && cte != "7bit" && cte != "8bit" && cte != "binary" {
			return fmt.Errorf("%w: multipart part %q uses transfer encoding %q", ErrBadRequest, name, cte)
		}
		data, err := io.ReadAll(io.LimitReader(part, int64(len(body))+1))
		if err != nil {
			return fmt.Errorf("%w: multipart body: %v", ErrBadRequest, err)
		}
		if _, isFile := dparams["filename"]; isFile && vals.fileField != "" && strings.EqualFold(vals.fileField, name) {
			if name != vals.fileField || vals.hasFile {
				return fmt.Errorf("%w: file field %q repeated or sent as %q", ErrBadRequest, vals.fileField, name)
			}
			vals.file, vals.hasFile = data, true
			continue
		}
		if _, isFile := dparams["filename"]; isFile {
			// File parts are not fields, but one named like a watched field is read as the
			// field by some servers and ignored by others.
			for _, w := range vals.names {
				if strings.EqualFold(w, name) {
					return fmt.Errorf("%w: field %q sent as a file", ErrBadRequest, w)
				}
			}
			continue
		}
		if err := vals.add(name, string(data), true); err != nil {
			return err
		}
	}
}

func parseJSON(body []byte, vals *formValues) error {
	// encoding/json would silently replace invalid UTF-8 with U+FFFD, showing the phone
	// something other than what the bank parses.
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: JSON body is not valid UTF-8", ErrBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	bad := func(err error) error { return fmt.Errorf("%w: JSON body: %v", ErrBadRequest, err) }
	tok, err := dec.Token()
	if err != nil {
		return bad(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%w: JSON body is not an object", ErrBadRequest)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%w: JSON body: object key is not a string", ErrBadRequest)
		}
		tok, err = dec.Token()
		if err != nil {
			return bad(err)
		}
		switch v := tok.(type) {
		case string:
			err = vals.add(key, v, true)
		case json.Number:
			err = vals.add(key, v.String(), true)
		case json.Delim:
			// Nested values are not fields, but are counted so a repeat is still caught.
			if err = vals.add(key, "", false); err == nil {
				err = skipJSON(dec)
				if err != nil {
					return bad(err)
				}
			}
		default: // bool, nil
			err = vals.add(key, "", false)
		}
		if err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return bad(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: JSON body has data after the object", ErrBadRequest)
	}
	return nil
}

// skipJSON consumes the rest of an array or object whose opening delimiter was just read.
func skipJSON(dec *json.Decoder) error {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}

var errMissing = errors.New("missing")

// render fills the template. Every field and header it uses must be present, and
// headers must not be repeated. With shown, each must also be non-empty: a value the
// phone shows as empty is one the user cannot check.
func (t *template) render(vals *formValues, h http.Header, shown bool) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		var v string
		switch p.ns {
		case nsLiteral:
			b.WriteString(p.text)
			continue
		case nsForm:
			var ok bool
			v, ok = vals.get(p.name)
			if !ok {
				return "", fmt.Errorf("%w: required field %q %v", ErrBadRequest, p.name, errMissing)
			}
			if !vals.usable(p.name) {
				return "", fmt.Errorf("%w: field %q is not a string or number", ErrBadRequest, p.name)
			}
		case nsHeader:
			hv := h.Values(p.name)
			if len(hv) > 1 {
				return "", fmt.Errorf("%w: header %q repeated", ErrBadRequest, p.name)
			}
			if len(hv) == 0 {
				return "", fmt.Errorf("%w: header %q %v", ErrBadRequest, p.name, errMissing)
			}
			v = hv[0]
		}
		if shown && v == "" {
			return "", fmt.Errorf("%w: %s of the phone's display is empty", ErrBadRequest, p)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// renderShown renders a value the phone shows (what and label name it in errors) and
// refuses one the phone could not show as the bank reads it (see shownProblem).
func (t *template) renderShown(vals *formValues, h http.Header, what, label string) (string, error) {
	v, err := t.render(vals, h, true)
	if err != nil {
		return "", err
	}
	if msg := shownProblem(v); msg != "" {
		if label != "" {
			return "", fmt.Errorf("%w: %s %q %s", ErrBadRequest, what, label, msg)
		}
		return "", fmt.Errorf("%w: %s %s", ErrBadRequest, what, msg)
	}
	return v, nil
}
