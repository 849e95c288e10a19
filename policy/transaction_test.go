package policy

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

const typedPolicy = `version: 1
session: {cookie: S}
service: インターネットバンキング
rules:
  - name: transfer
    kind: transaction
    service: 国内振込
    match: {path: {exact: /transfer}, fields: [payee_account, payee_name, amount, memo]}
    user: {session: true}
    display:
      - {label: Memo, value: "{form.memo}"}
    transaction:
      amount: "{form.amount}"
      currency: JPY
      payee: "{form.payee_account}"
      payee_name: "{form.payee_name}"
  - name: remit
    kind: transaction
    match: {path: {exact: /remit}, fields: [to, amount, cur]}
    user: {session: true}
    transaction: {amount: "{form.amount}", currency: "{form.cur}", payee: "{form.to}"}
  - name: login
    kind: login
    match: {path: {exact: /login}, fields: [u]}
    user: {template: "{form.u}"}
`

// extracted reports whether Extract succeeded as a case wants: with
// wantErr set it fails unless err is ErrBadRequest containing wantErr, and
// answers false (nothing more to check); without, any error fails.
func extracted(t *testing.T, err error, wantErr string) bool {
	t.Helper()
	if wantErr != "" {
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("Extract error = %v, want ErrBadRequest containing %q", err, wantErr)
		}
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// TestTransactionValuesAreTypedAndStrict: the phone's amount and payee come from the
// exact values the bank reads; anything the bank (or a later reader) could read in
// another way, or the phone could show in another way, is refused with 400.
func TestTransactionValuesAreTypedAndStrict(t *testing.T) {
	p := mustParse(t, typedPolicy)
	transfer, remit := p.Rules[0], p.Rules[1]
	okForm := url.Values{"payee_account": {"1234567"}, "payee_name": {"ヤマダ\u3000タロウ"}, "amount": {"250000"}, "memo": {"rent"}}
	with := func(k, v string) string {
		f := url.Values{}
		for kk, vv := range okForm {
			f[kk] = vv
		}
		f.Set(k, v)
		return f.Encode()
	}
	tests := []struct {
		name    string
		rule    *Rule
		body    string
		want    *Transaction
		wantErr string
	}{
		{name: "typed values as posted", rule: transfer, body: okForm.Encode(),
			want: &Transaction{Amount: "250000", Currency: "JPY", Payee: "1234567", PayeeName: "ヤマダ\u3000タロウ"}},
		{name: "zero", rule: transfer, body: with("amount", "0"), want: &Transaction{Amount: "0", Currency: "JPY", Payee: "1234567", PayeeName: "ヤマダ\u3000タロウ"}},
		{name: "18 digits", rule: transfer, body: with("amount", "999999999999999999"),
			want: &Transaction{Amount: "999999999999999999", Currency: "JPY", Payee: "1234567", PayeeName: "ヤマダ\u3000タロウ"}},
		{name: "currency from the form", rule: remit, body: "to=DE89370400440532013000&amount=100&cur=EUR",
			want: &Transaction{Amount: "100", Currency: "EUR", Payee: "DE89370400440532013000"}},

		{name: "full-width digits", rule: transfer, body: with("amount", "１０００"), wantErr: `amount "１０００" is not ASCII digits only`},
		{name: "minus sign", rule: transfer, body: with("amount", "-1000"), wantErr: "is not ASCII digits only"},
		{name: "plus sign", rule: transfer, body: with("amount", "+1000"), wantErr: "is not ASCII digits only"},
		{name: "thousands separator", rule: transfer, body: with("amount", "1,000"), wantErr: "is not ASCII digits only"},
		{name: "decimal point", rule: transfer, body: with("amount", "1000.00"), wantErr: "is not ASCII digits only"},
		{name: "exponent", rule: transfer, body: with("amount", "1e6"), wantErr: "is not ASCII digits only"},
		{name: "leading space", rule: transfer, body: with("amount", " 1000"), wantErr: "is not ASCII digits only"},
		{name: "leading zero", rule: transfer, body: with("amount", "01000"), wantErr: "has a leading zero"},
		{name: "19 digits", rule: transfer, body: with("amount", "1000000000000000000"), wantErr: "is too large"},
		{name: "overflow", rule: transfer, body: with("amount", "99999999999999999999999"), wantErr: "is too large"},
		{name: "empty amount", rule: transfer, body: with("amount", ""), wantErr: "{form.amount} of the phone's display is empty"},
		{name: "lower-case currency", rule: remit, body: "to=1&amount=100&cur=eur", wantErr: `currency "eur" is not an ISO 4217 code`},
		{name: "currency name", rule: remit, body: "to=1&amount=100&cur=YEN%21", wantErr: "is not an ISO 4217 code"},

		{name: "payee with a right-to-left override", rule: transfer, body: with("payee_account", "9999999\u202e7654321"),
			wantErr: "transaction payee contains the character U+202E"},
		{name: "payee with newlines that forge a line", rule: transfer, body: with("payee_account", "9999999\n\nPayee: 1234567 (own savings)"),
			wantErr: "transaction payee contains the character U+000A"},
		{name: "payee with a zero-width space", rule: transfer, body: with("payee_account", "123\u200b4567"), wantErr: "contains the character U+200B"},
		{name: "payee with a line separator", rule: transfer, body: with("payee_account", "123\u20284567"), wantErr: "contains the character U+2028"},
		{name: "payee with a paragraph separator", rule: transfer, body: with("payee_account", "123\u20294567"), wantErr: "contains the character U+2029"},
		{name: "payee with a tab", rule: transfer, body: with("payee_account", "123\t4567"), wantErr: "contains the character U+0009"},
		{name: "payee with invalid UTF-8", rule: transfer, body: strings.Replace(with("payee_account", "X"), "payee_account=X", "payee_account=1%FF2", 1), wantErr: "is not valid UTF-8"},
		{name: "payee over the length limit", rule: transfer, body: with("payee_account", strings.Repeat("1", MaxShownLength+1)), wantErr: "is longer than 128 characters"},
		{name: "empty payee", rule: transfer, body: with("payee_account", ""), wantErr: "{form.payee_account} of the phone's display is empty"},
		{name: "payee name with a left-to-right isolate", rule: transfer, body: with("payee_name", "ヤマダ\u2066"), wantErr: "transaction payee name contains the character U+2066"},
		{name: "display value with a bidi embedding", rule: transfer, body: with("memo", "rent\u202b"), wantErr: `display "Memo" contains the character U+202B`},
		{name: "display value empty", rule: transfer, body: with("memo", ""), wantErr: "{form.memo} of the phone's display is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReq("POST", "/"+tt.rule.Name, "bank.example.com", "application/x-www-form-urlencoded")
			x, err := tt.rule.Extract(r, []byte(tt.body))
			if !extracted(t, err, tt.wantErr) {
				return
			}
			if !reflect.DeepEqual(x.Transaction, tt.want) {
				t.Errorf("Transaction = %#v, want %#v", x.Transaction, tt.want)
			}
		})
	}
	// A payee at the limit is accepted: the limit counts characters, not bytes.
	r := newReq("POST", "/transfer", "", "application/x-www-form-urlencoded")
	if _, err := transfer.Extract(r, []byte(with("payee_account", strings.Repeat("口", MaxShownLength)))); err != nil {
		t.Errorf("payee of %d characters: %v", MaxShownLength, err)
	}
}

func TestServiceAndHost(t *testing.T) {
	p := mustParse(t, typedPolicy)
	if p.Service != "インターネットバンキング" || p.Rules[0].Service != "国内振込" || p.Rules[1].Service != p.Service || p.Rules[2].Service != p.Service {
		t.Fatalf("services: policy %q, rules %q %q %q", p.Service, p.Rules[0].Service, p.Rules[1].Service, p.Rules[2].Service)
	}
	for _, tt := range []struct{ host, want string }{
		{"Bank.Example.COM", "bank.example.com"},
		{"bank.example.com:8443", "bank.example.com"},
		{"bank.example.com.", "bank.example.com"},
		{"[::1]:8443", "::1"},
		{"127.0.0.1:80", "127.0.0.1"},
		{"bank\u202emoc.example", ""},
		{"bank_example.com", ""},
		{"", ""},
	} {
		r := newReq("POST", "/login", "", "application/x-www-form-urlencoded")
		r.Host = tt.host
		x, err := p.Rules[2].Extract(r, []byte("u=a"))
		if err != nil {
			t.Fatal(err)
		}
		if x.Host != tt.want {
			t.Errorf("host %q shown as %q, want %q", tt.host, x.Host, tt.want)
		}
	}
}

func TestTransactionParseErrors(t *testing.T) {
	const head = "version: 1\nsession: {cookie: S}\nrules:\n  - name: t\n    kind: transaction\n    match: {path: {exact: /t}, fields: [a, p]}\n    user: {session: true}\n"
	tests := []struct{ name, yaml, want string }{
		{"misspelt amount", head + "    transaction: {amount: \"{form.ammount}\", currency: JPY, payee: \"{form.p}\"}\n",
			`8: rules[0].transaction.amount: {form.ammount}: the rule does not extract "ammount" (match.fields: a, p)`},
		{"amount with a unit", head + "    transaction: {amount: \"{form.a} JPY\", currency: JPY, payee: \"{form.p}\"}\n",
			`8: rules[0].transaction.amount: must be one placeholder and nothing else, e.g. "{form.amount}" (the bank reads the field as digits)`},
		{"amount literal", head + "    transaction: {amount: \"100\", currency: JPY, payee: \"{form.p}\"}\n",
			`8: rules[0].transaction.amount: must be one placeholder and nothing else, e.g. "{form.amount}" (the bank reads the field as digits)`},
		{"currency name", head + "    transaction: {amount: \"{form.a}\", currency: yen, payee: \"{form.p}\"}\n",
			`8: rules[0].transaction.currency: "yen" is not an ISO 4217 code such as JPY`},
		{"no payee", head + "    transaction: {amount: \"{form.a}\", currency: JPY}\n", `8: rules[0].transaction.payee: required`},
		{"unknown key", head + "    transaction: {amount: \"{form.a}\", currency: JPY, payee: \"{form.p}\", iban: x}\n",
			`8: rules[0].transaction.iban: unknown field (allowed: amount, currency, payee, payee_name, amount_format)`},
		{"on a login rule", "version: 1\nrules:\n  - name: l\n    kind: login\n    match: {path: {exact: /l}, fields: [a]}\n    user: {template: \"{form.a}\"}\n    transaction: {amount: \"{form.a}\", currency: JPY, payee: \"{form.a}\"}\n",
			`7: rules[0].transaction: only transaction rules move money; remove it`},
		{"misspelt display", head + "    display: [{label: Amount, value: \"{form.ammount}\"}]\n",
			`8: rules[0].display[0].value: {form.ammount}: the rule does not extract "ammount" (match.fields: a, p)`},
		{"bidi in a label", head + "    display: [{label: \"Pay\u202eee\", value: \"{form.p}\"}]\n",
			`8: rules[0].display[0].label: contains the character U+202E`},
		{"newline in literal text", head + "    display: [{label: Payee, value: \"{form.p}\\nPayee: own savings\"}]\n",
			`8: rules[0].display[0].value: literal text contains the character U+000A`},
		{"amount format without the amount", head + "    transaction: {amount: \"{form.a}\", currency: JPY, payee: \"{form.p}\", amount_format: {ja: 円}}\n",
			`8: rules[0].transaction.amount_format.ja: "円" does not show the amount: write {amount} where it goes, e.g. "{amount}円"`},
		{"amount format with another field", head + "    transaction: {amount: \"{form.a}\", currency: JPY, payee: \"{form.p}\", amount_format: \"{form.p} {amount}\"}\n",
			`8: rules[0].transaction.amount_format: "{form.p} {amount}": only {amount} and {currency} can be filled in`},
		{"label in an unknown language", head + "    display: [{label: {ja: 金額, fr: Montant}, value: \"{form.a}\"}]\n",
			`8: rules[0].display[0].label.fr: unknown field (allowed: ja, en)`},
		{"blank label in a language", head + "    display: [{label: {ja: \" \", en: Amount}, value: \"{form.a}\"}]\n",
			`8: rules[0].display[0].label.ja: must not be blank`},
		{"blank service", "version: 1\nservice: \" \"\nrules:\n  - name: l\n    kind: login\n    match: {path: {exact: /l}}\n    user: {template: \"{form.a}\"}\n",
			`2: service: must not be blank`},
		{"service with a control character", head + "    service: \"振込\\t\"\n", `8: rules[0].service: contains the character U+0009`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			for _, m := range strings.Split(err.Error(), "\n") {
				if m == "p.yaml:"+tt.want {
					return
				}
			}
			t.Errorf("want p.yaml:%s\ngot:\n%s", tt.want, err)
		})
	}
}

// TestBankPolicyIsTyped: the shipped policy's transfer rule declares its typed fields
// and service, so the phone and later features never read them from display labels.
func TestBankPolicyIsTyped(t *testing.T) {
	p := loadBank(t)
	transfer := p.Rules[2]
	if transfer.transaction == nil || transfer.Service != "振込" || p.Rules[0].Service != "インターネットバンキング" {
		t.Fatalf("bank.yaml: transfer typed %v, services %q / %q", transfer.transaction != nil, transfer.Service, p.Rules[0].Service)
	}
}

// TestAmountFormatIsPresentationOnly: labels per language and the amount
// format change what people read; the raw amount, what is signed, coded
// and summed, stays as the bank reads it.
func TestAmountFormatIsPresentationOnly(t *testing.T) {
	p := mustParse(t, strings.Replace(typedPolicy, `      payee_name: "{form.payee_name}"
`, `      payee_name: "{form.payee_name}"
      amount_format: {ja: "{amount}円", en: "¥{amount} ({currency})"}
`, 1)+`    display:
      - {label: {ja: 利用者, en: User}, value: "{form.u}"}
      - {label: Plain, value: "{form.u}"}
`)
	extract := func(rule *Rule, form url.Values) *Extraction {
		t.Helper()
		x, err := rule.Extract(newReq("POST", "/"+rule.Name, "bank.example.com", "application/x-www-form-urlencoded"), []byte(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	x := extract(p.Rules[0], url.Values{"payee_account": {"0012345"}, "payee_name": {"ヤマダ"}, "amount": {"1500000"}, "memo": {"m"}})
	want := &Transaction{Amount: "1500000", Currency: "JPY", Payee: "0012345", PayeeName: "ヤマダ",
		AmountShown: map[string]string{"ja": "1,500,000円", "en": "¥1,500,000 (JPY)"}}
	if !reflect.DeepEqual(x.Transaction, want) {
		t.Fatalf("Transaction = %#v, want %#v", x.Transaction, want)
	}
	l := extract(p.Rules[2], url.Values{"u": {"alice"}})
	if l.Display[0].In("ja") != "利用者" || l.Display[0].In("en") != "User" || l.Display[0].Label != "User" || l.Display[1].In("ja") != "Plain" {
		t.Fatalf("display = %#v", l.Display)
	}
}
