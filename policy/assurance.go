package policy

import "fmt"

// Assurance is what an approval under a rule proves, in the words of NIST
// SP 800-63B rev 4 (§3.1.3 out-of-band authenticators): `policy lint`
// prints it for each login and transaction rule.
type Assurance string

// The assurances. Tapping Approve, or comparing or picking a number, is
// no longer accepted by rev 4; a secret of at least 6 digits must be
// transferred from the browser to the phone. A passkey (phishing-resistant)
// will be the next value.
const (
	AssuranceApproveOnly  Assurance = "approve-only (not AAL2 under SP 800-63B rev 4)"
	AssuranceCodeTransfer Assurance = "code transfer"
	AssuranceShortCode    Assurance = "code transfer (under 6 digits: below SP 800-63B rev 4)"
)

// Code transfer: the waiting page of an interstitial rule shows a fresh
// random code of CodeDigits digits that the user types into the app.
const (
	// DefaultCodeDigits is the length of the code when code_digits is not
	// set, and the least SP 800-63B rev 4 §3.1.3 accepts.
	DefaultCodeDigits = 6
	// MinCodeDigits and MaxCodeDigits bound code_digits: fewer than 4 is
	// a number to pick rather than a secret, more than 10 is not typed
	// without mistakes.
	MinCodeDigits = 4
	MaxCodeDigits = 10
)

// Assurance is what an enrolled user's approval under r proves; "" for
// logout rules, which approve nothing.
func (r *Rule) Assurance() Assurance {
	switch {
	case r.Kind != KindLogin && r.Kind != KindTransaction:
		return ""
	case r.Method == MethodPasskey:
		return AssurancePhishingResistant
	case r.Method == MethodPasskeyOrPush:
		return AssurancePhishingResistantOrPush + r.pushAssurance()
	}
	return r.pushAssurance()
}

// pushAssurance is what an approval on the phone under r proves.
func (r *Rule) pushAssurance() Assurance {
	switch {
	case r.CodeDigits == 0:
		return AssuranceApproveOnly
	case r.CodeDigits < DefaultCodeDigits:
		return AssuranceShortCode
	}
	return AssuranceCodeTransfer
}

// numberMatchingMessage is why number_matching is refused.
var numberMatchingMessage = fmt.Sprintf("replaced by code transfer: remove it; the waiting page of an interstitial rule shows a %d-digit code (code_digits) that the user types into the app, since comparing or picking a number is not accepted under SP 800-63B rev 4 §3.1.3", DefaultCodeDigits)

// codeTransfer reads code_digits: a rule that waits on a page
// (interstitial) transfers a code of 6 digits unless code_digits says
// otherwise; a held request has no page to show one on, so hold rules are
// approve-only. number_matching, which code transfer replaces, is an
// error: the gateway no longer shows a number, and a rule that asked for
// one must not silently become something else.
func (d *decoder) codeTransfer(m map[string]entry, field string, r *Rule) {
	if e, ok := m["number_matching"]; ok {
		d.errorf(e.line, field+".number_matching", "%s", numberMatchingMessage)
		return
	}
	e, set := m["code_digits"]
	switch {
	case set && r.Mode != ModeInterstitial:
		d.errorf(e.line, field+".code_digits", "needs mode: interstitial (the code is shown on the waiting page; a held request has none)")
		return
	case set:
		n, ok := d.integer(e, field+".code_digits")
		if ok && (n < MinCodeDigits || n > MaxCodeDigits) {
			d.errorf(e.line, field+".code_digits", "must be %d to %d, not %d (%d is what SP 800-63B rev 4 asks for)", MinCodeDigits, MaxCodeDigits, n, DefaultCodeDigits)
			return
		}
		r.CodeDigits, r.codeDigitsLine = n, e.line
	case r.Mode == ModeInterstitial && r.Kind != KindLogout:
		r.CodeDigits = DefaultCodeDigits
	}
}

// integer reads a whole number.
func (d *decoder) integer(e entry, field string) (int, bool) {
	s, ok := d.str(e, field)
	if !ok {
		return 0, false
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s {
		d.errorf(e.line, field, "must be a whole number, not %q", s)
		return 0, false
	}
	return n, true
}

// codeTransferWarnings are the costs of rule i's code transfer settings:
// a code under 6 digits is allowed, below the standard.
func codeTransferWarnings(i int, r *Rule) []Warning {
	var out []Warning
	if r.CodeDigits > 0 && r.CodeDigits < DefaultCodeDigits {
		out = append(out, Warning{Line: r.codeDigitsLine, Field: fmt.Sprintf("rules[%d].code_digits", i),
			Message: fmt.Sprintf("rule %q transfers a %d-digit code: SP 800-63B rev 4 §3.1.3 asks for at least %d", r.Name, r.CodeDigits, DefaultCodeDigits)})
	}
	return out
}
