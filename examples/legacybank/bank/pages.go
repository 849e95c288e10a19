package bank

import (
	"bytes"
	"html/template"
	"net/http"
	"strconv"
)

type pageData struct {
	Title        string
	Error        string
	Message      string
	User         *User
	ContractNo   string
	UserID       string
	PayeeAccount string
	Amount       string
	Reference    string
}

const layout = `{{define "head"}}<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}} - Legacy Bank</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<header><img src="/static/logo.svg" alt="Legacy Bank" width="120" height="32"><span>Legacy Online Banking</span></header>
<main>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
{{end}}

{{define "foot"}}</main>
<footer>Legacy Bank Ltd. &mdash; demo application</footer>
</body>
</html>
{{end}}

{{define "login"}}{{template "head" .}}
<form method="post" action="/login">
<label for="contract_no">Contract number</label>
<input type="text" id="contract_no" name="contract_no" value="{{.ContractNo}}" autocomplete="off">
<label for="user_id">User ID</label>
<input type="text" id="user_id" name="user_id" value="{{.UserID}}" autocomplete="username">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password">
<button type="submit">Log in</button>
</form>
{{template "foot" .}}{{end}}

{{define "dashboard"}}{{template "head" .}}
<p>Welcome, {{.User.Name}}</p>
<p>Contract {{.User.ContractNo}} / user {{.User.UserID}}</p>
<ul>
<li><a href="/transfer">Make a transfer</a></li>
<li><a href="/menus">Pay-easy, bulk and payroll, batches, direct debit, settings</a></li>
<li><a href="/account">Account details (JSON)</a></li>
</ul>
<form method="post" action="/logout"><button type="submit">Log out</button></form>
{{template "foot" .}}{{end}}

{{define "transfer"}}{{template "head" .}}
<form method="post" action="/transfer">
<label for="payee_account">Payee account</label>
<input type="text" id="payee_account" name="payee_account" value="{{.PayeeAccount}}">
<label for="amount">Amount (JPY)</label>
<input type="text" id="amount" name="amount" value="{{.Amount}}" inputmode="numeric">
<label for="txn_password">Transaction password</label>
<input type="password" id="txn_password" name="txn_password" autocomplete="off">
<button type="submit">Transfer</button>
</form>
<p><a href="/dashboard">Back to dashboard</a></p>
{{template "foot" .}}{{end}}

{{define "done"}}{{template "head" .}}
<p class="ok">Transfer of {{.Amount}} JPY to {{.PayeeAccount}} accepted</p>
<p>Reference number: <strong id="reference">{{.Reference}}</strong></p>
<p><a href="/dashboard">Back to dashboard</a></p>
{{template "foot" .}}{{end}}

{{define "message"}}{{template "head" .}}
<p>{{.Message}}</p>
<p><a href="/login">Log in</a> &middot; <a href="/dashboard">Dashboard</a></p>
{{template "foot" .}}{{end}}
`

var pages = template.Must(template.New("bank").Parse(layout))

func (b *Bank) render(w http.ResponseWriter, status int, name string, d pageData) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (b *Bank) renderMessage(w http.ResponseWriter, status int, title, msg string) {
	b.render(w, status, "message", pageData{Title: title, Message: msg})
}
