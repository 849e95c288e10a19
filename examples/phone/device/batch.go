package device

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
)

// Batch is what a bulk, payroll or approved batch moves, as the context
// binds it: the count, the exact total (ASCII digits) and the digest of all
// rows. Rows fetches the rows and checks them against it.
type Batch struct {
	Format     string `json:"format"`
	Source     string `json:"source"`
	Count      int    `json:"count"`
	Total      string `json:"total"`
	Currency   string `json:"currency"`
	RowsDigest string `json:"rows_digest"`
}

// Row is one payment of a batch, raw.
type Row struct {
	Payee     string `json:"payee"`
	PayeeName string `json:"payee_name"`
	Amount    string `json:"amount"`
}

// maxRowPages bounds how many pages Rows asks for (10,000 rows at 100).
const maxRowPages = 200

// ErrRowsMismatch is returned by Rows when the rows the server sends are not
// the rows the context binds (count, total or digest): the app must not
// offer to approve.
var ErrRowsMismatch = errors.New("onepush device: the rows do not match the challenge's context")

// Rows pages through every row of ch's batch (GET
// /challenges/{id}/rows), checks their count, total and digest against
// ch.Parsed.Batch, and on success keeps them in ch.Rows, which an approval
// of a batch challenge requires: the user approves the rows she was shown,
// and the signature over the context covers their digest.
func (p *Phone) Rows(ctx context.Context, ch *Challenge) ([]Row, error) {
	b := ch.Parsed.Batch
	if b == nil {
		return nil, fmt.Errorf("onepush device: challenge %s has no batch", ch.ID)
	}
	op := "GET /challenges/" + ch.ID + "/rows"
	var rows []Row
	for page := 0; len(rows) < b.Count; page++ {
		if page == maxRowPages {
			return nil, fmt.Errorf("%w: more than %d pages", ErrRowsMismatch, maxRowPages)
		}
		status, body, err := p.do(ctx, http.MethodGet, "/challenges/"+url.PathEscape(ch.ID)+"/rows?offset="+strconv.Itoa(len(rows)), nil, true)
		if err != nil {
			return nil, fmt.Errorf("onepush device: %s: %w", op, err)
		}
		if status != http.StatusOK {
			return nil, statusErr(op, status, body)
		}
		var resp struct {
			Count  int   `json:"count"`
			Offset int   `json:"offset"`
			Rows   []Row `json:"rows"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			return nil, fmt.Errorf("onepush device: %s: bad response %s: %w", op, excerpt(body), err)
		}
		if resp.Count != b.Count || resp.Offset != len(rows) || len(resp.Rows) == 0 {
			return nil, fmt.Errorf("%w: page at %d says %d rows from %d (%d sent), context says %d", ErrRowsMismatch, len(rows), resp.Count, resp.Offset, len(resp.Rows), b.Count)
		}
		rows = append(rows, resp.Rows...)
	}
	if err := CheckRows(b, rows); err != nil {
		return nil, err
	}
	ch.Rows = rows
	return rows, nil
}

// CheckRows reports whether rows are exactly those b binds: count, the sum
// of the amounts (exact) and RowsDigest.
func CheckRows(b *Batch, rows []Row) error {
	if len(rows) != b.Count {
		return fmt.Errorf("%w: %d rows, context says %d", ErrRowsMismatch, len(rows), b.Count)
	}
	sum := new(big.Int)
	for i, r := range rows {
		n, ok := new(big.Int).SetString(r.Amount, 10)
		if !ok || n.Sign() <= 0 {
			return fmt.Errorf("%w: row %d amount %q", ErrRowsMismatch, i+1, r.Amount)
		}
		sum.Add(sum, n)
	}
	if sum.String() != b.Total {
		return fmt.Errorf("%w: rows total %s, context says %s", ErrRowsMismatch, sum, b.Total)
	}
	if d := RowsDigest(rows); d != b.RowsDigest {
		return fmt.Errorf("%w: digest %s, context says %s", ErrRowsMismatch, d, b.RowsDigest)
	}
	return nil
}

// RowsDigest is base64url (no padding) of SHA-256 over the canonical rows:
// for each row, its payee, payee name and amount, each as its byte length
// in decimal, ":", its UTF-8 bytes and ",". (The phone computes it itself:
// it does not take the server's word for it.)
func RowsDigest(rows []Row) string {
	h := sha256.New()
	for _, r := range rows {
		for _, v := range []string{r.Payee, r.PayeeName, r.Amount} {
			fmt.Fprintf(h, "%d:%s,", len(v), v)
		}
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
