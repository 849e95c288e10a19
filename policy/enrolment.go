package policy

import (
	"fmt"
	"time"
)

// Proof is what a user must show, besides the new phone's credential ID and current
// security code, before the gateway binds that phone to them. A password alone proves
// little once a phone has been bound: whoever stole it could bind their own phone
// (NIST SP 800-63B rev 4 §4.1, PSD2 RTS art. 24).
type Proof string

// The proofs a policy may ask for.
const (
	// ProofPassword: a login the bank accepted (by the rule's explicit success
	// condition) is enough. Only for users who never had a phone.
	ProofPassword Proof = "password"
	// ProofActivationCode: an activation code the bank issued out of band (a binding
	// code handed over in a branch or call, or an account-recovery code sent by post).
	ProofActivationCode Proof = "activation_code"
	// ProofSupport: only bank staff bind, through the admin API; the enrolment page
	// refuses.
	ProofSupport Proof = "support"
)

// Limits and defaults of the enrolment section.
const (
	// MaxBindingCodeValidity is rev 4's limit for a binding code (§4.1.2.2).
	MaxBindingCodeValidity = 10 * time.Minute
	// DefaultRecoveryCodeValidity covers a letter's way to the address of record.
	DefaultRecoveryCodeValidity = 14 * 24 * time.Hour
	// MaxRecoveryCodeValidity bounds how long a code in the mail stays usable.
	MaxRecoveryCodeValidity = 90 * 24 * time.Hour
)

// Enrolment says how users bind a phone.
type Enrolment struct {
	// First is how a user who never had a phone binds one: ProofPassword (default) or
	// ProofActivationCode.
	First Proof
	// Replace is how a user who has or had a phone (bound, suspended, deregistered,
	// within a grace period or not) binds another: ProofActivationCode (default) or
	// ProofSupport. The password alone never does.
	Replace Proof
	// BindingCodeValidity is how long a binding code (handed over in a session the bank
	// runs) may be used: default and at most 10 minutes.
	BindingCodeValidity time.Duration
	// RecoveryCodeValidity is how long an account-recovery code (sent by post to the
	// address of record) may be used: default 14 days, at most 90.
	RecoveryCodeValidity time.Duration
}

// DefaultEnrolment is what a policy without an enrolment section gets.
func DefaultEnrolment() Enrolment {
	return Enrolment{First: ProofPassword, Replace: ProofActivationCode,
		BindingCodeValidity: MaxBindingCodeValidity, RecoveryCodeValidity: DefaultRecoveryCodeValidity}
}

// enrolment reads `enrolment: {first, replace, binding_code_validity, recovery_code_validity}`.
func (d *decoder) enrolment(e entry) Enrolment {
	out := DefaultEnrolment()
	m, _, ok := d.mapping(e.value, "enrolment", "first", "replace", "binding_code_validity", "recovery_code_validity")
	if !ok || m == nil {
		return out
	}
	proof := func(key string, dst *Proof, allowed ...Proof) {
		pe, ok := m[key]
		if !ok {
			return
		}
		s, ok := d.str(pe, "enrolment."+key)
		if !ok {
			return
		}
		for _, a := range allowed {
			if Proof(s) == a {
				*dst = a
				return
			}
		}
		d.errorf(pe.line, "enrolment."+key, "must be %s or %s, not %q", allowed[0], allowed[1], s)
	}
	proof("first", &out.First, ProofPassword, ProofActivationCode)
	proof("replace", &out.Replace, ProofActivationCode, ProofSupport)
	validity := func(key string, dst *time.Duration, max time.Duration) {
		ve, ok := m[key]
		if !ok {
			return
		}
		v, ok := d.duration(ve, "enrolment."+key)
		if !ok {
			return
		}
		if v <= 0 || v > max {
			d.errorf(ve.line, "enrolment."+key, "must be > 0 and <= %s", fmtHours(max))
			return
		}
		*dst = v
	}
	validity("binding_code_validity", &out.BindingCodeValidity, MaxBindingCodeValidity)
	validity("recovery_code_validity", &out.RecoveryCodeValidity, MaxRecoveryCodeValidity)
	return out
}

// fmtHours writes whole days as hours, the unit a policy file can use.
func fmtHours(d time.Duration) string {
	if d >= 24*time.Hour && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// enrolAction accepts not_enrolled: enrol on a login rule that says how the bank's
// answer shows an accepted password and how to end the session it opened: the gateway
// must never guess "accepted" (a bank may set its cookie on a failed login too) nor hand
// the browser a session of a user it refuses.
func (d *decoder) enrolAction(e entry, field string, line int, r *Rule) {
	if r.Kind != KindLogin {
		d.errorf(e.line, field+".not_enrolled", "enrol is for login rules only")
		return
	}
	if r.Success == nil {
		d.errorf(line, field+".success", "required with not_enrolled: enrol (the bank's answer must show the password was right)")
	}
	if r.Logout == nil {
		d.errorf(line, field+".logout", "required with not_enrolled: enrol (the bank's session is ended before the enrolment form is offered)")
	}
	r.NotEnrolled = ActionEnrol
}
