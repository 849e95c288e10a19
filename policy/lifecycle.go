package policy

import (
	"fmt"
	"regexp"
	"time"
)

// MaxDeregistrationGrace bounds deregistration_grace: a grace period is a
// transition, not a way to switch push off.
const MaxDeregistrationGrace = 365 * 24 * time.Hour

// StepUpRequired marks the users who may not fall back to password-only
// login once a grace period after deregistration or suspension has ended:
// in the bank's words, the users with approval authority.
type StepUpRequired struct {
	// Users lists user keys exactly as the rules extract them.
	Users []string
	// Pattern, when set, marks every user key it matches (anchored).
	Pattern *regexp.Regexp
}

// RequiresStepUp reports whether the policy marks userKey as needing step-up
// (push or security code) after a grace period.
func (p *Policy) RequiresStepUp(userKey string) bool {
	s := p.StepUp
	if s == nil || userKey == "" {
		return false
	}
	if contains(s.Users, userKey) {
		return true
	}
	return s.Pattern != nil && s.Pattern.MatchString(userKey)
}

// stepUpRequired reads `step_up_required: {users: [...], pattern: <regex>}`.
func (d *decoder) stepUpRequired(e entry) *StepUpRequired {
	m, line, ok := d.mapping(e.value, "step_up_required", "users", "pattern")
	if !ok || m == nil {
		return nil
	}
	s := &StepUpRequired{}
	if ue, ok := m["users"]; ok {
		list, _ := d.strList(ue, "step_up_required.users")
		for i, u := range list {
			f := fmt.Sprintf("step_up_required.users[%d]", i)
			switch {
			case u == "":
				d.errorf(ue.line, f, "must not be empty")
			case contains(s.Users, u):
				d.errorf(ue.line, f, "%q listed twice", u)
			default:
				s.Users = append(s.Users, u)
			}
		}
	}
	if pe, ok := m["pattern"]; ok {
		if src, ok := d.str(pe, "step_up_required.pattern"); ok {
			if src == "" {
				d.errorf(pe.line, "step_up_required.pattern", "must not be empty")
			} else if _, err := regexp.Compile(src); err != nil {
				d.errorf(pe.line, "step_up_required.pattern", "%v", err)
			} else {
				// Anchored: a pattern for "1001/.*" must not mark "x1001/y".
				s.Pattern = regexp.MustCompile("^(?:" + src + ")$")
			}
		}
	}
	_, hasUsers := m["users"]
	_, hasPattern := m["pattern"]
	if !hasUsers && !hasPattern {
		d.errorf(line, "step_up_required", "needs users or pattern")
	}
	if len(s.Users) == 0 && s.Pattern == nil {
		return nil
	}
	return s
}

// deregistrationGrace reads `deregistration_grace: 72h`.
func (d *decoder) deregistrationGrace(e entry) time.Duration {
	v, ok := d.duration(e, "deregistration_grace")
	if !ok {
		return 0
	}
	if v <= 0 || v > MaxDeregistrationGrace {
		d.errorf(e.line, "deregistration_grace", "must be > 0 and <= %s", MaxDeregistrationGrace)
		return 0
	}
	return v
}
