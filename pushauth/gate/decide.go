package gate

import (
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
)

// Step is what the gate does with a request a rule matched.
type Step int

// The steps Decide chooses from.
const (
	// StepChallenge asks the phone; the rule's mode and challenge say how
	// (hold, interstitial, after_success).
	StepChallenge Step = iota
	// StepDryRun forwards the request and logs what the rule would do.
	StepDryRun
	// StepPasswordOnly forwards without a push: a grace period, or a rule
	// that lets users without a phone through.
	StepPasswordOnly
	// StepCheckThenEnrol lets the bank check a refused login's password;
	// an accepted one gets the enrolment form, never the bank's session.
	StepCheckThenEnrol
	// StepRefuse forwards nothing: the page of Decision.Access.
	StepRefuse
)

func (s Step) String() string {
	return [...]string{"challenge", "dry_run", "password_only", "check_then_enrol", "refuse"}[s]
}

// Decision is what the gate does with a request rule matched, by user u.
type Decision struct {
	Step Step
	// Access is what u's state allows (see pushauth.AccessFor).
	Access pushauth.Access
}

// Decide is the one place that says what a matched request of user u
// gets at now: Serve acts on it and `caddy onepush policy test` prints it.
func Decide(pol *policy.Policy, rule *policy.Rule, u *pushauth.User, now time.Time) Decision {
	a := pushauth.AccessFor(u, rule, pol.RequiresStepUp(u.Key), now)
	switch {
	case rule.DryRun:
		return Decision{StepDryRun, a}
	case a == pushauth.AccessChallenge:
		return Decision{StepChallenge, a}
	case a == pushauth.AccessPassword:
		return Decision{StepPasswordOnly, a}
	case rule.NotEnrolled == policy.ActionEnrol && (a == pushauth.AccessNotEnrolled || a == pushauth.AccessReenrol):
		// Only enrol lets the bank check the password of a refused login;
		// deny forwards nothing.
		return Decision{StepCheckThenEnrol, a}
	}
	return Decision{StepRefuse, a}
}
