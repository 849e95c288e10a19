package policy

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"
)

// Kind says what an approved request means to the gateway, which decides what it learns
// (login), what it protects (transaction) and what it forgets (logout).
type Kind string

// The rule kinds a policy file may use, plus KindRefuse, which only Unnormalizable has.
const (
	KindLogin       Kind = "login"
	KindTransaction Kind = "transaction"
	KindLogout      Kind = "logout"
	// KindRefuse marks a request the gateway must answer with 400 and never forward,
	// because its path cannot be read unambiguously. No policy file can declare it.
	KindRefuse Kind = "refuse"
)

// Action is what a user without an enrolled phone gets, because banks roll push out
// gradually and must choose between availability (allow) and safety (deny) per operation.
type Action string

// The not_enrolled values. deny forwards nothing. enrol (login rules only) refuses as
// deny does, but first lets the bank check the password: when the bank's answer meets
// the rule's success condition, the bank's session is logged out and the browser gets
// the enrolment form instead.
const (
	ActionAllow Action = "allow"
	ActionDeny  Action = "deny"
	ActionEnrol Action = "enrol"
)

// Mode is how a request waits for the phone, because some legacy pages cannot tolerate a
// request that hangs for a minute and need a waiting page instead.
type Mode string

// The mode values.
const (
	ModeHold         Mode = "hold"
	ModeInterstitial Mode = "interstitial"
)

// Defaults and limits applied by Parse; exported so the CLI and docs quote the same numbers.
const (
	DefaultTimeout    = 2 * time.Minute
	MaxTimeout        = 10 * time.Minute
	DefaultBodyLimit  = 64 << 10
	MaxBodyLimit      = 10 << 20
	DefaultSessionTTL = 30 * time.Minute
)

// ErrBadRequest is wrapped by every Extract error: the request is ambiguous or unreadable
// for its rule, and the gateway must answer 400 and forward nothing (fail closed).
var ErrBadRequest = errors.New("bad request")

// Policy is a compiled policy file; it is immutable after Parse and safe for concurrent use.
type Policy struct {
	// Version is the file format version; only 1 exists.
	Version int
	// Session describes the bank's own session, which lets later requests be attributed
	// to the user who approved the login.
	Session SessionConfig
	// Paths holds options for comparing request paths with rule paths.
	Paths PathOptions
	// App declares quirks of the bank application that change how a request is read.
	App AppQuirks
	// Protected, when set, refuses requests under a path prefix that carry a body (or use a
	// method other than GET, HEAD, OPTIONS, TRACE) but match no rule: the variants of a
	// protected operation that nobody wrote a rule for. Nil: no such refusal.
	Protected *Protected
	// StepUp marks the users (approval authority) who are refused, and told to enrol
	// again, once the grace period after deregistration or suspension has ended. Nil: none.
	StepUp *StepUpRequired
	// DeregistrationGrace is how long a deregistered or uninstalled user may still log in
	// with the password only; 0: not set here (the gateway's uninstall_grace applies).
	DeregistrationGrace time.Duration
	// Enrolment says what binding a phone takes; DefaultEnrolment when the file has no
	// enrolment section.
	Enrolment Enrolment
	// Service names the bank service the policy protects (インターネットバンキング,
	// 外為), shown on the phone and recorded in the audit; a rule may name its own.
	Service string
	// Rules are tried in file order; the first that matches wins.
	Rules []*Rule

	methods []string // union of all rules' methods, for the cheap first check
}

// SessionConfig names the bank's session cookie so the gateway can learn which user a
// session belongs to at login and attribute later transactions to that user.
type SessionConfig struct {
	// Cookie is the bank's session cookie name; required when any rule uses the session
	// (user: {session: true}, or kind logout). Without it no session is learned at login.
	Cookie string
	// TTL bounds how long a learned session -> user mapping is trusted; default 30m.
	TTL time.Duration
}

// PathOptions tune path comparison to the bank's server.
type PathOptions struct {
	// CaseInsensitive makes /LOGIN match a /login rule, for IIS and other Windows servers
	// that serve both; otherwise a case variant would reach the bank unchallenged.
	CaseInsensitive bool
}

// AppQuirks are the bank application's ways of reading requests that the gateway must
// mirror, or a request the gateway reads one way could be executed another way.
type AppQuirks struct {
	// FieldsInQuery says the bank also reads form fields from the URL query (PHP
	// $_REQUEST, ASP.NET Request["x"], servlet getParameter): rule fields are then taken
	// from the query as well as the body, and a field present in both is refused as
	// ambiguous. Without it a rule field in the query is always refused.
	FieldsInQuery bool
}

// Protected is a path prefix whose unknown variants are refused with 403.
type Protected struct {
	// Prefix is the normalised path prefix ("/" protects everything); it matches the
	// prefix itself and everything below it.
	Prefix string
	// Except lists normalised exact paths under Prefix that may carry bodies without a
	// rule (a search form, a feedback post).
	Except []string
}

// Rule is one compiled rule of a policy file.
type Rule struct {
	// Name identifies the rule in logs, audit records and the phone's context.
	Name string
	// Kind is login, transaction or logout (KindRefuse only for Unnormalizable).
	Kind Kind
	// Mode is how the request waits; ModeHold by default.
	Mode Mode
	// Timeout is how long the phone has to answer; default 2m, at most 10m.
	Timeout time.Duration
	// BodyLimit is the most body bytes the gateway buffers for this rule; larger bodies
	// get 413 and are never forwarded unbuffered. Default 64 KiB, at most 10 MiB.
	BodyLimit int64
	// NotEnrolled is what a user without a bound phone gets; default allow for login and
	// deny for transaction; empty for logout, where it has no meaning.
	NotEnrolled Action
	// DryRun asks the gateway to record what it would have done and forward the request
	// without holding it, so a new rule can be tried on live traffic first.
	DryRun bool
	// CodeDigits is the length of the code the waiting page shows and the user
	// types into the app (code transfer): DefaultCodeDigits for interstitial
	// rules unless code_digits says otherwise, 0 for approve-only rules.
	CodeDigits int
	// Challenge is when a login rule challenges: before_forward (default) or
	// after_success, when the bank has accepted the password.
	Challenge ChallengeTime
	// Success recognises an accepted login in the bank's response (after_success).
	Success *SuccessCondition
	// Logout is how the gateway ends a bank session it must not let stand
	// (after_success logins that are denied or time out).
	Logout *LogoutCall
	// Service names the bank service the rule protects (国内振込, 外為): the rule's own
	// `service:` or else the policy's. Shown on the phone and recorded in the audit.
	Service string
	// Line is the rule's line in the policy file, for messages.
	Line int

	// Method is how an enrolled user approves: push (default), passkey or
	// passkey_or_push (see passkey.go).
	Method Method
	// Instrument is what Secure Payment Confirmation shows as the means of
	// payment (transaction rules with a passkey method); nil: the defaults.
	Instrument *Instrument

	codeDigitsLine int // line of code_digits, 0 when absent

	methods      []string // upper case
	hosts        []string // lower case, no port, no brackets, no trailing dot
	contentTypes []string // lower-case media types
	match        pathMatcher

	fields      []string // required body fields, in policy order
	watched     []string // every body field whose value matters: fields + template refs
	userTmpl    *template
	userHeader  string // canonical header name
	userSession bool
	display     []displayTmpl
	transaction *transactionTmpl // typed transaction fields; nil when the rule has none
	aggregate   *aggregateTmpl   // the batch a rule reads (aggregate.go); nil when none
	needsBody   bool
	cookie      string // Policy.Session.Cookie, copied so Extract needs no back pointer
	queryFields bool   // Policy.App.FieldsInQuery, copied likewise
}

type displayTmpl struct {
	label  string
	labels map[string]string // per language; nil when the label is one string
	tmpl   *template
}

type pathMatcher struct {
	exact  string
	prefix string
	dir    bool // prefix ended in "/": match the directory itself and everything below it
	re     *regexp.Regexp
}

// Unnormalizable is what Match returns for a request whose path NormalizePath rejects
// (bad escapes, control bytes, invalid UTF-8, double encoding): such a request could reach
// a protected page by a spelling no rule anticipates, so the gateway must answer 400 and
// forward nothing. Compare by pointer (rule == policy.Unnormalizable) or by Kind.
// It is returned only when the method and host could belong to some rule.
var Unnormalizable = &Rule{Name: "unnormalizable-path", Kind: KindRefuse}

// AmbiguousMethod is what Match returns for a request carrying method-override values
// (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, _method in the query) that
// disagree with each other: the bank could act on either, so the gateway answers 400.
var AmbiguousMethod = &Rule{Name: "ambiguous-method-override", Kind: KindRefuse}

// Unprotected is what Match returns for a request under the policy's protected prefix
// that carries a body but matches no rule (see Protected): the gateway answers 403 and
// forwards nothing.
var Unprotected = &Rule{Name: "protected-unknown-variant", Kind: KindRefuse}

// Field is one line the phone shows, in policy order, so the user sees what the bank will
// execute (amount, payee) before approving. Labels holds the label per language when the
// policy gives it so (`label: {ja: 契約番号, en: Contract}`); Label is the one shown in a
// language not given (see In).
type Field struct {
	Label, Value string
	Labels       map[string]string
}

// Extraction is what Extract finds in a matched request.
type Extraction struct {
	// UserKey identifies the user from the user template or header; "" when the rule
	// takes the user from the learned session.
	UserKey string
	// SessionID is the value of the bank's session cookie (Policy.Session.Cookie); ""
	// if the request carries none or the policy names no cookie.
	SessionID string
	// Display holds the rendered display fields, in policy order.
	Display []Field
	// Transaction holds the typed transaction fields when the rule declares them.
	Transaction *Transaction
	// Host is the request's host (lower case, no port), or "" when it is not a plain host
	// name or address.
	Host string
	// Aggregate is the batch the request moves (every row, count, exact total) when the
	// rule declares aggregate: with a file or columns; nil otherwise.
	Aggregate *Aggregate
	// Lookup is the request the gateway must make to the bank to read the batch when the
	// rule's aggregate names a lookup (AggregateLookup parses its answer); nil otherwise.
	Lookup *Lookup

	lookupFormat string // the format of the lookup's answer
}

// Error is one problem in a policy file; Parse joins all of them with errors.Join so a
// security team sees every mistake in one run.
type Error struct {
	File  string // the name given to Parse, or the path given to Load
	Line  int    // 1-based line in File
	Field string // path to the offending field, e.g. rules[1].match.path; "" for the whole file
	Msg   string // what is wrong and, where it helps, how to fix it
}

// Error formats as "file:line: field: message", the shape editors and CI annotations parse.
func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// Load reads and compiles the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(path, data)
}

// UsesSession reports whether the rule takes its user from the session learned at login,
// in which case the gateway must refuse the request when no learned session matches.
func (r *Rule) UsesSession() bool { return r.userSession }

// Fields returns the body fields the rule requires, so tools can show or test them.
func (r *Rule) Fields() []string { return append([]string(nil), r.fields...) }

// Methods returns the HTTP methods the rule matches, upper case.
func (r *Rule) Methods() []string { return append([]string(nil), r.methods...) }

// Hosts returns the hosts the rule is limited to (lower case, no port); nil means any.
func (r *Rule) Hosts() []string { return append([]string(nil), r.hosts...) }

// ContentTypes returns the media types whose bodies the rule parses.
func (r *Rule) ContentTypes() []string { return append([]string(nil), r.contentTypes...) }

// Describe returns the rule's path condition as written after normalisation, for lint output.
func (r *Rule) Describe() string {
	switch {
	case r.match.re != nil:
		return "regex " + r.match.re.String()
	case r.match.prefix != "":
		if r.match.dir && r.match.prefix != "/" {
			return "prefix " + r.match.prefix + "/"
		}
		return "prefix " + r.match.prefix
	case r.match.exact != "":
		return "exact " + r.match.exact
	}
	return ""
}
