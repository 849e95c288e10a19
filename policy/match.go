package policy

import (
	"net/http"
	"net/url"
	"strings"
)

// Match returns the rule the gateway must apply to r, or nil when r may go straight to
// the bank. Rules are tried in file order on method, host, normalised path and content
// type; the first full match wins.
//
// A method-override value (the X-HTTP-Method-Override, X-HTTP-Method or X-Method-Override
// header, in any case and with "_" for "-", or _method in the URL query) counts as well
// as the real method, because frameworks that honour it would execute a GET or PUT as the
// POST a rule covers. Override values that disagree return AmbiguousMethod (answer 400).
//
// Fail-closed exceptions the caller must handle:
//   - when method, host and path match some rule but no rule also matches the content
//     type (a login post sent as text/plain or without Content-Type, a GET /logout), the
//     first such rule is returned anyway: a legacy server might still act on the request,
//     so it must not pass unchallenged. Extract then refuses it if it needs a body it cannot
//     parse, and works if the rule needs no body fields (e.g. logout);
//   - when the path cannot be normalised, Unnormalizable is returned (answer 400);
//   - when no rule matches but the request carries a body under the protected prefix,
//     Unprotected is returned (answer 403).
//
// Match does not allocate for requests whose method no rule lists and that carry no body
// (or when no prefix is protected), nor for any request whose path is already in normal
// form and matches no rule.
func (p *Policy) Match(r *http.Request) *Rule {
	alt, ambiguous := methodOverride(r)
	if ambiguous {
		return AmbiguousMethod
	}
	guarded := p.Protected != nil && carriesBody(r, alt)
	if !guarded && !containsFold(p.methods, r.Method) && (alt == "" || !containsFold(p.methods, alt)) {
		return nil
	}
	host := requestHost(r)
	var (
		path   string
		normed bool
		loose  *Rule
	)
	norm := func() bool {
		if normed {
			return true
		}
		if r.URL == nil || r.URL.Opaque != "" {
			return false
		}
		var err error
		path, err = NormalizePath(r.URL.EscapedPath(), p.Paths.CaseInsensitive)
		normed = err == nil
		return normed
	}
	for _, rule := range p.Rules {
		if !containsFold(rule.methods, r.Method) && (alt == "" || !containsFold(rule.methods, alt)) {
			continue
		}
		if len(rule.hosts) > 0 && !hostListed(rule.hosts, host) {
			continue
		}
		if !norm() {
			return Unnormalizable
		}
		if !rule.match.matches(path) {
			continue
		}
		if rule.contentTypeOK(r.Header) {
			return rule
		}
		if loose == nil {
			loose = rule
		}
	}
	if loose != nil || !guarded {
		return loose
	}
	if !norm() {
		return Unnormalizable
	}
	if underPrefix(path, p.Protected.Prefix) && !contains(p.Protected.Except, path) {
		return Unprotected
	}
	return nil
}

// underPrefix reports whether normalised path is prefix or below it.
func underPrefix(path, prefix string) bool {
	return prefix == "/" || path == prefix || (strings.HasPrefix(path, prefix) && path[len(prefix)] == '/')
}

// carriesBody reports whether r could change something at the bank: it has a body, or
// its method (or override) is not one of the safe ones.
func carriesBody(r *http.Request, alt string) bool {
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return true
	}
	return !safeMethod(r.Method) || (alt != "" && !safeMethod(alt))
}

func safeMethod(m string) bool {
	return strings.EqualFold(m, http.MethodGet) || strings.EqualFold(m, http.MethodHead) ||
		strings.EqualFold(m, http.MethodOptions) || strings.EqualFold(m, "TRACE")
}

// overrideHeaders are the headers frameworks read to replace the request method, in
// canonical form; headerIs also accepts "_" for "-" (CGI maps both to one variable).
var overrideHeaders = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// methodOverride returns the method the request asks to be treated as, and whether the
// override values disagree. It does not allocate unless the query holds "_method".
func methodOverride(r *http.Request) (alt string, ambiguous bool) {
	note := func(v string) {
		v = strings.TrimSpace(v)
		switch {
		case v == "":
		case alt == "":
			alt = v
		case !strings.EqualFold(alt, v):
			ambiguous = true
		}
	}
	for k, vs := range r.Header {
		if len(k) < len("X-Http-Method") || (k[0] != 'X' && k[0] != 'x') {
			continue
		}
		for _, h := range overrideHeaders {
			if headerIs(k, h) {
				for _, v := range vs {
					note(v)
				}
			}
		}
	}
	if r.URL != nil && containsFoldASCII(r.URL.RawQuery, "_method") {
		for _, pair := range strings.FieldsFunc(r.URL.RawQuery, func(c rune) bool { return c == '&' || c == ';' }) {
			k, v, _ := strings.Cut(pair, "=")
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
			if !strings.EqualFold(strings.TrimSpace(k), "_method") {
				continue
			}
			dv, err := url.QueryUnescape(v)
			if err != nil {
				return alt, true // a value the gateway cannot read could be any method
			}
			note(dv)
		}
	}
	return alt, ambiguous
}

// headerIs compares header names ignoring case and treating "_" as "-".
func headerIs(k, canon string) bool {
	if len(k) != len(canon) {
		return false
	}
	for i := 0; i < len(k); i++ {
		a, b := k[i], canon[i]
		if a == '_' {
			a = '-'
		}
		if a != b && lowerASCII(a) != lowerASCII(b) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// containsFoldASCII reports whether s contains sub ignoring ASCII case, or an escape
// (%5f, %6d …) that could decode to it, without allocating.
func containsFoldASCII(s, sub string) bool {
	if strings.IndexByte(s, '%') >= 0 {
		return true // let the decoding loop decide
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for j < len(sub) && lowerASCII(s[i+j]) == sub[j] {
			j++
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

func (m *pathMatcher) matches(path string) bool {
	switch {
	case m.re != nil:
		return m.re.MatchString(path)
	case m.prefix != "":
		if m.dir {
			return m.prefix == "/" || path == m.prefix ||
				(strings.HasPrefix(path, m.prefix) && path[len(m.prefix)] == '/')
		}
		return strings.HasPrefix(path, m.prefix)
	default:
		return path == m.exact
	}
}

func (r *Rule) contentTypeOK(h http.Header) bool {
	v := h["Content-Type"]
	if len(v) != 1 {
		return false
	}
	mt := mediaType(v[0])
	for _, ct := range r.contentTypes {
		if strings.EqualFold(ct, mt) {
			return true
		}
	}
	return false
}

// mediaType returns the type/subtype of a Content-Type value without parameters,
// without allocating.
func mediaType(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// requestHost returns the request's host without port, brackets or trailing dot, so a
// port or a trailing dot cannot make a host-limited rule miss.
func requestHost(r *http.Request) string {
	h := r.Host
	if h == "" && r.URL != nil {
		h = r.URL.Host
	}
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

func hostListed(hosts []string, host string) bool {
	for _, h := range hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// containsFold compares methods case-insensitively: methods are case-sensitive in HTTP,
// but some legacy servers treat "post" as POST, and over-matching only costs a challenge.
func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
