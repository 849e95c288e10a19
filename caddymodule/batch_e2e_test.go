package caddymodule_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// The three payments of policy/testdata/batch/bulk3.{csv,zengin}, as the
// phone shows them and the bank's operations log records them.
var (
	bulk3CSV = []device.Row{
		{Payee: "1000001", PayeeName: "Yamada Taro", Amount: "1000000"},
		{Payee: "2000002", PayeeName: "Suzuki Hanako", Amount: "2000000"},
		{Payee: "3000003", PayeeName: "Sato Ken", Amount: "456000"},
	}
	bulk3Zengin = []device.Row{
		{Payee: "0001-001-1-1000001", PayeeName: "ﾔﾏﾀﾞ ﾀﾛｳ", Amount: "1000000"},
		{Payee: "0005-123-1-2000002", PayeeName: "ｽｽﾞｷ ﾊﾅｺ", Amount: "2000000"},
		{Payee: "0009-045-2-3000003", PayeeName: "ｻﾄｳ ｹﾝ", Amount: "456000"},
	}
)

func batchFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../policy/testdata/batch/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postUpload posts a multipart form with fields (name, value pairs) and,
// when file is non-nil, the file part "file".
func (b *browser) postUpload(ctx context.Context, target string, file []byte, fields ...string) (*http.Response, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = mw.WriteField(fields[i], fields[i+1])
	}
	if file != nil {
		fw, _ := mw.CreateFormFile("file", "batch.dat")
		_, _ = fw.Write(file)
	}
	_ = mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, &buf)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.send(req)
}

func (b *browser) uploadAsync(ctx context.Context, target string, file []byte, fields ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, body, err := b.postUpload(ctx, target, file, fields...)
		ch <- result{resp, body, err}
	}()
	return ch
}

// executedRows are the rows of operation op the bank executed, as rows.
func executedRows(ops []bank.Op, op string) []device.Row {
	var out []device.Row
	for _, o := range opsOf(ops, op) {
		out = append(out, device.Row{Payee: o.PayeeAccount, PayeeName: o.PayeeName, Amount: o.Amount})
	}
	return out
}

// checkBatchPrompt checks the phone's prompt for a batch: count, total,
// service, and every row fetched and checked against the context.
func checkBatchPrompt(t *testing.T, ctx context.Context, phone *device.Phone, ch *device.Challenge, service string, want []device.Row, total string) {
	t.Helper()
	b := ch.Parsed.Batch
	if b == nil || b.Count != len(want) || b.Total != total || b.Currency != "JPY" || ch.Parsed.Service != service {
		t.Fatalf("phone shows batch %+v service %q, want %d payees totalling %s JPY for %s", b, ch.Parsed.Service, len(want), total, service)
	}
	rows, err := phone.Rows(ctx, ch)
	if err != nil {
		t.Fatalf("phone fetching the rows: %v", err)
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("phone lists rows %q, want %q", rows, want)
	}
}

// TestBulkTransferCSVAndZenginShowEveryRowAndExecuteThem: a bulk file of
// three payments (1,000,000 + 2,000,000 + 456,000) in CSV and in Zengin
// (Shift_JIS) format: the phone shows 3 payees, the total 3,456,000 and
// lists all three rows; approved, the bank executes exactly those rows.
func TestBulkTransferCSVAndZenginShowEveryRowAndExecuteThem(t *testing.T) {
	// Four prompts in a few seconds, near the default push rate (5/min).
	e, g, phone := newAliceEnv(t, envOptions{}, "\t\tpush_rate 60")
	b := loggedIn(t, e, g, phone)
	for _, tc := range []struct {
		format, file string
		rows         []device.Row
	}{
		{"csv", "bulk3.csv", bulk3CSV},
		{"zengin", "bulk3.zengin", bulk3Zengin},
	} {
		t.Run(tc.format, func(t *testing.T) {
			e.resetOps(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res := b.uploadAsync(ctx, g.URL+"/transfer/bulk", batchFile(t, tc.file), "format", tc.format, "txn_password", alice.TxnPassword)
			ch := waitChallenge(t, phone)
			if n := len(opsOf(e.ops(t), bank.OpBulkRow)); n != 0 {
				t.Fatalf("bank executed %d rows before approval", n)
			}
			checkBatchPrompt(t, ctx, phone, ch, "総合振込", tc.rows, "3456000")
			if st, err := phone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
				t.Fatalf("approve: %d %v", st, err)
			}
			if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusOK {
				t.Fatalf("upload after approval: %v %v %.300q", r.err, r.resp, r.body)
			}
			if got := executedRows(e.ops(t), bank.OpBulkRow); !reflect.DeepEqual(got, tc.rows) {
				t.Fatalf("bank executed %q, want exactly %q", got, tc.rows)
			}
		})
	}
	// More rows than a page (100): the phone pages through all of them, and
	// the one at the end is listed and bound like the first.
	t.Run("csv 250 rows", func(t *testing.T) {
		e.resetOps(t)
		var file strings.Builder
		file.WriteString("payee_account,payee_name,amount\n")
		var rows []device.Row
		for i := 0; i < 250; i++ {
			r := device.Row{Payee: fmt.Sprintf("%07d", 4000000+i), PayeeName: fmt.Sprintf("Staff %d", i), Amount: fmt.Sprint(1000 + i)}
			rows = append(rows, r)
			fmt.Fprintf(&file, "%s,%s,%s\n", r.Payee, r.PayeeName, r.Amount)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res := b.uploadAsync(ctx, g.URL+"/transfer/bulk", []byte(file.String()), "format", "csv", "txn_password", alice.TxnPassword)
		ch := waitChallenge(t, phone)
		checkBatchPrompt(t, ctx, phone, ch, "総合振込", rows, "281125") // 250×1000 + 0+…+249
		if st, err := phone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
			t.Fatalf("approve: %d %v", st, err)
		}
		if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusOK {
			t.Fatalf("upload after approval: %v %v", r.err, r.resp)
		}
		if got := executedRows(e.ops(t), bank.OpBulkRow); !reflect.DeepEqual(got, rows) {
			t.Fatalf("bank executed %d rows, want the 250 approved", len(got))
		}
	})
}

// TestBulkTransferOverTheRowLimitIsRefused: a file of more rows than the
// rule's max_rows (500) is refused with 400 before any phone rings; the
// bank executes nothing. So is a file the parser does not understand.
func TestBulkTransferOverTheRowLimitIsRefused(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{}, "")
	b := loggedIn(t, e, g, phone)
	e.resetOps(t)
	var many strings.Builder
	many.WriteString("payee_account,payee_name,amount\n")
	for i := 0; i < 501; i++ {
		fmt.Fprintf(&many, "%07d,Payee %d,1000\n", 1000000+i, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, file := range map[string][]byte{
		"501 rows":           []byte(many.String()),
		"zengin sent as csv": batchFile(t, "bulk3.zengin"),
		"trailer disagrees":  batchFile(t, "bad-total.zengin"),
	} {
		format := "csv"
		if strings.Contains(name, "trailer") {
			format = "zengin"
		}
		resp, _, err := b.postUpload(ctx, g.URL+"/transfer/bulk", file, "format", format, "txn_password", alice.TxnPassword)
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: %v %v, want 400", name, err, resp)
		}
	}
	if p, _ := phone.Pending(ctx); len(p) != 0 {
		t.Fatalf("the phone rang for a refused file: %+v", p)
	}
	if ops := e.ops(t); len(ops) != 0 {
		t.Fatalf("the bank saw %d operations: %+v", len(ops), ops)
	}
	// The log says what is wrong and where, and holds no row.
	logs := g.logs.String()
	for _, want := range []string{"csv file has more than the 500 rows allowed", "csv file is not valid UTF-8", "zengin record 5: 合計金額 says 3456001 but the rows sum to 3456000"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the gateway's log does not say %q", want)
		}
	}
	if strings.Contains(logs, "Payee 7") || strings.Contains(logs, "1000007") {
		t.Error("a row of the refused file is in the gateway's log")
	}
}

// rowsTamperer rewrites the device API's rows pages on their way to the
// phone: the payee of the last row shown becomes another account (a
// gateway or network that shows the phone rows other than those bound).
type rowsTamperer struct{ next http.RoundTripper }

func (rt rowsTamperer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/rows") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	body = bytes.Replace(body, []byte(`"payee":"3000003"`), []byte(`"payee":"3000009"`), 1)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// TestBulkTransferDigestMismatchOnThePhoneExecutesNothing: the rows the
// phone is shown differ from those the context binds (one payee changed in
// transit). The phone recomputes the digest, refuses to sign an approval,
// and the user's denial leaves the bank untouched.
func TestBulkTransferDigestMismatchOnThePhoneExecutesNothing(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{}, "")
	b := loggedIn(t, e, g, phone)
	e.resetOps(t)
	state, err := phone.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	tampered, err := device.Restore(phone.Base(), state, device.WithHTTPClient(&http.Client{Transport: rowsTamperer{http.DefaultTransport}, Timeout: 20 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := b.uploadAsync(ctx, g.URL+"/transfer/bulk", batchFile(t, "bulk3.csv"), "format", "csv", "txn_password", alice.TxnPassword)
	ch := waitChallenge(t, tampered)
	if _, err := tampered.Rows(ctx, ch); !errors.Is(err, device.ErrRowsMismatch) {
		t.Fatalf("phone shown a changed row: Rows = %v, want ErrRowsMismatch", err)
	}
	if _, err := tampered.Decide(ctx, ch, device.Approve, 0); err == nil {
		t.Fatal("the phone signed an approval of rows it could not check")
	}
	if st, err := tampered.Decide(ctx, ch, device.Deny, 0); err != nil || st != http.StatusOK {
		t.Fatalf("deny: %d %v", st, err)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upload after the denial: %v %v, want 403", r.err, r.resp)
	}
	if got := executedRows(e.ops(t), bank.OpBulkRow); len(got) != 0 {
		t.Fatalf("bank executed %q", got)
	}
}

// TestBulkTransferFileSwappedAtReleaseIsNotExecuted: on a waiting page,
// the browser's release carries another file (a fourth row added, one
// amount changed). The gateway replays the file the phone approved, and
// only that one: the bank executes exactly the three approved rows.
func TestBulkTransferFileSwappedAtReleaseIsNotExecuted(t *testing.T) {
	e, g, phone := newAliceEnv(t, envOptions{edit: func(s string) string {
		return strings.Replace(s, "    service: 総合振込\n", "    service: 総合振込\n    mode: interstitial\n", 1)
	}}, "")
	b := loggedIn(t, e, g, phone)
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, page, err := b.postUpload(ctx, g.URL+"/transfer/bulk", batchFile(t, "bulk3.csv"), "format", "csv", "txn_password", alice.TxnPassword)
	if err != nil || resp.StatusCode != http.StatusOK || codeOnPage(page) == "" {
		t.Fatalf("upload: %v %v, want the waiting page with a code", err, resp)
	}
	var waitID string
	u, _ := url.Parse(g.URL + "/onepush/wait/x")
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == "onepush_wait" {
			waitID, _, _ = strings.Cut(c.Value, ".")
		}
	}
	ch := waitChallenge(t, phone)
	checkBatchPrompt(t, ctx, phone, ch, "総合振込", bulk3CSV, "3456000")
	if st, err := phone.DecideWithCode(ctx, ch, device.Approve, codeOnPage(page)); err != nil || st != http.StatusOK {
		t.Fatalf("approve: %d %v", st, err)
	}
	swapped := []byte("payee_account,payee_name,amount\n1000001,Yamada Taro,1000000\n2000002,Suzuki Hanako,2000000\n3000003,Sato Ken,4560000\n6666666,Mallory,9000000\n")
	resp, page, err = b.postUpload(ctx, g.URL+"/onepush/wait/"+waitID+"/continue", swapped, "format", "csv", "txn_password", alice.TxnPassword)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("release: %v %v %.300q", err, resp, page)
	}
	if got := executedRows(e.ops(t), bank.OpBulkRow); !reflect.DeepEqual(got, bulk3CSV) {
		t.Fatalf("bank executed %q, want exactly the approved %q", got, bulk3CSV)
	}
}

// TestPolicyTestPrintsTheBulkAggregates: `caddy onepush policy test` of the
// example policy on a raw bulk upload of the three-row CSV prints the
// count, the exact total, the digest and every row; `policy lint` says
// where each batch rule reads its rows.
func TestPolicyTestPrintsTheBulkAggregates(t *testing.T) {
	pol, _ := filepath.Abs("../examples/policy/bank.yaml")
	out, code := cli(t, "policy", "test", pol, "../policy/testdata/batch/bulk3.http")
	for _, want := range []string{
		"rule: bulk-transfer", "service: 総合振込",
		"batch: 3 payees, total 3456000 JPY (format csv, max 500 rows)",
		`3. payee "3000003", name "Sato Ken", amount 456000`,
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("policy test of a bulk upload: exit %d, want %q:\n%s", code, want, out)
		}
	}
	out, code = cli(t, "policy", "lint", pol)
	for _, want := range []string{
		`service 総合振込, batch: file "file" as {form.format} (csv or zengin), JPY, at most 500 rows,`,
		"service 給与賞与振込, batch: form columns payee_account, payee_name, amount, JPY, at most 500 rows,",
		"batch: looked up at GET /batch/{form.batch_no}/export.csv as csv, JPY, at most 500 rows,",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("policy lint: exit %d, want %q:\n%s", code, want, out)
		}
	}
}
