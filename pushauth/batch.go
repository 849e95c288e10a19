package pushauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
)

// MaxBatchRows bounds the rows one challenge carries (policy.MaxRows).
const MaxBatchRows = 10000

// MaxRowsPage is the most rows the phone gets per page (ChallengeRows).
const MaxRowsPage = 100

// Batch is what a bulk, payroll or approved batch moves, in the context the
// phone shows and signs: how many rows, their exact total, and the digest
// of all of them (RowsDigest), which the phone recomputes over the rows it
// pages through before it signs. PSD2 RTS art. 5(3): the total amount and
// the payees of a batch are bound.
type Batch struct {
	// Format is how the bank received the rows: csv, zengin, form.
	Format string `json:"format"`
	// Source is "lookup" when the rows were read from the bank (approval by
	// batch number), "request" when they were in the request itself.
	Source   string `json:"source"`
	Count    int    `json:"count"`
	Total    string `json:"total"`
	Currency string `json:"currency"`
	// RowsDigest is RowsDigest of every row, in order.
	RowsDigest string `json:"rows_digest"`
}

// Row is one payment of a batch, raw as the bank reads it. Rows are
// customer data: kept with the challenge's secrets (sealed outside the
// process), shown only to the phone, never logged.
type Row struct {
	Payee     string `json:"payee"`
	PayeeName string `json:"payee_name"`
	Amount    string `json:"amount"`
}

// RowsDigest is base64url (no padding) of SHA-256 over the canonical rows:
// for each row in order, its payee, payee name and amount, each written as
// its length in bytes (decimal), ":", its UTF-8 bytes and ",". The length
// prefixes make the encoding unambiguous (no separator can be smuggled
// into a value).
func RowsDigest(rows []Row) string {
	h := sha256.New()
	var buf []byte
	for _, r := range rows {
		for _, v := range [3]string{r.Payee, r.PayeeName, r.Amount} {
			buf = strconv.AppendInt(buf[:0], int64(len(v)), 10)
			buf = append(buf, ':')
			buf = append(buf, v...)
			buf = append(buf, ',')
			h.Write(buf)
		}
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// bindBatch fixes the batch of a challenge being created: the count and
// the digest are computed here, from the rows themselves, whatever the
// caller said.
func bindBatch(c *Challenge, b *Batch, rows []Row) error {
	if b == nil {
		if len(rows) > 0 {
			return errors.New("pushauth: rows without a batch")
		}
		return nil
	}
	if len(rows) == 0 || len(rows) > MaxBatchRows {
		return fmt.Errorf("pushauth: a batch of %d rows (1 to %d)", len(rows), MaxBatchRows)
	}
	bound := *b
	bound.Count, bound.RowsDigest = len(rows), RowsDigest(rows)
	c.Batch, c.Rows = &bound, rows
	return nil
}

// ChallengeRows returns at most limit rows of challenge id's batch from
// offset, and the challenge, if it is addressed to cred and still pending:
// the phone pages through every row and checks them against the context's
// rows_digest before it signs. limit is capped at MaxRowsPage.
func (e *Engine) ChallengeRows(ctx context.Context, cred *Credential, id string, offset, limit int) ([]Row, *Challenge, error) {
	c, err := e.ChallengeFor(ctx, cred, id)
	if err != nil {
		return nil, nil, err
	}
	if c.Status != StatusPending {
		return nil, c, ErrConflict
	}
	if limit <= 0 || limit > MaxRowsPage {
		limit = MaxRowsPage
	}
	if offset < 0 || offset > len(c.Rows) {
		offset = len(c.Rows)
	}
	end := min(offset+limit, len(c.Rows))
	return c.Rows[offset:end], c, nil
}
