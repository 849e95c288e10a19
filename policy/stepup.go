package policy

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ChallengeTime is when a login rule asks the phone.
type ChallengeTime string

// The challenge values. after_success checks the password first, as the
// bank's FAQ does, so knowing a user ID is not enough to make a phone ring.
const (
	ChallengeBeforeForward ChallengeTime = "before_forward"
	ChallengeAfterSuccess  ChallengeTime = "after_success"
)

// SuccessCondition recognises a successful login from the bank's response;
// every condition set must hold.
type SuccessCondition struct {
	// Status lists acceptable status codes (e.g. 302, 303); empty: any.
	Status []int
	// SetCookie names a cookie the response must set with a non-empty value.
	SetCookie string
	// LocationPrefix is what the Location header must start with.
	LocationPrefix string
}

// Matches reports whether a response with status and header is a success.
func (c *SuccessCondition) Matches(status int, h http.Header) bool {
	if len(c.Status) > 0 {
		ok := false
		for _, s := range c.Status {
			ok = ok || s == status
		}
		if !ok {
			return false
		}
	}
	if c.LocationPrefix != "" && !strings.HasPrefix(h.Get("Location"), c.LocationPrefix) {
		return false
	}
	if c.SetCookie != "" && SetCookieValue(h, c.SetCookie) == "" {
		return false
	}
	return true
}

// SetCookieValue is the value a response with header h leaves the browser
// holding for cookie name: that of its last Set-Cookie of name, "" when
// it sets none or clears it (an empty value, Max-Age=0 or negative, or an
// Expires in the past, which is how many frameworks delete a cookie:
// "name=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT").
func SetCookieValue(h http.Header, name string) string {
	if name == "" {
		return ""
	}
	v, now := "", time.Now()
	for _, line := range h.Values("Set-Cookie") {
		ck, err := http.ParseSetCookie(line)
		if err != nil || ck.Name != name {
			continue
		}
		v = ck.Value
		if ck.MaxAge < 0 || (!ck.Expires.IsZero() && !ck.Expires.After(now)) {
			v = ""
		}
	}
	return v
}

// LogoutCall is the bank's own logout request, sent with the session the
// gateway refuses to let stand.
type LogoutCall struct {
	Method string
	Path   string
}

func (d *decoder) stepUp(m map[string]entry, field string, line int, r *Rule) {
	r.Challenge = ChallengeBeforeForward
	if e, ok := m["challenge"]; ok {
		if s, ok := d.str(e, field+".challenge"); ok {
			switch ChallengeTime(s) {
			case ChallengeBeforeForward, ChallengeAfterSuccess:
				r.Challenge = ChallengeTime(s)
			default:
				d.errorf(e.line, field+".challenge", "must be before_forward or after_success, not %q", s)
			}
			if r.Challenge == ChallengeAfterSuccess && r.Kind != KindLogin {
				d.errorf(e.line, field+".challenge", "after_success is for login rules only")
			}
		}
	}
	if e, ok := m["success"]; ok {
		sm, sl, ok := d.mapping(e.value, field+".success", "status", "set_cookie", "location_prefix")
		if ok {
			c := &SuccessCondition{}
			if se, ok := sm["status"]; ok {
				list, _ := d.strList(se, field+".success.status")
				for _, v := range list {
					n, err := strconv.Atoi(v)
					if err != nil || n < 100 || n > 599 {
						d.errorf(se.line, field+".success.status", "%q is not an HTTP status code", v)
						continue
					}
					c.Status = append(c.Status, n)
				}
			}
			if se, ok := sm["set_cookie"]; ok {
				c.SetCookie, _ = d.str(se, field+".success.set_cookie")
			}
			if se, ok := sm["location_prefix"]; ok {
				c.LocationPrefix, _ = d.str(se, field+".success.location_prefix")
			}
			if len(c.Status) == 0 && c.SetCookie == "" && c.LocationPrefix == "" {
				d.errorf(sl, field+".success", "needs at least one of status, set_cookie, location_prefix")
			}
			r.Success = c
		}
	}
	if e, ok := m["logout"]; ok {
		lm, ll, ok := d.mapping(e.value, field+".logout", "method", "path")
		if ok {
			c := &LogoutCall{Method: http.MethodGet}
			if le, ok := lm["method"]; ok {
				if s, ok := d.str(le, field+".logout.method"); ok {
					c.Method = strings.ToUpper(s)
				}
			}
			if le, ok := lm["path"]; ok {
				c.Path, _ = d.str(le, field+".logout.path")
			}
			if !strings.HasPrefix(c.Path, "/") {
				d.errorf(ll, field+".logout.path", "required and must start with /")
			}
			r.Logout = c
		}
	}
	if r.Challenge == ChallengeAfterSuccess {
		if r.Success == nil {
			d.errorf(line, field+".success", "required with challenge: after_success")
		}
		if r.Logout == nil {
			d.errorf(line, field+".logout", "required with challenge: after_success (the bank's session must be ended on denial)")
		}
	}
}
