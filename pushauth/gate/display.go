package gate

import (
	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
)

// shownField is one display line in the page's language.
type shownField struct{ Label, Value string }

// shownFields are a challenge's display fields with their labels in lang.
func shownFields(fs []pushauth.Field, lang string) []shownField {
	out := make([]shownField, len(fs))
	for i, f := range fs {
		out[i] = shownField{Label: policy.Field{Label: f.Label, Labels: f.Labels}.In(lang), Value: f.Value}
	}
	return out
}

// shownTx is what a transaction moves, as a page in one language shows it.
type shownTx struct{ Amount, Payee, PayeeName string }

// shownTransaction writes t for a page in lang: the amount as the policy
// formats it for lang, else grouped by thousands with its currency code.
func shownTransaction(t *pushauth.Transaction, lang string) shownTx {
	amount, ok := t.AmountShown[lang]
	if !ok {
		amount = policy.GroupThousands(t.Amount) + " " + t.Currency
	}
	return shownTx{Amount: amount, Payee: t.Payee, PayeeName: t.PayeeName}
}
