package ocra

import (
	"strings"
	"testing"
)

// The interoperability vector of the README's device protocol: the RFC's
// 32-byte key, challenge 12345678, 1,500,000 JPY to 1234567. An app
// written in another language must reproduce both values (the digest was
// checked with Python's hashlib and hmac, independently of this package).
const (
	vectorQuestion = "5820a91bea42d91caaf5b36cc503a5ead441668adf91bd17e54d908277a2c10f"
	vectorResponse = "66799392"
)

var vectorTx = Transaction{Challenge: "12345678", Payee: "1234567", Amount: "1500000", Currency: "JPY"}

func TestTransactionVector(t *testing.T) {
	q, err := TransactionQuestion(vectorTx)
	if err != nil || q != vectorQuestion {
		t.Fatalf("TransactionQuestion = %s, %v; want %s", q, err, vectorQuestion)
	}
	r, err := TransactionResponse(rfcKey(32), vectorTx)
	if err != nil || r != vectorResponse {
		t.Fatalf("TransactionResponse = %s, %v; want %s", r, err, vectorResponse)
	}
}

// TestResponseBindsChallengePayeeAndAmount: a response the user computed
// for what the page showed her does not approve a transfer that differs in
// any bound value, however slightly (PSD2 RTS art. 5: any change
// invalidates the code).
func TestResponseBindsChallengePayeeAndAmount(t *testing.T) {
	key := rfcKey(32)
	shown, err := TransactionResponse(key, vectorTx)
	if err != nil {
		t.Fatal(err)
	}
	other := func(f func(*Transaction)) Transaction { tx := vectorTx; f(&tx); return tx }
	tests := []struct {
		name string
		tx   Transaction
	}{
		{"amount one yen more", other(func(tx *Transaction) { tx.Amount = "1500001" })},
		{"amount ten times", other(func(tx *Transaction) { tx.Amount = "15000000" })},
		{"amount's digits moved into the payee", Transaction{Challenge: "12345678", Payee: "12345671", Amount: "500000", Currency: "JPY"}},
		{"another payee", other(func(tx *Transaction) { tx.Payee = "7654321" })},
		{"payee with a trailing space", other(func(tx *Transaction) { tx.Payee = "1234567 " })},
		{"payee in full-width digits", other(func(tx *Transaction) { tx.Payee = "１２３４５６７" })},
		{"another currency", other(func(tx *Transaction) { tx.Currency = "USD" })},
		{"another challenge", other(func(tx *Transaction) { tx.Challenge = "12345679" })},
	}
	for _, tc := range tests {
		got, err := TransactionResponse(key, tc.tx)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got == shown {
			t.Errorf("%s: same response %s as for what the page showed", tc.name, got)
		}
		if VerifyTransaction(key, tc.tx, shown) {
			t.Errorf("%s: the response for what the page showed verifies", tc.name)
		}
	}
	if !VerifyTransaction(key, vectorTx, shown) || !VerifyTransaction(key, vectorTx, " "+shown+"\n") {
		t.Fatal("the response does not verify for its own transaction")
	}
	otherKey := rfcKey(32)
	otherKey[0] ^= 1
	if VerifyTransaction(otherKey, vectorTx, shown) {
		t.Fatal("another phone's key verifies the response")
	}
	for _, wrong := range []string{"", "6679939", "066799392", "667993920"} {
		if VerifyTransaction(key, vectorTx, wrong) {
			t.Errorf("response %q verifies", wrong)
		}
	}
}

// TestTransactionRefusesNonCanonicalValues: the gateway holds canonical
// raw values; anything else is a programming error on its side or an
// unreadable value on the phone's, and never gets a response.
func TestTransactionRefusesNonCanonicalValues(t *testing.T) {
	tests := []struct {
		name string
		tx   Transaction
		want string
	}{
		{"short challenge", Transaction{Challenge: "1234567", Payee: "1", Amount: "1", Currency: "JPY"}, "challenge number"},
		{"grouped amount", Transaction{Challenge: "12345678", Payee: "1", Amount: "1,000", Currency: "JPY"}, "amount"},
		{"leading zero", Transaction{Challenge: "12345678", Payee: "1", Amount: "0100", Currency: "JPY"}, "amount"},
		{"decimal amount", Transaction{Challenge: "12345678", Payee: "1", Amount: "10.5", Currency: "JPY"}, "amount"},
		{"19 digits", Transaction{Challenge: "12345678", Payee: "1", Amount: strings.Repeat("9", 19), Currency: "JPY"}, "amount"},
		{"lower-case currency", Transaction{Challenge: "12345678", Payee: "1", Amount: "1", Currency: "jpy"}, "currency"},
		{"no payee", Transaction{Challenge: "12345678", Amount: "1", Currency: "JPY"}, "payee"},
		{"NUL in the payee", Transaction{Challenge: "12345678", Payee: "1\x002", Amount: "1", Currency: "JPY"}, "control character"},
		{"payee over 128 characters", Transaction{Challenge: "12345678", Payee: strings.Repeat("口", 129), Amount: "1", Currency: "JPY"}, "payee"},
	}
	for _, tc := range tests {
		if _, err := TransactionResponse(rfcKey(32), tc.tx); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about the %s", tc.name, err, tc.want)
		}
	}
	if _, err := TransactionResponse(rfcKey(20), vectorTx); err == nil {
		t.Error("a 20-byte key gives a response")
	}
}

// TestTypedIsExact: what the user types from the page comes out as the
// canonical value the gateway holds, or is refused; a reading that could
// mean another amount is never guessed.
func TestTypedIsExact(t *testing.T) {
	good := []struct {
		name                     string
		challenge, payee, amount string
		wantC, wantA, wantCur    string
	}{
		{"as the page shows it", "1234 5678", "1234567", "1,500,000 JPY", "12345678", "1500000", "JPY"},
		{"plain digits, home currency", "12345678", "1234567", "1500000", "12345678", "1500000", "JPY"},
		{"full-width digits from an IME", "１２３４５６７８", "1234567", "１５００００ JPY", "12345678", "150000", "JPY"},
		{"hyphen and spaces around", " 1234-5678 ", " 1234567 ", " 999 usd ", "12345678", "999", "USD"},
		{"zero", "00000000", "1", "0", "00000000", "0", "JPY"},
		{"no grouping needed", "12345678", "1", "1,000", "12345678", "1000", "JPY"},
	}
	for _, tc := range good {
		tx, err := Typed(tc.challenge, tc.payee, tc.amount, "JPY")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tx.Challenge != tc.wantC || tx.Amount != tc.wantA || tx.Currency != tc.wantCur || tx.Payee != strings.TrimSpace(tc.payee) {
			t.Errorf("%s: Typed = %+v, want challenge %s, amount %s %s", tc.name, tx, tc.wantC, tc.wantA, tc.wantCur)
		}
	}
	bad := []struct{ name, challenge, amount, want string }{
		{"seven-digit challenge", "1234567", "1", "challenge number"},
		{"letters in the challenge", "1234567a", "1", "challenge number"},
		{"decimal point", "12345678", "1500.00", "amount"},
		{"European grouping", "12345678", "1.500.000", "amount"},
		{"comma misplaced", "12345678", "15,00", "amount"},
		{"comma in the first group of four", "12345678", "1500,000", "amount"},
		{"sign", "12345678", "-5", "amount"},
		{"leading zero", "12345678", "0150", "amount"},
		{"yen sign", "12345678", "1,500円", "amount"},
		{"currency not a code", "12345678", "1500 dollars", "currency"},
		{"empty amount", "12345678", "", "amount"},
	}
	for _, tc := range bad {
		if _, err := Typed(tc.challenge, "1234567", tc.amount, "JPY"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Typed(%q, %q) = %v, want an error about the %s", tc.name, tc.challenge, tc.amount, err, tc.want)
		}
	}
	// What the phone computes from the typed page is what the gateway
	// computes from its raw values.
	tx, err := Typed("1234 5678", " 1234567", "1,500,000", "JPY")
	if err != nil || tx != vectorTx {
		t.Fatalf("Typed = %+v, %v; want %+v", tx, err, vectorTx)
	}
}

func TestKeysAndChallengeNumbers(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := ParseKey(k); err != nil || len(b) != KeySize {
		t.Fatalf("ParseKey(NewKey()) = %d bytes, %v", len(b), err)
	}
	if k2, _ := NewKey(); k2 == k {
		t.Fatal("two keys are equal")
	}
	for _, bad := range []string{"", k[:62], k + "00", "zz" + k[2:]} {
		_, err := ParseKey(bad)
		if err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("ParseKey's error shows the key: %v", err)
		}
	}
	seen := map[string]bool{}
	for range 200 {
		c, err := NewChallengeNumber()
		if err != nil || len(c) != ChallengeDigits || !digits(c) {
			t.Fatalf("NewChallengeNumber = %q, %v", c, err)
		}
		seen[c] = true
	}
	if len(seen) < 199 {
		t.Fatalf("200 challenge numbers, %d distinct", len(seen))
	}
}
