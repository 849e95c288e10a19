package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
)

// Bounds of a lookup: the request the gateway makes to the bank, in the
// approver's own session, to read the rows of a batch approved by number.
const (
	maxLookupBody   = 2 << 20
	lookupTimeout   = 10 * time.Second
	batchFromLookup = "lookup"
	batchInRequest  = "request"
)

// errLookup says a lookup gave no rows the gateway can bind: refused.
var errLookup = errors.New("batch lookup failed")

// batchOf is the challenge's batch and rows for an extraction's aggregate.
func batchOf(ex *policy.Extraction) (*pushauth.Batch, []pushauth.Row) {
	a := ex.Aggregate
	if a == nil {
		return nil, nil
	}
	source := batchInRequest
	if ex.Lookup != nil {
		source = batchFromLookup
	}
	rows := make([]pushauth.Row, len(a.Rows))
	for i, r := range a.Rows {
		rows[i] = pushauth.Row{Payee: r.Payee, PayeeName: r.PayeeName, Amount: r.Amount}
	}
	return &pushauth.Batch{Format: a.Format, Source: source, Count: a.Count, Total: a.Total, Currency: a.Currency}, rows
}

// lookupBatch reads the rows of the batch ex names from the bank: a GET of
// the rule's lookup path through next (the configured upstream only),
// carrying only the request's own cookies (the approver's session), with
// bounded time and size. A lookup that fails, answers other than 200 or
// cannot be parsed is an error: the request is refused, never forwarded.
func (g *Gate) lookupBatch(r *http.Request, next Next, rule *policy.Rule, ex *policy.Extraction) (*policy.Aggregate, error) {
	u, err := url.ParseRequestURI(ex.Lookup.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: path %q: %v", errLookup, ex.Lookup.Path, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	req := r.Clone(ctx)
	req.Method = ex.Lookup.Method
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
	req.RequestURI = u.RequestURI()
	req.Header = http.Header{}
	for _, c := range r.Header.Values("Cookie") {
		req.Header.Add("Cookie", c)
	}
	req.Header.Set("Accept", "text/csv, application/octet-stream")
	req.Body, req.ContentLength, req.GetBody = http.NoBody, 0, nil
	req.TransferEncoding = nil
	rec := &lookupWriter{header: http.Header{}}
	if err := next(rec, req); err != nil {
		return nil, fmt.Errorf("%w: %v", errLookup, err)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: no answer within %s", errLookup, lookupTimeout)
	}
	if rec.status != http.StatusOK || rec.over {
		return nil, fmt.Errorf("%w: the bank answered %d (%d bytes, limit %d)", errLookup, rec.status, rec.body.Len(), maxLookupBody)
	}
	a, err := rule.AggregateLookup(ex, rec.body.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errLookup, err)
	}
	return a, nil
}

// recheckBatch looks the batch of an approved challenge up again just
// before its request reaches the bank, and reports whether the bank still
// holds exactly the rows the phone approved (same digest, count and
// total). A batch changed at the bank since, or a lookup that fails, is
// refused. The bank executes its own copy: between this check and its
// execution a change could still slip in, which only the bank itself can
// exclude (docs/menus.md).
func (g *Gate) recheckBatch(r *http.Request, next Next, rule *policy.Rule, body []byte, c *pushauth.Challenge) error {
	if rule == nil {
		return fmt.Errorf("%w: rule %q is no longer in the policy", errLookup, c.Rule)
	}
	ex, err := rule.Extract(r, body)
	if err != nil || ex.Lookup == nil {
		return fmt.Errorf("%w: the approved request names no batch: %v", errLookup, err)
	}
	a, err := g.lookupBatch(r, next, rule, ex)
	if err != nil {
		return err
	}
	ex.Aggregate = a
	b, rows := batchOf(ex)
	if b.Count != c.Batch.Count || b.Total != c.Batch.Total || pushauth.RowsDigest(rows) != c.Batch.RowsDigest {
		return fmt.Errorf("%w: the batch changed at the bank after approval (%d rows totalling %s, approved %d totalling %s)",
			errLookup, b.Count, b.Total, c.Batch.Count, c.Batch.Total)
	}
	return nil
}

// refuseBatch answers a request whose batch could not be bound or changed.
func (g *Gate) refuseBatch(w http.ResponseWriter, r *http.Request, rule *policy.Rule, userKey string, err error) {
	g.Log.Info("request refused: batch", "rule", rule.Name, "user", userKey, "reason", err.Error())
	g.Engine.Record(r.Context(), pushauth.AuditEvent{Type: pushauth.AuditRefused, User: userKey, Rule: rule.Name, ClientIP: g.clientIP(r),
		Outcome: "batch_refused", Actor: "gateway", Detail: err.Error(), Service: rule.Service})
	g.note(r, "outcome", "batch_refused")
	g.render(w, r, http.StatusConflict, PageBadRequest, "", "")
}

// lookupWriter keeps a lookup's answer, at most maxLookupBody bytes.
type lookupWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
	over   bool
}

func (l *lookupWriter) Header() http.Header { return l.header }

func (l *lookupWriter) WriteHeader(status int) {
	if l.status == 0 {
		l.status = status
	}
}

func (l *lookupWriter) Write(b []byte) (int, error) {
	if l.status == 0 {
		l.status = http.StatusOK
	}
	if l.body.Len()+len(b) > maxLookupBody {
		l.over = true
		return 0, errors.New("lookup answer too large")
	}
	return l.body.Write(b)
}
