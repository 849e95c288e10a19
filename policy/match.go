package policy

import (
	"net/http"
	"strings"
)

// Match returns the rule the gateway must apply to r, or nil when r may go straight to
// the bank. Rules are tried in file order on method, host, normalised path and content
// type; the first full match wins.
//
// Fail-closed exceptions the caller must handle:
//   - when method, host and path match some rule but no rule also matches the content
//     type (a login post sent as text/plain or without Content-Type, a GET /logout), the
//     first such rule is returned anyway: a legacy server might still act on the request,
//     so it must not pass unchallenged. Extract then refuses it if it needs a body it cannot
//     parse, and works if the rule needs no body fields (e.g. logout);
//   - when the path cannot be normalised, Unnormalizable is returned (answer 400).
//
// Match does not allocate for requests whose method no rule lists, nor for any request
// whose path is already in normal form and matches no rule.
func (p *Policy) Match(r *http.Request) *Rule {
	if !containsFold(p.methods, r.Method) {
		return nil
	}
	host := requestHost(r)
	var (
		path   string
		normed bool
		loose  *Rule
	)
	for _, rule := range p.Rules {
		if !containsFold(rule.methods, r.Method) {
			continue
		}
		if len(rule.hosts) > 0 && !hostListed(rule.hosts, host) {
			continue
		}
		if !normed {
			if r.URL == nil || r.URL.Opaque != "" {
				return Unnormalizable
			}
			var err error
			path, err = NormalizePath(r.URL.EscapedPath(), p.Paths.CaseInsensitive)
			if err != nil {
				return Unnormalizable
			}
			normed = true
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
	return loose
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
