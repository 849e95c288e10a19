package policy

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
)

// Batch limits: a rule's max_rows defaults to DefaultMaxRows and may not exceed
// MaxRows, so that a file can never make the phone page through more rows than a
// customer can check, nor the gateway keep more than it can afford per challenge.
const (
	DefaultMaxRows = 1000
	MaxRows        = 10000
)

// The batch formats a rule's aggregate may read.
const (
	FormatCSV    = "csv"    // UTF-8 CSV with the header payee_account,payee_name,amount
	FormatZengin = "zengin" // 全銀協 fixed-length 120-byte records in Shift_JIS
	FormatForm   = "form"   // repeated form fields, one value per row and column
)

// Row is one payment of a batch, as the bank reads it: Payee identifies the account
// credited, PayeeName its holder, Amount the ASCII digits of the amount (no leading
// zero), exactly as Transaction.Amount.
type Row struct {
	Payee     string
	PayeeName string
	Amount    string
}

// Aggregate is what a batch moves: every row, their count and their exact total.
type Aggregate struct {
	// Format is the parser that read the rows (FormatCSV, FormatZengin, FormatForm).
	Format string
	// Currency is the ISO 4217 code of every amount.
	Currency string
	// Count is len(Rows).
	Count int
	// Total is the sum of the amounts in ASCII digits, computed in integers: a sum that
	// would overflow int64 is refused, never rounded.
	Total string
	// Rows are all the rows, in file order.
	Rows []Row
}

// Lookup is the request the gateway must make to the bank, in the requester's own
// session, to read the rows of a batch the request names only by number.
type Lookup struct {
	// Method is always GET: a lookup must change nothing at the bank.
	Method string
	// Path is the path and query on the bank, with form values escaped.
	Path string
}

// aggregateTmpl is a rule's `aggregate:` section.
type aggregateTmpl struct {
	format   string    // literal format, or "" when formatT picks it
	formatT  *template // {form.NAME} naming the format per request
	file     string    // multipart file field holding the batch
	columns  [3]string // payee, payee_name, amount fields of a many-row form
	lookup   *template // path of the bank's batch export (GET)
	currency string
	maxRows  int
}

// aggregate reads `aggregate:` of a transaction rule: exactly one source (file,
// columns or lookup), the format, the currency and max_rows.
func (d *decoder) aggregate(e entry, field string, r *Rule) {
	m, line, ok := d.mapping(e.value, field, "file", "columns", "lookup", "format", "currency", "max_rows")
	if !ok || m == nil {
		return
	}
	if r.Kind != "" && r.Kind != KindTransaction {
		d.errorf(line, field, "only transaction rules move money; remove it")
		return
	}
	a := &aggregateTmpl{maxRows: DefaultMaxRows}
	sources := 0
	if fe, ok := m["file"]; ok {
		sources++
		if a.file, _ = d.str(fe, field+".file"); a.file == "" {
			d.errorf(fe.line, field+".file", "must name the multipart field holding the file")
		}
	}
	if ce, ok := m["columns"]; ok {
		sources++
		cm, cl, ok := d.mapping(ce.value, field+".columns", "payee", "payee_name", "amount")
		if ok {
			for i, k := range []string{"payee", "payee_name", "amount"} {
				if ke, ok := cm[k]; ok {
					a.columns[i], _ = d.str(ke, field+".columns."+k)
				}
				if a.columns[i] == "" {
					d.errorf(cl, field+".columns."+k, "required: the repeated form field of each row's %s", k)
				}
			}
		}
		a.format = FormatForm
	}
	if le, ok := m["lookup"]; ok {
		sources++
		if s, ok := d.str(le, field+".lookup"); ok {
			t, err := compileTemplate(s)
			switch {
			case err != nil:
				d.errorf(le.line, field+".lookup", "%v", err)
			case !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//"):
				d.errorf(le.line, field+".lookup", "must be a path on the bank starting with a single /, not %q", s)
			case !d.checkRefs(t, le.line, field+".lookup", r):
			default:
				a.lookup = t
			}
		}
	}
	if sources != 1 {
		d.errorf(line, field, "exactly one of file, columns, lookup is required")
		return
	}
	if fe, ok := m["format"]; ok {
		s, _ := d.str(fe, field+".format")
		switch {
		case a.format == FormatForm:
			d.errorf(fe.line, field+".format", "columns are read from the form; remove format")
		case s == FormatCSV || s == FormatZengin:
			a.format = s
		default:
			t, err := compileTemplate(s)
			if err != nil || len(t.parts) != 1 || t.parts[0].ns != nsForm {
				d.errorf(fe.line, field+".format", `must be csv, zengin or one placeholder such as "{form.format}", not %q`, s)
			} else if d.checkRefs(t, fe.line, field+".format", r) {
				a.formatT = t
			}
		}
	} else if a.format == "" {
		d.errorf(line, field+".format", "required for a file or a lookup: csv, zengin or {form.NAME}")
	}
	a.currency = "JPY"
	if ce, ok := m["currency"]; ok {
		if s, _ := d.str(ce, field+".currency"); isCurrencyCode(s) {
			a.currency = s
		} else {
			d.errorf(ce.line, field+".currency", "%q is not an ISO 4217 code such as JPY", s)
		}
	}
	if me, ok := m["max_rows"]; ok {
		s, _ := d.str(me, field+".max_rows")
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxRows {
			d.errorf(me.line, field+".max_rows", "must be a whole number from 1 to %d, not %q", MaxRows, s)
		} else {
			a.maxRows = n
		}
	}
	r.aggregate = a
}

// watch adds the aggregate's form fields to the rule's watched fields (the format
// field, the lookup's fields), so a repeat is refused as for any watched field.
func (a *aggregateTmpl) watch(add func(*template)) {
	add(a.formatT)
	add(a.lookup)
}

// HasAggregate reports whether the rule reads a batch (aggregate:).
func (r *Rule) HasAggregate() bool { return r.aggregate != nil }

// MaxRows is the most rows the rule's aggregate accepts; 0 when it has none.
func (r *Rule) MaxRows() int {
	if r.aggregate == nil {
		return 0
	}
	return r.aggregate.maxRows
}

// extract computes the aggregate of a parsed request: from the uploaded file or the
// form's columns, or, for a lookup, the request to make (the rows come later, from
// AggregateLookup).
func (a *aggregateTmpl) extract(vals *formValues) (*Aggregate, *Lookup, error) {
	if a.lookup != nil {
		p, err := a.lookup.renderEscaped(vals)
		if err != nil {
			return nil, nil, err
		}
		return nil, &Lookup{Method: "GET", Path: p}, nil
	}
	if a.format == FormatForm {
		rows, err := vals.columnRows(a.columns, a.maxRows)
		if err != nil {
			return nil, nil, err
		}
		agg, err := a.total(FormatForm, rows)
		return agg, nil, err
	}
	format, err := a.formatOf(vals)
	if err != nil {
		return nil, nil, err
	}
	if vals == nil || !vals.hasFile {
		return nil, nil, fmt.Errorf("%w: no file in the multipart field %q", ErrBadRequest, a.file)
	}
	agg, err := a.parse(format, vals.file)
	return agg, nil, err
}

// AggregateLookup reads the rows of a batch from the body of the rule's lookup response.
func (r *Rule) AggregateLookup(ex *Extraction, body []byte) (*Aggregate, error) {
	if r.aggregate == nil || r.aggregate.lookup == nil {
		return nil, fmt.Errorf("%w: rule %q has no lookup", ErrBadRequest, r.Name)
	}
	return r.aggregate.parse(ex.lookupFormat, body)
}

func (a *aggregateTmpl) formatOf(vals *formValues) (string, error) {
	if a.formatT == nil {
		return a.format, nil
	}
	f, err := a.formatT.render(vals, nil, true)
	if err != nil {
		return "", err
	}
	if f != FormatCSV && f != FormatZengin {
		return "", fmt.Errorf("%w: file format %q is neither csv nor zengin", ErrBadRequest, truncate(f, 40))
	}
	return f, nil
}

func (a *aggregateTmpl) parse(format string, data []byte) (*Aggregate, error) {
	var rows []Row
	var err error
	switch format {
	case FormatCSV:
		rows, err = parseCSVRows(data, a.maxRows)
	case FormatZengin:
		rows, err = parseZengin(data, a.maxRows)
	default:
		err = fmt.Errorf("%w: unknown batch format %q", ErrBadRequest, format)
	}
	if err != nil {
		return nil, err
	}
	return a.total(format, rows)
}

// total checks every row and sums the amounts exactly.
func (a *aggregateTmpl) total(format string, rows []Row) (*Aggregate, error) {
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: the batch has no rows", ErrBadRequest)
	}
	if len(rows) > a.maxRows {
		return nil, fmt.Errorf("%w: the batch has %d rows, more than the %d allowed", ErrBadRequest, len(rows), a.maxRows)
	}
	var sum int64
	for i, row := range rows {
		if err := checkRow(row); err != nil {
			return nil, fmt.Errorf("%w: row %d: %v", ErrBadRequest, i+1, err)
		}
		n, _ := strconv.ParseInt(row.Amount, 10, 64) // checkAmount proved it fits
		if n > math.MaxInt64-sum {
			return nil, fmt.Errorf("%w: the total of the batch overflows at row %d", ErrBadRequest, i+1)
		}
		sum += n
	}
	return &Aggregate{Format: format, Currency: a.currency, Count: len(rows), Total: strconv.FormatInt(sum, 10), Rows: rows}, nil
}

// checkRow refuses a row the phone could not show as the bank reads it.
func checkRow(row Row) error {
	if row.Payee == "" {
		return fmt.Errorf("payee is empty")
	}
	if msg := shownProblem(row.Payee); msg != "" {
		return fmt.Errorf("payee %s", msg)
	}
	if msg := shownProblem(row.PayeeName); msg != "" {
		return fmt.Errorf("payee name %s", msg)
	}
	if checkAmount(row.Amount) != nil {
		// Without the value: rows are customer data and errors are logged.
		return errors.New("amount is not ASCII digits without sign, separator or leading zero (at most 18)")
	}
	if row.Amount == "0" {
		return fmt.Errorf("amount is zero")
	}
	return nil
}

// renderEscaped fills a lookup path, path-escaping every form value so that a value
// cannot add a path segment, a query or a fragment.
func (t *template) renderEscaped(vals *formValues) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.ns {
		case nsLiteral:
			b.WriteString(p.text)
		case nsForm:
			v, ok := vals.get(p.name)
			if !ok || v == "" {
				return "", fmt.Errorf("%w: required field %q %v", ErrBadRequest, p.name, errMissing)
			}
			if !vals.usable(p.name) {
				return "", fmt.Errorf("%w: field %q is not a string or number", ErrBadRequest, p.name)
			}
			if strings.Trim(v, ".") == "" {
				// PathEscape leaves "." and "..": a dot segment would move the
				// lookup to another resource of the bank (…/batch/../export.csv
				// is /export.csv once a server resolves it).
				return "", fmt.Errorf("%w: field %q is a dot segment", ErrBadRequest, p.name)
			}
			b.WriteString(url.PathEscape(v))
		default:
			return "", fmt.Errorf("%w: lookup uses a header", ErrBadRequest)
		}
	}
	return b.String(), nil
}

// columnRows assembles the rows of a many-row form from its repeated columns: each
// column must be repeated as often as the others, and a row whose every column is
// empty (an unused line of the form) is skipped, as the bank skips it.
func (f *formValues) columnRows(cols [3]string, maxRows int) ([]Row, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: the form has no rows", ErrBadRequest)
	}
	lists := [3][]string{f.column(cols[0]), f.column(cols[1]), f.column(cols[2])}
	n := len(lists[0])
	for i, l := range lists {
		if len(l) != n {
			return nil, fmt.Errorf("%w: column %q has %d values but %q has %d", ErrBadRequest, cols[i], len(l), cols[0], n)
		}
	}
	var rows []Row
	for i := 0; i < n; i++ {
		row := Row{Payee: lists[0][i], PayeeName: lists[1][i], Amount: lists[2][i]}
		if row == (Row{}) {
			continue
		}
		if len(rows) == maxRows {
			return nil, fmt.Errorf("%w: the form has more than the %d rows allowed", ErrBadRequest, maxRows)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// newValues is the set of values a request's body is parsed into: the watched fields
// and, for an aggregate rule, its columns and file.
func (r *Rule) newValues() *formValues {
	v := newFormValues(r.watched)
	if a := r.aggregate; a != nil {
		v.fileField = a.file
		if a.format == FormatForm {
			v.cols = a.columns[:]
			v.colVals = make([][]string, len(v.cols))
		}
	}
	return v
}

// column returns the values of a repeated column in body order.
func (f *formValues) column(name string) []string {
	for i, n := range f.cols {
		if n == name {
			return f.colVals[i]
		}
	}
	return nil
}

// DescribeAggregate summarises the rule's aggregate for lint output; "" when it has none.
func (r *Rule) DescribeAggregate() string {
	a := r.aggregate
	if a == nil {
		return ""
	}
	format := a.format
	if a.formatT != nil {
		format = a.formatT.String() + " (csv or zengin)"
	}
	var src string
	switch {
	case a.lookup != nil:
		src = "looked up at GET " + a.lookup.String() + " as " + format
	case a.format == FormatForm:
		src = "form columns " + strings.Join(a.columns[:], ", ")
	default:
		src = fmt.Sprintf("file %q as %s", a.file, format)
	}
	return fmt.Sprintf("%s, %s, at most %d rows", src, a.currency, a.maxRows)
}
