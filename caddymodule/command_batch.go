package caddymodule

import (
	"fmt"
	"io"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
)

// maxPrintedRows bounds the rows `policy test` lists; the count, the total
// and the digest always cover all of them.
const maxPrintedRows = 20

// printAggregate prints what `policy test` finds of a batch: the count,
// the exact total, the digest the phone checks and the rows, or the lookup
// the gateway would make for a batch approved by number.
func printAggregate(w io.Writer, rule *policy.Rule, ex *policy.Extraction) {
	if l := ex.Lookup; l != nil {
		fmt.Fprintf(w, "batch: looked up at the bank before the phone rings: %s %s (in the requester's own session, max %d rows), and again before release\n",
			l.Method, l.Path, rule.MaxRows())
		return
	}
	a := ex.Aggregate
	if a == nil {
		return
	}
	rows := make([]pushauth.Row, len(a.Rows))
	for i, r := range a.Rows {
		rows[i] = pushauth.Row{Payee: r.Payee, PayeeName: r.PayeeName, Amount: r.Amount}
	}
	fmt.Fprintf(w, "batch: %d payees, total %s %s (format %s, max %d rows)\n", a.Count, a.Total, a.Currency, a.Format, rule.MaxRows())
	fmt.Fprintf(w, "rows digest: %s\n", pushauth.RowsDigest(rows))
	for i, r := range a.Rows {
		if i == maxPrintedRows {
			fmt.Fprintf(w, "  … and %d more rows\n", len(a.Rows)-i)
			break
		}
		fmt.Fprintf(w, "  %d. payee %q, name %q, amount %s\n", i+1, r.Payee, r.PayeeName, r.Amount)
	}
}
