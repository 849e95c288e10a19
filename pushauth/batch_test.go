package pushauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
)

// TestBatchIsBoundAndPagedToItsPhoneOnly: the engine computes the count
// and the rows digest itself (whatever the caller claims) and puts them in
// the context the phone signs; the rows are paged, at most 100 at a time,
// to the phone the challenge is addressed to, only while it is pending.
func TestBatchIsBoundAndPagedToItsPhoneOnly(t *testing.T) {
	e, _ := pushauthtest.Engine(t, pushauth.Config{})
	ctx := context.Background()
	u, cred, _ := pushauthtest.Phone(t, e, "1001/alice")
	_, other, _ := pushauthtest.Phone(t, e, "1001/bob")
	rows := make([]pushauth.Row, 250)
	for i := range rows {
		rows[i] = pushauth.Row{Payee: fmt.Sprintf("%07d", i), PayeeName: "N", Amount: "1"}
	}
	spec := pushauth.ChallengeSpec{UserKey: u.Key, Rule: "bulk", Kind: "transaction", Timeout: time.Minute,
		Batch: &pushauth.Batch{Format: "csv", Source: "request", Count: 3, Total: "250", Currency: "JPY", RowsDigest: "forged"}, Rows: rows}
	c, err := e.Start(ctx, u, spec)
	if err != nil {
		t.Fatal(err)
	}
	var shown struct{ Batch pushauth.Batch }
	if err := json.Unmarshal([]byte(c.Context), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Batch.Count != 250 || shown.Batch.RowsDigest != pushauth.RowsDigest(rows) || shown.Batch.Total != "250" {
		t.Fatalf("context batch = %+v, want 250 rows and the engine's own digest", shown.Batch)
	}
	var got []pushauth.Row
	for page := 0; page < 5 && len(got) < len(rows); page++ {
		p, _, err := e.ChallengeRows(ctx, cred, c.ID, len(got), 1000)
		if err != nil || len(p) > pushauth.MaxRowsPage || len(p) == 0 {
			t.Fatalf("page at %d: %d rows, %v; want 1 to %d", len(got), len(p), err, pushauth.MaxRowsPage)
		}
		got = append(got, p...)
	}
	if pushauth.RowsDigest(got) != shown.Batch.RowsDigest {
		t.Fatal("the paged rows are not the bound rows")
	}
	if p, _, err := e.ChallengeRows(ctx, cred, c.ID, 10000, 10); err != nil || len(p) != 0 {
		t.Fatalf("page past the end: %d rows, %v", len(p), err)
	}
	if _, _, err := e.ChallengeRows(ctx, other, c.ID, 0, 10); !errors.Is(err, pushauth.ErrChallengeNotFound) {
		t.Fatalf("another phone asking for the rows: %v, want ErrChallengeNotFound", err)
	}
	if _, err := e.CancelFromBrowser(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.ChallengeRows(ctx, cred, c.ID, 0, 10); !errors.Is(err, pushauth.ErrConflict) {
		t.Fatalf("rows of a closed challenge: %v, want ErrConflict", err)
	}
	spec.Rows = nil
	if _, err := e.Start(ctx, u, spec); err == nil {
		t.Fatal("a batch without rows was created")
	}
}
