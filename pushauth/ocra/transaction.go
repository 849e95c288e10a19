package ocra

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"unicode"
	"unicode/utf8"
)

// onepush's transaction-bound fallback (PSD2 RTS art. 5, dynamic linking):
// the waiting page of a transaction shows a challenge number beside the
// payee and the amount; the user types the three into the app, which
// answers offline with TransactionResponse under the credential's OCRA key;
// the user types the answer into the browser, and the gateway computes the
// same over the challenge's raw transaction fields.
const (
	// TransactionSuite is the suite of every transaction response: 8
	// digits of HMAC-SHA-256 over a 32-byte question. The question is a
	// SHA-256 digest (see TransactionQuestion) because a payee need not
	// be digits and the three values do not fit the 64 characters a
	// question may have; a digest binds each of them whatever its length.
	// No counter or time: the challenge number is fresh for each
	// challenge and the gateway takes a response once, within the
	// challenge's life, so the phone needs no clock and no state.
	TransactionSuite = "OCRA-1:HOTP-SHA256-8:QH64"
	// QuestionLayout names TransactionQuestion's layout; the registration
	// answer carries it so that an app can tell a later layout apart.
	QuestionLayout = "onepush-tx-1"
	// ChallengeDigits is the length of the challenge number.
	ChallengeDigits = 8
	// KeySize is the length of an OCRA key in bytes: SHA-256's output, as
	// RFC 4226 §4 asks of an HMAC key.
	KeySize = 32
)

// transactionSuite is TransactionSuite parsed once; it is a constant, so
// a failure is a programming error.
var transactionSuite = func() *Suite {
	s, err := ParseSuite(TransactionSuite)
	if err != nil {
		panic(err)
	}
	return s
}()

// Transaction is what a transaction response binds, each value raw as the
// gateway holds it in the challenge (never a display label): Amount ASCII
// digits in the currency's unit without sign, separator or leading zero;
// Currency an ISO 4217 code; Payee the payee account exactly as the bank
// reads it; Challenge the ChallengeDigits-digit challenge number.
type Transaction struct {
	Challenge string
	Payee     string
	Amount    string
	Currency  string
}

// NewKey returns a fresh OCRA key, hex-encoded as it is stored and sent
// to the phone.
func NewKey() (string, error) {
	var k [KeySize]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", fmt.Errorf("ocra: key: %w", err)
	}
	return hex.EncodeToString(k[:]), nil
}

// ParseKey decodes a key NewKey made.
func ParseKey(s string) ([]byte, error) {
	k, err := hex.DecodeString(s)
	if err != nil || len(k) != KeySize {
		// The key itself is a secret: never in the message.
		return nil, fmt.Errorf("ocra: key: want %d hex-encoded bytes (%d characters), got %d characters", KeySize, 2*KeySize, len(s))
	}
	return k, nil
}

// NewChallengeNumber returns a uniformly random ChallengeDigits-digit
// challenge number for a transaction's waiting page.
func NewChallengeNumber() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(100_000_000))
	if err != nil {
		return "", fmt.Errorf("ocra: challenge number: %w", err)
	}
	return fmt.Sprintf("%0*d", ChallengeDigits, n.Int64()), nil
}

// TransactionQuestion is the QH64 question of tx: the hex digits of
//
//	SHA-256("onepush-tx-1" 0x00 challenge 0x00 amount 0x00 currency 0x00 payee)
//
// over the raw values, which must be canonical (see Transaction); the
// zero bytes cannot occur in any of them, so no two transactions share
// the digested text.
func TransactionQuestion(tx Transaction) (string, error) {
	if err := tx.check(); err != nil {
		return "", err
	}
	h := sha256.New()
	for _, v := range []string{QuestionLayout, tx.Challenge, tx.Amount, tx.Currency} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	h.Write([]byte(tx.Payee))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TransactionResponse is the 8-digit response to tx under key: what the
// phone shows and the gateway expects. Both sides call it; the gateway
// compares with VerifyTransaction.
func TransactionResponse(key []byte, tx Transaction) (string, error) {
	if len(key) != KeySize {
		return "", fmt.Errorf("ocra: key is %d bytes, want %d", len(key), KeySize)
	}
	q, err := TransactionQuestion(tx)
	if err != nil {
		return "", err
	}
	return transactionSuite.Compute(key, Input{Question: q})
}

// VerifyTransaction reports whether response is tx's response under key,
// in constant time. A malformed transaction or key never verifies.
func VerifyTransaction(key []byte, tx Transaction, response string) bool {
	want, err := TransactionResponse(key, tx)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(strings.TrimSpace(response)), []byte(want))
}

// check refuses a value that is not in the canonical form the gateway
// holds: a response over it could not be reproduced by the other side, or
// (for the amount) could stand for another reading of the same digits.
func (tx Transaction) check() error {
	if len(tx.Challenge) != ChallengeDigits || !digits(tx.Challenge) {
		return fmt.Errorf("ocra: challenge number %q: want %d ASCII digits", tx.Challenge, ChallengeDigits)
	}
	if err := checkAmount(tx.Amount); err != nil {
		return err
	}
	if len(tx.Currency) != 3 || strings.ToUpper(tx.Currency) != tx.Currency || !letters(tx.Currency) {
		return fmt.Errorf("ocra: currency %q: want an ISO 4217 code, three capital letters", tx.Currency)
	}
	if tx.Payee == "" || !utf8.ValidString(tx.Payee) || utf8.RuneCountInString(tx.Payee) > 128 {
		return fmt.Errorf("ocra: payee %q: want 1 to 128 characters of UTF-8", tx.Payee)
	}
	for _, c := range tx.Payee {
		if unicode.IsControl(c) {
			return fmt.Errorf("ocra: payee %q: has the control character U+%04X", tx.Payee, c)
		}
	}
	return nil
}

// checkAmount is policy's rule for an amount the bank reads
// unambiguously: ASCII digits, no leading zero, at most 18 digits.
func checkAmount(a string) error {
	if a == "" || !digits(a) || len(a) > 18 || (len(a) > 1 && a[0] == '0') {
		return fmt.Errorf("ocra: amount %q: want 1 to 18 ASCII digits without a leading zero", a)
	}
	return nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func letters(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// Typed turns what a user typed from the waiting page into the canonical
// Transaction, or says which value cannot be read. It only undoes how the
// page shows values, never guesses:
//
//   - the challenge number may be typed with spaces or hyphens between
//     digit groups (1234 5678) and in full-width digits (an IME's);
//   - the amount likewise in full-width digits, and grouped by thousands
//     with commas exactly as the page shows it (1,500,000), optionally
//     followed by a space and its ISO 4217 code (1,500,000 JPY, in any
//     case); without a code it is
//     in homeCurrency. A decimal point, a sign, a misplaced comma or a
//     leading zero are refused, not read;
//   - the payee is taken as typed, but for spaces around it.
func Typed(challenge, payee, amount, homeCurrency string) (Transaction, error) {
	tx := Transaction{Payee: strings.TrimSpace(payee), Currency: homeCurrency}
	c := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\u3000' {
			return -1
		}
		return halfWidthDigit(r)
	}, strings.TrimSpace(challenge))
	if len(c) != ChallengeDigits || !digits(c) {
		return Transaction{}, fmt.Errorf("ocra: challenge number %q: type the %d digits the page shows", challenge, ChallengeDigits)
	}
	tx.Challenge = c
	a := strings.Map(halfWidthDigit, strings.TrimSpace(amount))
	if i := strings.LastIndexByte(a, ' '); i >= 0 {
		a, tx.Currency = strings.TrimSpace(a[:i]), strings.ToUpper(a[i+1:])
	}
	if strings.Contains(a, ",") {
		groups := strings.Split(a, ",")
		for i, g := range groups {
			if !digits(g) || len(g) > 3 || (i > 0 && len(g) != 3) {
				return Transaction{}, fmt.Errorf("ocra: amount %q: commas must group digits by thousands (1,500,000)", amount)
			}
		}
		a = strings.Join(groups, "")
	}
	if err := checkAmount(a); err != nil {
		return Transaction{}, fmt.Errorf("ocra: amount %q: type the whole amount the page shows, digits (grouped by commas or not) and its currency code", amount)
	}
	tx.Amount = a
	if err := tx.check(); err != nil {
		return Transaction{}, err
	}
	return tx, nil
}

// halfWidthDigit maps a full-width digit (U+FF10–U+FF19) to its ASCII
// digit and leaves any other rune as it is.
func halfWidthDigit(r rune) rune {
	if r >= '０' && r <= '９' {
		return '0' + (r - '０')
	}
	return r
}
