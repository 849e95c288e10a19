package policy

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// errPath is the common cause of every NormalizePath failure, so callers can tell
// "refuse this request" apart from other errors with errors.Is.
var errPath = errors.New("path cannot be normalised")

// NormalizePath maps a request's escaped path to the one form that rules are compared with,
// so that spellings a legacy server would treat as the same resource (/login/../login,
// /log%69n, //login, /login;jsessionid=x, \login, /LOGIN on IIS) cannot slip past a rule.
//
// It is deliberately stricter than most servers: invalid percent escapes, control bytes
// (raw or encoded, NUL included), invalid UTF-8, double encoding (a decoded "%" followed by
// two hex digits, e.g. %252e) and paths not starting with "/" are errors, and the gateway
// refuses such requests rather than guess how the bank would read them.
//
// A decoded %2F or %5C is a separator and a decoded ";" starts parameters, as in many legacy
// servers. A literal "%" that survives decoding is written back as "%25" so the result is a
// fixed point: NormalizePath(out) == out. The result never contains "//", "/./", "/../", ";"
// or "\", and never ends in "/" unless it is "/".
//
// Already-clean paths are returned as they are, without allocating.
func NormalizePath(p string, caseInsensitive bool) (string, error) {
	if isCleanPath(p, caseInsensitive) {
		return p, nil
	}
	return normalizeSlow(p, caseInsensitive)
}

// isCleanPath is the allocation-free fast path: true only when normalising could not change p.
func isCleanPath(p string, ci bool) bool {
	n := len(p)
	if n == 0 || p[0] != '/' || (n > 1 && p[n-1] == '/') {
		return false
	}
	for i := 0; i < n; i++ {
		c := p[i]
		switch {
		case c < 0x20 || c >= 0x7f:
			return false
		case c == '%' || c == ';' || c == '\\':
			return false
		case c == '/':
			if i+1 < n && (p[i+1] == '/' || p[i+1] == '.') {
				return false
			}
		case ci && 'A' <= c && c <= 'Z':
			return false
		}
	}
	return true
}

type pathError struct{ msg string }

func (e *pathError) Error() string { return "path cannot be normalised: " + e.msg }
func (e *pathError) Unwrap() error { return errPath }

func normalizeSlow(p string, ci bool) (string, error) {
	if p == "" {
		return "/", nil
	}
	if p[0] != '/' && p[0] != '\\' {
		return "", &pathError{"does not start with /"}
	}
	segs := make([]string, 0, 8)
	for rest := p; ; {
		i := strings.IndexAny(rest, `/\`)
		var raw string
		if i < 0 {
			raw = rest
		} else {
			raw = rest[:i]
		}
		var params string
		if j := strings.IndexByte(raw, ';'); j >= 0 {
			raw, params = raw[:j], raw[j:]
		}
		if params != "" {
			// Parameters are dropped, but still checked: a bad escape or control byte
			// anywhere in the path means the request is not one a browser would send.
			if _, err := percentDecode(params); err != nil {
				return "", err
			}
		}
		dec, err := percentDecode(raw)
		if err != nil {
			return "", err
		}
		if !utf8.ValidString(dec) {
			return "", &pathError{"invalid UTF-8"}
		}
		if hasDoubleEncoding(dec) {
			return "", &pathError{"double percent-encoding"}
		}
		// The decoded segment may itself hold separators and parameters.
		for {
			k := strings.IndexAny(dec, `/\`)
			sub := dec
			if k >= 0 {
				sub = dec[:k]
			}
			if j := strings.IndexByte(sub, ';'); j >= 0 {
				sub = sub[:j]
			}
			switch sub {
			case "", ".":
			case "..":
				if len(segs) > 0 {
					segs = segs[:len(segs)-1]
				}
			default:
				segs = append(segs, sub)
			}
			if k < 0 {
				break
			}
			dec = dec[k+1:]
		}
		if i < 0 {
			break
		}
		rest = rest[i+1:]
	}
	if len(segs) == 0 {
		return "/", nil
	}
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		for k := 0; k < len(s); k++ {
			if s[k] == '%' {
				b.WriteString("%25")
			} else {
				b.WriteByte(s[k])
			}
		}
	}
	out := b.String()
	if ci {
		out = strings.ToLower(out)
	}
	return out, nil
}

// percentDecode decodes %XX escapes (not "+", which means space only in forms) and rejects
// malformed escapes and control bytes, raw or decoded.
func percentDecode(s string) (string, error) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return "", &pathError{"truncated percent escape"}
			}
			if !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", &pathError{"invalid percent escape"}
			}
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
			n++
		}
		if c < 0x20 || c == 0x7f {
			return "", &pathError{"control byte"}
		}
	}
	if n == 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s)-2*n)
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b), nil
}

func hasDoubleEncoding(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' && isHex(s[i+1]) && isHex(s[i+2]) {
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
