package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// testBatchRows: a batch challenge's count, total and digest, and every
// row (kept with its secrets), come back exactly as put, before and after
// its decision, and the pending list carries the batch.
func testBatchRows(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	user, cred := uid("user"), uid("cred")
	c := challenge(user, cred, time.Now().Add(time.Minute))
	rows := make([]pushauth.Row, 250)
	for i := range rows {
		rows[i] = pushauth.Row{Payee: "0001-001-1-" + uid("a")[:7], PayeeName: `ﾔﾏﾀﾞ "ﾀﾛｳ" <b>` + "\u2028", Amount: "1000000"}
	}
	c.Batch = &pushauth.Batch{Format: "zengin", Source: "request", Count: len(rows), Total: "250000000", Currency: "JPY", RowsDigest: pushauth.RowsDigest(rows)}
	c.Rows = rows
	mustCreate(t, s, c)
	check := func(what string, got *pushauth.Challenge) {
		t.Helper()
		if !reflect.DeepEqual(got.Batch, c.Batch) || !reflect.DeepEqual(got.Rows, rows) {
			t.Fatalf("%s: batch %+v with %d rows, want %+v with the %d rows put", what, got.Batch, len(got.Rows), c.Batch, len(rows))
		}
	}
	check("GetChallenge", mustGet(t, s, c.ID))
	pending, err := s.PendingForCredential(ctx, cred)
	if err != nil || len(pending) != 1 || !reflect.DeepEqual(pending[0].Batch, c.Batch) {
		t.Fatalf("PendingForCredential = %+v, %v; want the batch challenge", pending, err)
	}
	if _, err := s.Resolve(ctx, c.ID, pushauth.StatusApproved, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	check("GetChallenge after approval", mustGet(t, s, c.ID))
}
