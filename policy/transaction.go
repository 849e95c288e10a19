package policy

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxShownLength bounds, in characters, every value the phone shows (display and
// transaction values, service names): a long value can push the part that matters off
// the phone's screen.
const MaxShownLength = 128

// Transaction is what a transaction moves, typed and exactly as the bank reads it.
// Everything that signs, codes or sums uses these raw values; display labels and
// formatting (1,500,000円) are presentation only.
type Transaction struct {
	// Amount is the amount as the bank reads it: ASCII digits only, no sign, no
	// separators, no leading zero, at most 18 digits (the bank parses a decimal integer
	// and refuses anything else, so anything else could be read differently).
	Amount string
	// Currency is an ISO 4217 code such as JPY.
	Currency string
	// Payee identifies the account credited, as posted.
	Payee string
	// PayeeName is the payee's name when the rule extracts one; "" otherwise.
	PayeeName string
	// AmountShown is the amount as the rule's amount_format writes it, per language
	// (1,500,000円, ¥1,500,000); nil without one. Presentation only.
	AmountShown map[string]string
}

// transactionTmpl holds a rule's `transaction:` templates; payeeName may be nil.
type transactionTmpl struct {
	amount, currency, payee, payeeName *template
	amountFormat                       map[string]string // per language; nil without amount_format
}

// transaction reads `transaction: {amount, currency, payee, payee_name}` of a transaction
// rule. Every placeholder must name a field the rule extracts (see checkRefs).
func (d *decoder) transaction(e entry, field string, r *Rule) {
	m, line, ok := d.mapping(e.value, field, "amount", "currency", "payee", "payee_name", "amount_format")
	if !ok || m == nil {
		return
	}
	if r.Kind != "" && r.Kind != KindTransaction {
		d.errorf(line, field, "only transaction rules move money; remove it")
		return
	}
	t := &transactionTmpl{}
	read := func(key string, required bool) *template {
		f := field + "." + key
		ke, ok := m[key]
		if !ok {
			if required {
				d.errorf(line, f, "required")
			}
			return nil
		}
		s, ok := d.str(ke, f)
		if !ok {
			return nil
		}
		tm, err := compileTemplate(s)
		if err != nil {
			d.errorf(ke.line, f, "%v", err)
			return nil
		}
		if !d.checkShownTemplate(tm, ke.line, f) || !d.checkRefs(tm, ke.line, f, r) {
			return nil
		}
		return tm
	}
	t.amount = read("amount", true)
	if t.amount != nil && (len(t.amount.parts) != 1 || t.amount.parts[0].ns == nsLiteral) {
		d.errorf(m["amount"].line, field+".amount", `must be one placeholder and nothing else, e.g. "{form.amount}" (the bank reads the field as digits)`)
		t.amount = nil
	}
	t.currency = read("currency", true)
	if t.currency != nil && !t.currency.hasPlaceholder() && !isCurrencyCode(t.currency.src) {
		d.errorf(m["currency"].line, field+".currency", "%q is not an ISO 4217 code such as JPY", t.currency.src)
		t.currency = nil
	}
	t.payee = read("payee", true)
	t.payeeName = read("payee_name", false)
	if fe, ok := m["amount_format"]; ok {
		t.amountFormat = d.amountFormat(fe, field+".amount_format")
	}
	if t.amount != nil && t.currency != nil && t.payee != nil {
		r.transaction = t
	}
}

// checkRefs refuses a placeholder naming a form field the rule does not extract (listed
// in match.fields or used by the user template): a misspelt {form.ammount} would
// otherwise show the phone an empty amount that the user approves.
func (d *decoder) checkRefs(t *template, line int, field string, r *Rule) bool {
	ok := true
	for _, p := range t.parts {
		if p.ns != nsForm || contains(r.fields, p.name) || (r.userTmpl != nil && r.userTmpl.uses(p.name)) {
			continue
		}
		d.errorf(line, field, "{form.%s}: the rule does not extract %q (match.fields: %s)",
			p.name, p.name, strings.Join(r.fields, ", "))
		ok = false
	}
	return ok
}

// checkShownTemplate refuses literal text the phone could not show faithfully.
func (d *decoder) checkShownTemplate(t *template, line int, field string) bool {
	for _, p := range t.parts {
		if p.ns != nsLiteral {
			continue
		}
		if msg := shownProblem(p.text); msg != "" {
			d.errorf(line, field, "literal text %s", msg)
			return false
		}
	}
	return true
}

// service reads a `service:` name (the bank service a policy or rule protects).
func (d *decoder) service(e entry, field string) string {
	s, ok := d.str(e, field)
	if !ok {
		return ""
	}
	if strings.TrimSpace(s) == "" {
		d.errorf(e.line, field, "must not be blank")
		return ""
	}
	if msg := shownProblem(s); msg != "" {
		d.errorf(e.line, field, "%s", msg)
		return ""
	}
	return s
}

// uses reports whether the template reads form field name.
func (t *template) uses(name string) bool {
	for _, p := range t.parts {
		if p.ns == nsForm && p.name == name {
			return true
		}
	}
	return false
}

// shownProblem says why v cannot be shown on the phone as the bank will read it, or ""
// when it can. Control and format characters (bidi overrides such as U+202E, newlines,
// zero-width characters), line and paragraph separators, private-use and noncharacters
// can make the phone show something other than what the bank executes.
func shownProblem(v string) string {
	if !utf8.ValidString(v) {
		return "is not valid UTF-8"
	}
	n := 0
	for _, c := range v {
		n++
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f { // the only ASCII characters in Cc
				return fmt.Sprintf("contains the character U+%04X", c)
			}
			continue
		}
		if unicode.In(c, unicode.C, unicode.Zl, unicode.Zp, unicode.Noncharacter_Code_Point) {
			return fmt.Sprintf("contains the character U+%04X", c)
		}
	}
	if n > MaxShownLength {
		return fmt.Sprintf("is longer than %d characters", MaxShownLength)
	}
	return ""
}

// render fills the rule's transaction templates and checks each value.
func (t *transactionTmpl) render(vals *formValues, h http.Header) (*Transaction, error) {
	var tx Transaction
	var err error
	if tx.Amount, err = t.amount.renderShown(vals, h, "transaction amount", ""); err != nil {
		return nil, err
	}
	if err := checkAmount(tx.Amount); err != nil {
		return nil, err
	}
	if tx.Currency, err = t.currency.renderShown(vals, h, "transaction currency", ""); err != nil {
		return nil, err
	}
	if !isCurrencyCode(tx.Currency) {
		return nil, fmt.Errorf("%w: currency %q is not an ISO 4217 code", ErrBadRequest, tx.Currency)
	}
	if tx.Payee, err = t.payee.renderShown(vals, h, "transaction payee", ""); err != nil {
		return nil, err
	}
	if t.payeeName != nil {
		if tx.PayeeName, err = t.payeeName.renderShown(vals, h, "transaction payee name", ""); err != nil {
			return nil, err
		}
	}
	tx.AmountShown = formatAmount(t.amountFormat, &tx)
	return &tx, nil
}

// checkAmount accepts only what the legacy bank itself accepts unambiguously: a decimal
// integer in ASCII digits. Full-width digits (１０００), signs, separators, spaces,
// decimals and leading zeros are refused rather than normalised, since another reader
// (the bank, a later feature summing amounts) might normalise them differently.
func checkAmount(s string) error {
	bad := func(why string) error { return fmt.Errorf("%w: amount %q %s", ErrBadRequest, s, why) }
	if s == "" {
		return bad("is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return bad("is not ASCII digits only")
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return bad("has a leading zero")
	}
	if len(s) > 18 {
		return bad("is too large")
	}
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		return bad("is too large")
	}
	return nil
}

func isCurrencyCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// shownHost is the request's host for the phone and the audit: lower case, without port
// or trailing dot, and "" when it is not a plain host name or IP address (the client
// chose it, so anything else is dropped rather than shown).
func shownHost(h string) string {
	if h == "" || len(h) > 253 {
		return ""
	}
	lower := true
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.':
		case c >= 'A' && c <= 'Z':
			lower = false
		case c == ':':
			// Only an IPv6 address has a colon left once the port is gone.
			if ip, err := netip.ParseAddr(h); err == nil && ip.Is6() {
				return ip.String()
			}
			return ""
		default:
			return ""
		}
	}
	if !lower {
		return strings.ToLower(h)
	}
	return h
}
