package policy

import "fmt"

// Method is how an enrolled user approves a rule's request: on the phone
// (push, the default), with a passkey in the browser, or with a passkey
// where she has registered one and on the phone otherwise.
type Method string

// The method values. A passkey assertion is bound to the origin the
// browser saw and to the challenge context, so a look-alike site relaying
// the page gets nothing it can use: the only phishing-resistant option
// (SP 800-63B rev 4 §2.2.2, the JSDA guideline of 2025).
const (
	MethodPush          Method = "push"
	MethodPasskey       Method = "passkey"
	MethodPasskeyOrPush Method = "passkey_or_push"
)

// AssurancePhishingResistant is a rule whose users approve with a passkey
// (WebAuthn; Secure Payment Confirmation for transactions).
const (
	AssurancePhishingResistant       Assurance = "phishing-resistant (passkey)"
	AssurancePhishingResistantOrPush Assurance = "phishing-resistant (passkey) where the user has one, else "
)

// UsesPasskey reports whether r's users may approve with a passkey.
func (r *Rule) UsesPasskey() bool {
	return r.Method == MethodPasskey || r.Method == MethodPasskeyOrPush
}

// Instrument is what Secure Payment Confirmation shows as the means of
// payment in the browser's own dialog, beside payee and amount.
type Instrument struct {
	// Name is the instrument's display name; default the rule's service.
	Name string
	// Icon is the URL of its icon; default the gateway's own, served
	// under its passkey path.
	Icon string
}

// passkeyWarnings: a login rule with method passkey refuses every user
// without a passkey, who then cannot log in to register one.
func passkeyWarnings(i int, r *Rule) []Warning {
	if r.Kind != KindLogin || r.Method != MethodPasskey {
		return nil
	}
	return []Warning{{Line: r.Line, Field: fmt.Sprintf("rules[%d].method", i),
		Message: fmt.Sprintf("login rule %q asks every enrolled user for a passkey: those without one cannot log in, so cannot register one either; use passkey_or_push until all have one", r.Name)}}
}

// method reads a rule's method and instrument. A passkey needs a page to
// ask for it on: the rule must wait on one (mode: interstitial).
func (d *decoder) method(m map[string]entry, field string, r *Rule) {
	r.Method = MethodPush
	if e, ok := m["method"]; ok {
		if s, ok := d.str(e, field+".method"); ok {
			switch Method(s) {
			case MethodPush, MethodPasskey, MethodPasskeyOrPush:
				r.Method = Method(s)
			default:
				d.errorf(e.line, field+".method", "must be push, passkey or passkey_or_push, not %q", s)
				return
			}
			if r.UsesPasskey() && r.Mode != ModeInterstitial {
				d.errorf(e.line, field+".method", "%s needs mode: interstitial (the browser is asked for the passkey on the waiting page; a held request has none)", s)
			}
			if r.UsesPasskey() && r.Kind == KindLogout {
				d.errorf(e.line, field+".method", "has no effect on logout rules; remove it")
			}
		}
	}
	if e, ok := m["instrument"]; ok {
		im, _, ok := d.mapping(e.value, field+".instrument", "name", "icon")
		if !ok {
			return
		}
		r.Instrument = &Instrument{}
		if ne, ok := im["name"]; ok {
			r.Instrument.Name, _ = d.str(ne, field+".instrument.name")
		}
		if ie, ok := im["icon"]; ok {
			r.Instrument.Icon, _ = d.str(ie, field+".instrument.icon")
		}
		if r.Kind != KindTransaction || !r.UsesPasskey() {
			d.errorf(e.line, field+".instrument", "only transaction rules with method passkey or passkey_or_push show an instrument (Secure Payment Confirmation)")
		}
	}
}
