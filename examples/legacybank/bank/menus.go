package bank

import (
	"bytes"
	"crypto/subtle"
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/text/encoding/japanese"
)

// The seed's other menus (振込・振替 is handleTransfer): Pay-easy
// (税金・各種料金払込), bulk transfer by file (総合振込), payroll
// (給与賞与振込), maker–approver batches (承認), direct-debit registration
// (口座振替) and settings (各種設定). Each runs after the transaction
// password, as the plain legacy application it is.
const (
	OpPayEasy        = "payeasy"
	OpBulkRow        = "bulk_row"    // one executed row of a bulk file
	OpPayrollRow     = "payroll_row" // one executed row of a payroll form
	OpBatchCreated   = "batch_created"
	OpBatchRow       = "batch_row" // one executed row of an approved batch
	OpDebitRegister  = "debit_register"
	OpSettings       = "settings"
	OpMenuRefused    = "menu_refused"
	MaxBatchFileRows = 5000
)

// batch is a batch a maker uploaded, waiting for another user of the same
// contract to approve it.
type batch struct {
	No       string
	Contract string
	Maker    string
	Rows     []batchRow
	Done     bool
}

type batchRow struct{ Payee, Name, Amount string }

type menuData struct {
	pageData
	Rows    []batchRow
	BatchNo string
}

const menuPages = `{{define "menus"}}{{template "head" .}}
<ul>
<li><a href="/transfer">振込・振替 Transfer</a></li>
<li><a href="/payeasy">税金・各種料金払込 Pay-easy</a></li>
<li><a href="/transfer/bulk">総合振込 Bulk transfer (file)</a></li>
<li><a href="/payroll">給与賞与振込 Payroll</a></li>
<li><a href="/batch/upload">承認待ち Batches (maker / approver)</a></li>
<li><a href="/debit/register">口座振替 Direct debit</a></li>
<li><a href="/settings">各種設定 Settings</a></li>
</ul>
{{template "foot" .}}{{end}}

{{define "payeasy"}}{{template "head" .}}
<form method="post" action="/payeasy">
<label>収納機関番号 Collector number <input name="collector_no" inputmode="numeric"></label>
<label>お客様番号 Customer number <input name="customer_no"></label>
<label>確認番号 Confirmation number <input name="confirm_no" inputmode="numeric"></label>
<label>Amount (JPY) <input name="amount" inputmode="numeric"></label>
<label>Transaction password <input type="password" name="txn_password" autocomplete="off"></label>
<button type="submit">Pay</button>
</form>
{{template "foot" .}}{{end}}

{{define "bulk"}}{{template "head" .}}
<form method="post" action="{{.Message}}" enctype="multipart/form-data">
<label>Format <select name="format"><option value="zengin">全銀 (Zengin)</option><option value="csv">CSV</option></select></label>
<label>File <input type="file" name="file"></label>
<label>Transaction password <input type="password" name="txn_password" autocomplete="off"></label>
<button type="submit">Upload</button>
</form>
{{template "foot" .}}{{end}}

{{define "payroll"}}{{template "head" .}}
<form method="post" action="/payroll">
<table><tr><th>Account</th><th>Name</th><th>Amount</th></tr>
{{range .Rows}}<tr><td><input name="payee_account"></td><td><input name="payee_name"></td><td><input name="amount" inputmode="numeric"></td></tr>
{{end}}</table>
<label>Transaction password <input type="password" name="txn_password" autocomplete="off"></label>
<button type="submit">Pay salaries</button>
</form>
{{template "foot" .}}{{end}}

{{define "batchdone"}}{{template "head" .}}
<p class="ok">{{.Message}}</p>
{{if .BatchNo}}<p>Batch number: <strong id="batch_no">{{.BatchNo}}</strong></p>{{end}}
<table>{{range .Rows}}<tr><td>{{.Payee}}</td><td>{{.Name}}</td><td>{{.Amount}}</td></tr>{{end}}</table>
<p><a href="/dashboard">Back to dashboard</a></p>
{{template "foot" .}}{{end}}

{{define "approve"}}{{template "head" .}}
<form method="post" action="/batch/approve">
<label>Batch number <input name="batch_no"></label>
<label>Transaction password <input type="password" name="txn_password" autocomplete="off"></label>
<button type="submit">Approve</button>
</form>
{{template "foot" .}}{{end}}

{{define "debit"}}{{template "head" .}}
<form method="post" action="/debit/register">
<label>収納企業 Biller code <input name="biller_code"></label>
<label>お客様番号 Customer number <input name="customer_no"></label>
<label>Transaction password <input type="password" name="txn_password" autocomplete="off"></label>
<button type="submit">Register</button>
</form>
{{template "foot" .}}{{end}}

{{define "settings"}}{{template "head" .}}
<form method="post" action="/settings">
<label>Daily transfer limit (JPY) <input name="daily_limit" inputmode="numeric"></label>
<label>Registered e-mail <input name="email" type="email"></label>
<label>Transaction password <input type="password" name="txn_password" autocomplete="off"></label>
<button type="submit">Change</button>
</form>
{{template "foot" .}}{{end}}
`

var menuTemplates = template.Must(template.New("menus").Parse(layout + menuPages))

// menus registers the menus' routes.
func (b *Bank) menus(m *http.ServeMux) {
	m.HandleFunc("GET /menus", b.menuPage("menus", "Menus", menuData{}))
	m.HandleFunc("GET /payeasy", b.menuPage("payeasy", "Pay-easy", menuData{}))
	m.HandleFunc("POST /payeasy", b.withTxnPassword(b.payEasy))
	m.HandleFunc("GET /transfer/bulk", b.menuPage("bulk", "Bulk transfer", menuData{pageData: pageData{Message: "/transfer/bulk"}}))
	m.HandleFunc("POST /transfer/bulk", b.withTxnPassword(b.bulkTransfer))
	m.HandleFunc("GET /payroll", b.menuPage("payroll", "Payroll", menuData{Rows: make([]batchRow, 10)}))
	m.HandleFunc("POST /payroll", b.withTxnPassword(b.payroll))
	m.HandleFunc("GET /batch/upload", b.menuPage("bulk", "New batch (maker)", menuData{pageData: pageData{Message: "/batch/upload"}}))
	m.HandleFunc("POST /batch/upload", b.withTxnPassword(b.batchUpload))
	m.HandleFunc("GET /batch/approve", b.menuPage("approve", "Approve a batch", menuData{}))
	m.HandleFunc("POST /batch/approve", b.withTxnPassword(b.batchApprove))
	m.HandleFunc("GET /batch/{no}/export.csv", b.batchExport)
	m.HandleFunc("GET /debit/register", b.menuPage("debit", "Direct debit", menuData{}))
	m.HandleFunc("POST /debit/register", b.withTxnPassword(b.debitRegister))
	m.HandleFunc("GET /settings", b.menuPage("settings", "Settings", menuData{}))
	m.HandleFunc("POST /settings", b.withTxnPassword(b.settings))
}

func (b *Bank) menuPage(name, title string, d menuData) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := b.sessionFor(r)
		if s == nil {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		d := d
		d.Title, d.User = title, s.user
		b.renderMenu(w, http.StatusOK, name, d)
	}
}

func (b *Bank) renderMenu(w http.ResponseWriter, status int, name string, d menuData) {
	var buf bytes.Buffer
	if err := menuTemplates.ExecuteTemplate(&buf, name, d); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// menuRequest is a menu post that passed the session and the transaction
// password.
type menuRequest struct {
	r    *http.Request
	s    *session
	raw  []byte
	form url.Values
	file []byte // the multipart part "file", when the post is an upload
}

// refuse records and answers a menu post that is not executed.
func (b *Bank) refuse(w http.ResponseWriter, m *menuRequest, status int, reason, msg string) {
	op := Op{Op: OpMenuRefused, Reason: reason}
	if m.s != nil {
		op.ContractNo, op.UserID, op.Session = m.s.user.ContractNo, m.s.user.UserID, m.s.id
	}
	b.record(op, m.r, m.raw)
	b.renderMessage(w, status, "Not executed", msg+" Nothing was executed.")
}

// withTxnPassword reads a menu post (form or upload) and runs next only for
// a signed-in customer who typed the transaction password.
func (b *Bank) withTxnPassword(next func(http.ResponseWriter, *menuRequest)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := &menuRequest{r: r}
		var err error
		m.raw, m.form, m.file, err = readUpload(r)
		if err != nil {
			b.formError(w, err)
			return
		}
		if m.s = b.sessionFor(r); m.s == nil {
			b.refuse(w, m, http.StatusUnauthorized, "no_session", "You are not logged in.")
			return
		}
		if subtle.ConstantTimeCompare([]byte(m.s.user.TxnPassword), []byte(m.form.Get("txn_password"))) != 1 {
			b.refuse(w, m, http.StatusForbidden, "bad_txn_password", "Transaction password incorrect.")
			return
		}
		next(w, m)
	}
}

// readUpload is readForm that also keeps the first file part named "file".
func readUpload(r *http.Request) (raw []byte, form url.Values, file []byte, err error) {
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		raw, form, err = readForm(r)
		return raw, form, nil, err
	}
	if raw, err = io.ReadAll(r.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return raw, nil, nil, errTooLarge
		}
		return raw, nil, nil, errMalformed
	}
	form = url.Values{}
	mr := multipart.NewReader(bytes.NewReader(raw), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return raw, form, file, nil
		}
		if err != nil {
			return raw, nil, nil, errMalformed
		}
		v, err := io.ReadAll(p)
		if err != nil {
			return raw, nil, nil, errMalformed
		}
		switch {
		case p.FileName() == "":
			form.Add(p.FormName(), string(v))
		case p.FormName() == "file" && file == nil:
			file = v
		}
	}
}

func (b *Bank) payEasy(w http.ResponseWriter, m *menuRequest) {
	collector, customer, confirm := m.form.Get("collector_no"), m.form.Get("customer_no"), m.form.Get("confirm_no")
	amount, ok := parseAmount(m.form.Get("amount"))
	if !ok || len(collector) != 5 || !digits(collector) || customer == "" || confirm == "" || !digits(confirm) {
		b.refuse(w, m, http.StatusBadRequest, "invalid_payeasy", "収納機関番号 (5 digits), お客様番号, 確認番号 and the amount are required.")
		return
	}
	ref := b.execute(m, Op{Op: OpPayEasy, PayeeAccount: collector + "/" + customer, Amount: strconv.FormatInt(amount, 10)})
	b.renderMenu(w, http.StatusOK, "batchdone", menuData{pageData: pageData{Title: "Paid", User: m.s.user, Message: "Pay-easy payment accepted: " + ref}})
}

func (b *Bank) debitRegister(w http.ResponseWriter, m *menuRequest) {
	biller, customer := m.form.Get("biller_code"), m.form.Get("customer_no")
	if biller == "" || customer == "" {
		b.refuse(w, m, http.StatusBadRequest, "invalid_debit", "The biller code and the customer number are required.")
		return
	}
	ref := b.execute(m, Op{Op: OpDebitRegister, PayeeAccount: biller + "/" + customer})
	b.renderMenu(w, http.StatusOK, "batchdone", menuData{pageData: pageData{Title: "Registered", User: m.s.user, Message: "Direct debit registered: " + ref}})
}

func (b *Bank) settings(w http.ResponseWriter, m *menuRequest) {
	limit, email := m.form.Get("daily_limit"), m.form.Get("email")
	if _, ok := parseAmount(limit); !ok || !strings.Contains(email, "@") {
		b.refuse(w, m, http.StatusBadRequest, "invalid_settings", "A daily limit in yen and an e-mail address are required.")
		return
	}
	ref := b.execute(m, Op{Op: OpSettings, Amount: limit, PayeeAccount: email})
	b.renderMenu(w, http.StatusOK, "batchdone", menuData{pageData: pageData{Title: "Changed", User: m.s.user, Message: "Settings changed: " + ref}})
}

func (b *Bank) bulkTransfer(w http.ResponseWriter, m *menuRequest) {
	rows, err := readBatchFile(m.form.Get("format"), m.file)
	if err != nil {
		b.refuse(w, m, http.StatusBadRequest, "invalid_file", "The file could not be read: "+err.Error()+".")
		return
	}
	b.executeRows(w, m, OpBulkRow, "", rows)
}

func (b *Bank) payroll(w http.ResponseWriter, m *menuRequest) {
	acc, name, amt := m.form["payee_account"], m.form["payee_name"], m.form["amount"]
	if len(acc) != len(name) || len(acc) != len(amt) {
		b.refuse(w, m, http.StatusBadRequest, "invalid_payroll", "Every line needs an account, a name and an amount.")
		return
	}
	var rows []batchRow
	for i := range acc {
		if acc[i] == "" && name[i] == "" && amt[i] == "" {
			continue // an unused line of the form
		}
		rows = append(rows, batchRow{Payee: acc[i], Name: name[i], Amount: amt[i]})
	}
	if err := checkRows(rows); err != nil {
		b.refuse(w, m, http.StatusBadRequest, "invalid_payroll", err.Error())
		return
	}
	b.executeRows(w, m, OpPayrollRow, "", rows)
}

// batchUpload keeps a maker's batch for approval by another user of the
// same contract; with batch_no it replaces the rows of the maker's own
// pending batch (a correction).
func (b *Bank) batchUpload(w http.ResponseWriter, m *menuRequest) {
	rows, err := readBatchFile(m.form.Get("format"), m.file)
	if err != nil {
		b.refuse(w, m, http.StatusBadRequest, "invalid_file", "The file could not be read: "+err.Error()+".")
		return
	}
	b.mu.Lock()
	if b.batches == nil {
		b.batches = map[string]*batch{}
	}
	no := m.form.Get("batch_no")
	bt := b.batches[no]
	switch {
	case no == "":
		b.batchSeq++
		no = fmt.Sprintf("B%06d", b.batchSeq)
		bt = &batch{No: no, Contract: m.s.user.ContractNo, Maker: m.s.user.UserID}
		b.batches[no] = bt
	case bt == nil || bt.Done || bt.Maker != m.s.user.UserID || bt.Contract != m.s.user.ContractNo:
		b.mu.Unlock()
		b.refuse(w, m, http.StatusNotFound, "unknown_batch", "No pending batch of yours has that number.")
		return
	}
	bt.Rows = rows
	b.mu.Unlock()
	b.record(Op{Op: OpBatchCreated, ContractNo: m.s.user.ContractNo, UserID: m.s.user.UserID, Session: m.s.id, Reference: no}, m.r, m.raw)
	b.renderMenu(w, http.StatusOK, "batchdone", menuData{pageData: pageData{Title: "Batch kept for approval", User: m.s.user,
		Message: fmt.Sprintf("%d rows wait for approval by another user.", len(rows))}, BatchNo: no, Rows: rows})
}

// pendingBatch is batch no of the session's contract, waiting for approval.
func (b *Bank) pendingBatch(s *session, no string) *batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	bt := b.batches[no]
	if bt == nil || bt.Done || bt.Contract != s.user.ContractNo {
		return nil
	}
	return bt
}

// batchExport serves a pending batch of the session's contract as CSV (the
// approver's detail view).
func (b *Bank) batchExport(w http.ResponseWriter, r *http.Request) {
	s := b.sessionFor(r)
	if s == nil {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return
	}
	bt := b.pendingBatch(s, r.PathValue("no"))
	if bt == nil {
		http.Error(w, "no such batch", http.StatusNotFound)
		return
	}
	b.mu.Lock()
	rows := append([]batchRow(nil), bt.Rows...)
	b.mu.Unlock()
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	_ = cw.Write([]string{"payee_account", "payee_name", "amount"})
	for _, row := range rows {
		_ = cw.Write([]string{row.Payee, row.Name, row.Amount})
	}
	cw.Flush()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// batchApprove executes a pending batch of the contract, approved by a
// user other than its maker.
func (b *Bank) batchApprove(w http.ResponseWriter, m *menuRequest) {
	no := m.form.Get("batch_no")
	bt := b.pendingBatch(m.s, no)
	if bt == nil {
		b.refuse(w, m, http.StatusNotFound, "unknown_batch", "No pending batch of your contract has that number.")
		return
	}
	b.mu.Lock()
	if bt.Maker == m.s.user.UserID || bt.Done {
		b.mu.Unlock()
		b.refuse(w, m, http.StatusForbidden, "maker_cannot_approve", "A batch is approved by another user than its maker.")
		return
	}
	bt.Done = true
	rows := bt.Rows
	b.mu.Unlock()
	b.executeRows(w, m, OpBatchRow, no, rows)
}

// execute records one executed operation and returns its reference.
func (b *Bank) execute(m *menuRequest, op Op) string {
	b.mu.Lock()
	b.txnSeq++
	ref := fmt.Sprintf("TX%s-%06d", b.now().Format("20060102"), b.txnSeq)
	b.mu.Unlock()
	op.ContractNo, op.UserID, op.Session, op.Reference = m.s.user.ContractNo, m.s.user.UserID, m.s.id, ref
	b.record(op, m.r, m.raw)
	return ref
}

// executeRows executes every row, each recorded in the operations log.
func (b *Bank) executeRows(w http.ResponseWriter, m *menuRequest, op, batchNo string, rows []batchRow) {
	for _, row := range rows {
		n, _ := parseAmount(row.Amount) // checkRows passed
		b.execute(m, Op{Op: op, PayeeAccount: row.Payee, PayeeName: row.Name, Amount: strconv.FormatInt(n, 10), Batch: batchNo})
	}
	b.renderMenu(w, http.StatusOK, "batchdone", menuData{pageData: pageData{Title: "Transfers accepted", User: m.s.user,
		Message: fmt.Sprintf("%d transfers accepted.", len(rows))}, BatchNo: batchNo, Rows: rows})
}

// readBatchFile reads a bulk file: "csv" (UTF-8, header
// payee_account,payee_name,amount) or "zengin" (全銀 120-byte records in
// Shift_JIS, header/data/trailer/end, optional CRLF between records).
func readBatchFile(format string, data []byte) ([]batchRow, error) {
	var rows []batchRow
	switch format {
	case "csv":
		recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil || len(recs) < 2 || strings.Join(recs[0], ",") != "payee_account,payee_name,amount" {
			return nil, errors.New("not a CSV batch with the header payee_account,payee_name,amount")
		}
		for _, r := range recs[1:] {
			rows = append(rows, batchRow{Payee: r[0], Name: r[1], Amount: r[2]})
		}
	case "zengin":
		var err error
		if rows, err = readZengin(data); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown format %q", format)
	}
	return rows, checkRows(rows)
}

func readZengin(data []byte) ([]batchRow, error) {
	data = bytes.TrimSuffix(data, []byte{0x1a})
	var recs []string
	for len(data) >= 120 {
		recs = append(recs, string(data[:120]))
		data = bytes.TrimPrefix(bytes.TrimPrefix(data[120:], []byte("\r")), []byte("\n"))
	}
	if len(data) != 0 || len(recs) < 4 || recs[0][0] != '1' || recs[len(recs)-1][0] != '9' || recs[len(recs)-2][0] != '8' {
		return nil, errors.New("not a Zengin file (header, data, trailer, end records of 120 bytes)")
	}
	var rows []batchRow
	var total int64
	for _, rec := range recs[1 : len(recs)-2] {
		if rec[0] != '2' {
			return nil, errors.New("a Zengin record between header and trailer is not a data record")
		}
		name, err := japanese.ShiftJIS.NewDecoder().String(rec[50:80])
		if err != nil {
			return nil, errors.New("a Zengin payee name is not Shift_JIS")
		}
		amount := strings.TrimLeft(rec[80:90], "0")
		n, _ := strconv.ParseInt(amount, 10, 64)
		total += n
		rows = append(rows, batchRow{Payee: rec[1:5] + "-" + rec[20:23] + "-" + rec[42:43] + "-" + rec[43:50], Name: strings.TrimRight(name, " "), Amount: amount})
	}
	trailer := recs[len(recs)-2]
	count, _ := strconv.Atoi(trailer[1:7])
	sum, _ := strconv.ParseInt(trailer[7:19], 10, 64)
	if count != len(rows) || sum != total {
		return nil, errors.New("the Zengin trailer's count or total does not match the data records")
	}
	return rows, nil
}

func checkRows(rows []batchRow) error {
	if len(rows) == 0 || len(rows) > MaxBatchFileRows {
		return fmt.Errorf("a batch has 1 to %d rows, not %d", MaxBatchFileRows, len(rows))
	}
	for i, r := range rows {
		if _, ok := parseAmount(r.Amount); !ok || r.Payee == "" {
			return fmt.Errorf("row %d: an account and an amount in yen are required", i+1)
		}
	}
	return nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
