package policy

import "fmt"

// Warning is something a policy allows that its authors should know the
// cost of; `policy lint` prints each, and Caddy logs each at start.
type Warning struct {
	Line    int    // 1-based line in the policy file
	Field   string // e.g. rules[0].success
	Message string
	// Error marks what `policy lint` refuses (exit 1) while Caddy still
	// starts with it and logs it: a keyword being retired.
	Error bool
}

func (w Warning) String() string { return fmt.Sprintf("line %d: %s: %s", w.Line, w.Field, w.Message) }

// Warnings lists what the policy allows at a cost: a code transfer under
// 6 digits, and:
//
// A login rule without `success:` on a policy that learns the bank's
// session: the gateway cannot tell an accepted password from a refused
// one, so it learns only a session the bank newly sets at login, never the
// session the login was posted on. A bank that keeps its session ID at
// login then has every transfer refused after a login, and a login that
// fails on a session forgets it (a refusal would be stricter, but would
// stop policies of banks that rotate their ID and work today).
func (p *Policy) Warnings() []Warning {
	var out []Warning
	for i, r := range p.Rules {
		out = append(out, codeTransferWarnings(i, r)...)
		out = append(out, passkeyWarnings(i, r)...)
		if r.Kind == KindLogin && r.Success == nil && p.Session.Cookie != "" {
			out = append(out, Warning{Line: r.Line, Field: fmt.Sprintf("rules[%d].success", i),
				Message: fmt.Sprintf("login rule %q has no success condition: the gateway learns only a session the bank newly sets at login, never the one the login was posted on (a bank that keeps its session ID at login gets every transfer refused); declare how the bank shows an accepted password", r.Name)})
		}
	}
	return out
}
