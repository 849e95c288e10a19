package policy

import (
	"bytes"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
)

const batchPolicy = `version: 1
session: {cookie: S}
rules:
  - name: bulk
    kind: transaction
    match: {path: {exact: /transfer/bulk}, content_types: [multipart/form-data], fields: [format]}
    user: {session: true}
    aggregate: {file: file, format: "{form.format}", currency: JPY, max_rows: 5}
  - name: payroll
    kind: transaction
    match: {path: {exact: /payroll}}
    user: {session: true}
    aggregate:
      columns: {payee: payee_account, payee_name: payee_name, amount: amount}
      max_rows: 4
  - name: approve
    kind: transaction
    match: {path: {exact: /batch/approve}, fields: [batch_no]}
    user: {session: true}
    aggregate: {lookup: "/batch/{form.batch_no}/export.csv", format: csv}
`

var bulk3 = []Row{
	{Payee: "1000001", PayeeName: "Yamada Taro", Amount: "1000000"},
	{Payee: "2000002", PayeeName: "Suzuki Hanako", Amount: "2000000"},
	{Payee: "3000003", PayeeName: "Sato Ken", Amount: "456000"},
}

var bulk3Zengin = []Row{
	{Payee: "0001-001-1-1000001", PayeeName: "ﾔﾏﾀﾞ ﾀﾛｳ", Amount: "1000000"},
	{Payee: "0005-123-1-2000002", PayeeName: "ｽｽﾞｷ ﾊﾅｺ", Amount: "2000000"},
	{Payee: "0009-045-2-3000003", PayeeName: "ｻﾄｳ ｹﾝ", Amount: "456000"},
}

// uploadRequest is a multipart post of file under field "file" with the format field.
func uploadRequest(t *testing.T, format string, file []byte) (*http.Request, []byte) {
	t.Helper()
	return uploadRequestB(t, format, file)
}

func uploadRequestB(t testing.TB, format string, file []byte) (*http.Request, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("format", format)
	fw, _ := mw.CreateFormFile("file", "batch."+format)
	_, _ = fw.Write(file)
	_ = mw.Close()
	req := httptest.NewRequest(http.MethodPost, "/transfer/bulk", nil)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return req, buf.Bytes()
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/batch/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBulkFileAggregates: a CSV and a Zengin (Shift_JIS) file of the same three
// payments give the same count and exact total, and every row; a file the parser
// does not understand is refused with what is wrong and where.
func TestBulkFileAggregates(t *testing.T) {
	p := mustParse(t, batchPolicy)
	bulk := p.Rules[0]
	many := "payee_account,payee_name,amount\n"
	for i := 0; i < 6; i++ {
		many += fmt.Sprintf("%d,N%d,1\n", 100+i, i)
	}
	for _, tc := range []struct {
		name, format string
		file         []byte
		rows         []Row
		wantErr      string
	}{
		{"csv", "csv", readTestdata(t, "bulk3.csv"), bulk3, ""},
		{"zengin crlf", "zengin", readTestdata(t, "bulk3.zengin"), bulk3Zengin, ""},
		{"zengin fixed", "zengin", readTestdata(t, "bulk3-nocrlf.zengin"), bulk3Zengin, ""},
		{"zengin trailer disagrees", "zengin", readTestdata(t, "bad-total.zengin"), nil, "zengin record 5: 合計金額 says 3456001 but the rows sum to 3456000"},
		{"zengin read as csv", "csv", readTestdata(t, "bulk3.zengin"), nil, "not valid UTF-8"},
		{"csv read as zengin", "zengin", readTestdata(t, "bulk3.csv"), nil, "zengin record 1: is 114 bytes, not 120"},
		{"unknown format", "xml", readTestdata(t, "bulk3.csv"), nil, `file format "xml" is neither csv nor zengin`},
		{"bad amount", "csv", []byte(CSVHeader + "\n1,A,100\n2,B,1,000\n"), nil, "csv line 3: wrong number of fields"},
		{"leading zero", "csv", []byte(CSVHeader + "\n1,A,100\n2,B,0100\n"), nil, "csv line 3: amount is not ASCII digits without sign, separator or leading zero"},
		{"zero", "csv", []byte(CSVHeader + "\n1,A,0\n"), nil, "csv line 2: amount is zero"},
		{"no header", "csv", []byte("1,A,100\n"), nil, "csv line 1: the first line must be the header"},
		{"bom", "csv", append([]byte("\uFEFF"), readTestdata(t, "bulk3.csv")...), nil, "byte-order mark"},
		{"bidi in name", "csv", []byte(CSVHeader + "\n1,A\u202eB,100\n"), nil, "csv line 2: payee name contains the character U+202E"},
		{"over max_rows", "csv", []byte(many), nil, "more than the 5 rows allowed"},
		{"header only", "csv", []byte(CSVHeader + "\n"), nil, "the batch has no rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, body := uploadRequest(t, tc.format, tc.file)
			x, err := bulk.Extract(req, body)
			if !extracted(t, err, tc.wantErr) {
				return
			}
			a := x.Aggregate
			if a == nil || a.Count != 3 || a.Total != "3456000" || a.Currency != "JPY" || a.Format != tc.format {
				t.Fatalf("aggregate = %+v, want 3 rows totalling 3456000 JPY read as %s", a, tc.format)
			}
			if !reflect.DeepEqual(a.Rows, tc.rows) {
				t.Fatalf("rows = %q, want %q", a.Rows, tc.rows)
			}
		})
	}
}

// TestBatchTotalOverflowIsRefused: amounts are summed in integers; a total that does
// not fit is refused, never rounded or wrapped.
func TestBatchTotalOverflowIsRefused(t *testing.T) {
	a := &aggregateTmpl{maxRows: 20, currency: "JPY"}
	rows := make([]Row, 10)
	for i := range rows {
		rows[i] = Row{Payee: "1", PayeeName: "A", Amount: strings.Repeat("9", 18)}
	}
	if _, err := a.total(FormatCSV, rows); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "overflows at row 10") {
		t.Fatalf("total of 10 x 999999999999999999: %v, want refused at row 10", err)
	}
	got, err := a.total(FormatCSV, rows[:9])
	if err != nil || got.Total != "8999999999999999991" {
		t.Fatalf("total of 9 rows = %+v, %v; want 8999999999999999991", got, err)
	}
}

// TestBulkFileIsUnambiguous: the file must be where the bank reads it, once.
func TestBulkFileIsUnambiguous(t *testing.T) {
	bulk := mustParse(t, batchPolicy).Rules[0]
	file := readTestdata(t, "bulk3.csv")
	build := func(parts func(mw *multipart.Writer)) (*http.Request, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		parts(mw)
		_ = mw.Close()
		req := httptest.NewRequest(http.MethodPost, "/transfer/bulk", nil)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		return req, buf.Bytes()
	}
	for name, parts := range map[string]func(*multipart.Writer){
		"two files": func(mw *multipart.Writer) {
			_ = mw.WriteField("format", "csv")
			for i := 0; i < 2; i++ {
				fw, _ := mw.CreateFormFile("file", "a.csv")
				_, _ = fw.Write(file)
			}
		},
		"case variant": func(mw *multipart.Writer) {
			_ = mw.WriteField("format", "csv")
			fw, _ := mw.CreateFormFile("File", "a.csv")
			_, _ = fw.Write(file)
		},
		"file as plain field": func(mw *multipart.Writer) {
			_ = mw.WriteField("format", "csv")
			_ = mw.WriteField("file", string(file))
		},
		"no file": func(mw *multipart.Writer) { _ = mw.WriteField("format", "csv") },
	} {
		req, body := build(parts)
		if _, err := bulk.Extract(req, body); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: Extract error = %v, want ErrBadRequest", name, err)
		}
	}
}

// TestPayrollFormAggregates: a many-row form's repeated columns make the rows; unused
// lines are skipped as the bank skips them; columns of different lengths are refused.
func TestPayrollFormAggregates(t *testing.T) {
	payroll := mustParse(t, batchPolicy).Rules[1]
	for _, tc := range []struct {
		name, body string
		rows       []Row
		wantErr    string
	}{
		{"three rows and a blank line", "payee_account=1000001&payee_name=Yamada+Taro&amount=1000000&payee_account=&payee_name=&amount=" +
			"&payee_account=2000002&payee_name=Suzuki+Hanako&amount=2000000&payee_account=3000003&payee_name=Sato+Ken&amount=456000", bulk3, ""},
		{"short column", "payee_account=1&payee_name=A&amount=1&payee_account=2&payee_name=B", nil, `column "amount" has 1 values but "payee_account" has 2`},
		{"case variant", "payee_account=1&payee_name=A&Amount=1", nil, `column "amount" sent as "Amount"`},
		{"too many", strings.Repeat("payee_account=1&payee_name=A&amount=1&", 5), nil, "more than the 4 rows allowed"},
		{"half-filled line", "payee_account=1&payee_name=&amount=", nil, "row 1: amount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/payroll", nil)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			x, err := payroll.Extract(req, []byte(tc.body))
			if !extracted(t, err, tc.wantErr) {
				return
			}
			if a := x.Aggregate; a == nil || a.Count != 3 || a.Total != "3456000" || !reflect.DeepEqual(a.Rows, tc.rows) {
				t.Fatalf("aggregate = %+v, want the three rows", a)
			}
		})
	}
}

// TestBatchLookupPath: an approval by batch number names the bank's export; the number
// cannot add a path segment or a query.
func TestBatchLookupPath(t *testing.T) {
	approve := mustParse(t, batchPolicy).Rules[2]
	for no, want := range map[string]string{
		"B000012":    "/batch/B000012/export.csv",
		"../../x?y=": "/batch/..%2F..%2Fx%3Fy=/export.csv",
	} {
		req := httptest.NewRequest(http.MethodPost, "/batch/approve", nil)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		x, err := approve.Extract(req, []byte(url.Values{"batch_no": {no}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		if x.Lookup == nil || x.Lookup.Method != "GET" || x.Lookup.Path != want || x.Aggregate != nil {
			t.Fatalf("batch %q: lookup = %+v, want GET %s", no, x.Lookup, want)
		}
		a, err := approve.AggregateLookup(x, readTestdata(t, "bulk3.csv"))
		if err != nil || a.Count != 3 || a.Total != "3456000" {
			t.Fatalf("lookup answer: %+v %v", a, err)
		}
	}
	// A dot segment is left alone by path escaping and would take the
	// lookup to another resource of the bank (/batch/../export.csv).
	for _, no := range []string{".", "..", "..."} {
		req := httptest.NewRequest(http.MethodPost, "/batch/approve", nil)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if x, err := approve.Extract(req, []byte(url.Values{"batch_no": {no}}.Encode())); !errors.Is(err, ErrBadRequest) {
			t.Errorf("batch %q: lookup = %+v, err %v, want refused", no, x, err)
		}
	}
}

// TestAggregatePolicyErrors: a rule's aggregate is checked when the policy loads.
func TestAggregatePolicyErrors(t *testing.T) {
	for _, tc := range []struct{ agg, want string }{
		{`{file: f, columns: {payee: a, payee_name: b, amount: c}}`, "exactly one of file, columns, lookup"},
		{`{file: f}`, "format: required"},
		{`{file: f, format: xml}`, "must be csv, zengin or one placeholder"},
		{`{file: f, format: csv, max_rows: 20000}`, "must be a whole number from 1 to 10000"},
		{`{lookup: "//evil.example/x", format: csv}`, "must be a path on the bank"},
		{`{lookup: "/b/{form.nope}", format: csv}`, `{form.nope}: the rule does not extract "nope"`},
		{`{columns: {payee: a, amount: c}}`, "columns.payee_name: required"},
	} {
		src := "version: 1\nsession: {cookie: S}\nrules:\n  - name: r\n    kind: transaction\n    match: {path: {exact: /x}}\n    user: {session: true}\n    aggregate: " + tc.agg + "\n"
		_, err := Parse("p.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("aggregate %s: error = %v, want %q", tc.agg, err, tc.want)
		}
	}
}
