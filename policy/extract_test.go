package policy

import (
	"bytes"
	"errors"
	"mime/multipart"
	"reflect"
	"strings"
	"testing"
)

func multipartBody(t testing.TB, parts ...[3]string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts { // {name, value, filename}
		var err error
		if p[2] != "" {
			var fw interface{ Write([]byte) (int, error) }
			fw, err = w.CreateFormFile(p[0], p[2])
			if err == nil {
				_, err = fw.Write([]byte(p[1]))
			}
		} else {
			err = w.WriteField(p[0], p[1])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), buf.Bytes()
}

func TestExtract(t *testing.T) {
	p := loadBank(t)
	const host = "bank.example.com" // as sent: Bank.Example.com:8443
	login, transfer, logout := p.Rules[0], p.Rules[2], p.Rules[3]
	const form = "application/x-www-form-urlencoded"
	mpCT, mpBody := multipartBody(t, [3]string{"contract_no", "C-001"}, [3]string{"user_id", "taro"},
		[3]string{"password", "pw"}, [3]string{"avatar", "GIF89a", "a.gif"})
	mpDupCT, mpDupBody := multipartBody(t, [3]string{"contract_no", "C-001"}, [3]string{"user_id", "taro"},
		[3]string{"password", "pw"}, [3]string{"user_id", "jiro"})
	mpFileCT, mpFileBody := multipartBody(t, [3]string{"contract_no", "C-001"}, [3]string{"password", "pw"},
		[3]string{"user_id", "taro", "user_id.txt"})

	tests := []struct {
		name    string
		rule    *Rule
		target  string
		ct      string
		body    string
		cookies []string
		header  map[string]string
		want    *Extraction
		wantErr string // substring; implies ErrBadRequest
	}{
		{
			name: "login urlencoded", rule: login, target: "/login", ct: form,
			body: "contract_no=C-001&user_id=taro+yamada&password=p%40ss",
			want: &Extraction{UserKey: "C-001/taro yamada", Display: []Field{{Label: "Contract", Value: "C-001", Labels: contractLabels}, {Label: "User", Value: "taro yamada", Labels: userLabels}}, Host: host},
		},
		{
			name: "login urlencoded with charset and extra fields", rule: login, target: "/login?lang=ja", ct: form + "; charset=UTF-8",
			body: "x=1&contract_no=C-001&user_id=taro&password=pw&submit=",
			want: &Extraction{UserKey: "C-001/taro", Display: []Field{{Label: "Contract", Value: "C-001", Labels: contractLabels}, {Label: "User", Value: "taro", Labels: userLabels}}, Host: host},
		},
		{
			name: "login multipart ignores file parts", rule: login, target: "/login", ct: mpCT, body: string(mpBody),
			want: &Extraction{UserKey: "C-001/taro", Display: []Field{{Label: "Contract", Value: "C-001", Labels: contractLabels}, {Label: "User", Value: "taro", Labels: userLabels}}, Host: host},
		},
		{
			name: "login carries the session it is started in", rule: login, target: "/login", ct: form,
			body: "contract_no=C&user_id=u&password=p", cookies: []string{"BANKSESSION=kept"},
			want: &Extraction{UserKey: "C/u", SessionID: "kept", Display: []Field{{Label: "Contract", Value: "C", Labels: contractLabels}, {Label: "User", Value: "u", Labels: userLabels}}, Host: host},
		},
		{
			name: "transfer values exact, nothing trimmed", rule: transfer, target: "/transfer", ct: form,
			body:    "payee_account=+0012345+&amount=1000&txn_password=x",
			cookies: []string{"BANKSESSION=s3ss10n"},
			want:    &Extraction{SessionID: "s3ss10n", Transaction: &Transaction{Amount: "1000", Currency: "JPY", Payee: " 0012345 ", AmountShown: yen("1,000")}, Host: host},
		},
		{
			name: "transfer JSON, numbers as written", rule: transfer, target: "/transfer", ct: "application/json",
			body:    `{"payee_account":"0012345","amount":50000,"memo":{"amount":1},"list":[1,{"a":2}]}`,
			cookies: []string{"BANKSESSION=s"},
			want:    &Extraction{SessionID: "s", Transaction: &Transaction{Amount: "50000", Currency: "JPY", Payee: "0012345", AmountShown: yen("50,000")}, Host: host},
		},
		{
			name: "transfer without session cookie", rule: transfer, target: "/transfer", ct: form,
			body: "payee_account=1&amount=2",
			want: &Extraction{Transaction: &Transaction{Amount: "2", Currency: "JPY", Payee: "1", AmountShown: yen("2")}, Host: host},
		},
		{
			name: "logout needs no body", rule: logout, target: "/logout", cookies: []string{"OTHER=1", "BANKSESSION=abc"},
			want: &Extraction{SessionID: "abc", Host: host},
		},
		{name: "repeated field", rule: transfer, target: "/transfer", ct: form,
			body: "payee_account=1&amount=100&amount=999999", wantErr: `field "amount" repeated`},
		{name: "repeated field in another case", rule: transfer, target: "/transfer", ct: form,
			body: "payee_account=1&amount=100&AMOUNT=999999", wantErr: `field "amount" repeated`},
		{name: "repeated field, encoded name", rule: transfer, target: "/transfer", ct: form,
			body: "payee_account=1&amount=100&amoun%74=9", wantErr: `field "amount" repeated`},
		{name: "field in query too", rule: transfer, target: "/transfer?amount=999999", ct: form,
			body: "payee_account=1&amount=100", wantErr: `field "amount" repeated in the URL query`},
		{name: "field in query with semicolon separator", rule: transfer, target: "/transfer?x=1;amount=9", ct: form,
			body: "payee_account=1&amount=100", wantErr: `field "amount" repeated in the URL query`},
		{name: "missing field", rule: login, target: "/login", ct: form,
			body: "contract_no=C&password=pw", wantErr: `required field "user_id" missing`},
		{name: "field present only in another case", rule: transfer, target: "/transfer", ct: form,
			body: "payee_account=1&Amount=100", wantErr: `required field "amount" missing`},
		{name: "empty user key", rule: mustParse(t, `version: 1
rules:
  - {name: a, kind: login, match: {path: {exact: /l}}, user: {template: "{form.u}"}}
`).Rules[0], target: "/l", ct: form, body: "u=", wantErr: "user key is empty"},
		{name: "semicolon in form body", rule: transfer, target: "/transfer", ct: form,
			body: "payee_account=1&amount=100;amount=9", wantErr: "semicolon in form body"},
		{name: "bad escape in form body", rule: transfer, target: "/transfer", ct: form,
			body: "payee_account=1&amount=%zz", wantErr: "form body"},
		{name: "unsupported content type", rule: transfer, target: "/transfer", ct: "text/plain",
			body: "payee_account=1&amount=2", wantErr: `unsupported content type "text/plain"`},
		{name: "content type not allowed by the rule", rule: login, target: "/login", ct: "application/json",
			body: `{"contract_no":"C","user_id":"u","password":"p"}`, wantErr: `unsupported content type "application/json"`},
		{name: "no content type", rule: transfer, target: "/transfer", body: "payee_account=1&amount=2", wantErr: "no content type"},
		{name: "multipart repeated", rule: login, target: "/login", ct: mpDupCT, body: string(mpDupBody), wantErr: `field "user_id" repeated`},
		{name: "multipart field sent as file", rule: login, target: "/login", ct: mpFileCT, body: string(mpFileBody), wantErr: `field "user_id" sent as a file`},
		{name: "multipart truncated", rule: login, target: "/login", ct: mpCT, body: string(mpBody[:len(mpBody)-20]), wantErr: "multipart body"},
		{name: "multipart without boundary", rule: login, target: "/login", ct: "multipart/form-data", body: "x", wantErr: "without boundary"},
		{name: "JSON repeated key", rule: transfer, target: "/transfer", ct: "application/json",
			body: `{"payee_account":"1","amount":"100","amount":"999999"}`, wantErr: `field "amount" repeated`},
		{name: "JSON repeated key via escape", rule: transfer, target: "/transfer", ct: "application/json",
			body: `{"payee_account":"1","amount":"100","\u0061mount":"9"}`, wantErr: `field "amount" repeated`},
		{name: "JSON nested value is not a field", rule: transfer, target: "/transfer", ct: "application/json",
			body: `{"payee_account":"1","amount":{"value":100}}`, wantErr: `field "amount" is not a string or number`},
		{name: "JSON bool is not a field", rule: transfer, target: "/transfer", ct: "application/json",
			body: `{"payee_account":"1","amount":true}`, wantErr: `field "amount" is not a string or number`},
		{name: "JSON array body", rule: transfer, target: "/transfer", ct: "application/json", body: `[1]`, wantErr: "not an object"},
		{name: "JSON trailing data", rule: transfer, target: "/transfer", ct: "application/json",
			body: `{"payee_account":"1","amount":"2"}{"amount":"3"}`, wantErr: "data after the object"},
		{name: "JSON invalid", rule: transfer, target: "/transfer", ct: "application/json", body: `{"amount":`, wantErr: "JSON body"},
		{name: "JSON invalid UTF-8", rule: transfer, target: "/transfer", ct: "application/json",
			body: "{\"payee_account\":\"1\",\"amount\":\"\xff\"}", wantErr: "not valid UTF-8"},
		{name: "session cookie repeated", rule: transfer, target: "/transfer", ct: form,
			body: "payee_account=1&amount=2", cookies: []string{"BANKSESSION=a", "BANKSESSION=b"}, wantErr: `cookie "BANKSESSION" repeated`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReq("POST", tt.target, "Bank.Example.com:8443", tt.ct)
			if len(tt.cookies) > 0 {
				r.Header.Set("Cookie", strings.Join(tt.cookies, "; "))
			}
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			got, err := tt.rule.Extract(r, []byte(tt.body))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Extract = %+v, want error containing %q", got, tt.wantErr)
				}
				if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Extract error = %v, want ErrBadRequest containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Extract = %#v\nwant      %#v", got, tt.want)
			}
		})
	}
}

func TestExtractHeaders(t *testing.T) {
	p := mustParse(t, `version: 1
rules:
  - name: sso
    kind: login
    match: {path: {exact: /sso}}
    user: {header: X-Remote-User}
  - name: tenant
    kind: login
    match: {path: {exact: /t}}
    user: {template: "{header.X-Tenant}:{form.u}"}
    display:
      - {label: "Agent", value: "{header.User-Agent} {{raw}}"}
`)
	sso, tenant := p.Rules[0], p.Rules[1]
	tests := []struct {
		name    string
		rule    *Rule
		headers [][2]string
		body    string
		user    string
		display []Field
		wantErr string
	}{
		{"header user", sso, [][2]string{{"x-remote-user", "alice"}}, "", "alice", nil, ""},
		{"header user missing", sso, nil, "", "", nil, "user key is empty"},
		{"header user repeated", sso, [][2]string{{"X-Remote-User", "a"}, {"X-Remote-User", "b"}}, "", "", nil, `header "X-Remote-User" repeated`},
		{"template with header", tenant, [][2]string{{"X-Tenant", "t1"}, {"User-Agent", "UA"}}, "u=bob", "t1:bob", []Field{{Label: "Agent", Value: "UA {raw}"}}, ""},
		{"display header absent is refused", tenant, [][2]string{{"X-Tenant", "t1"}}, "u=bob", "", nil, `header "User-Agent" missing`},
		{"display header empty is refused", tenant, [][2]string{{"X-Tenant", "t1"}, {"User-Agent", ""}}, "u=bob", "", nil, "{header.User-Agent} of the phone's display is empty"},
		{"display header with a bidi override is refused", tenant, [][2]string{{"X-Tenant", "t1"}, {"User-Agent", "UA\u202e"}}, "u=bob", "", nil, `display "Agent" contains the character U+202E`},
		{"template header missing", tenant, nil, "u=bob", "", nil, `header "X-Tenant" missing`},
		{"template field missing", tenant, [][2]string{{"X-Tenant", "t1"}}, "v=bob", "", nil, `required field "u" missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReq("POST", "/", "", "application/x-www-form-urlencoded")
			r.Header.Del("User-Agent")
			for _, h := range tt.headers {
				r.Header.Add(h[0], h[1])
			}
			x, err := tt.rule.Extract(r, []byte(tt.body))
			if !extracted(t, err, tt.wantErr) {
				return
			}
			if x.UserKey != tt.user || !reflect.DeepEqual(x.Display, tt.display) || x.SessionID != "" {
				t.Errorf("got %#v, want user %q display %#v", x, tt.user, tt.display)
			}
		})
	}
}

func TestExtractMultipartQuotedPrintableRefused(t *testing.T) {
	p := loadBank(t)
	body := "--B\r\nContent-Disposition: form-data; name=\"contract_no\"\r\n\r\nC\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"user_id\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nta=72o\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\np\r\n--B--\r\n"
	r := newReq("POST", "/login", "", "multipart/form-data; boundary=B")
	_, err := p.Rules[0].Extract(r, []byte(body))
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "quoted-printable") {
		t.Fatalf("err = %v", err)
	}
	bad := strings.Replace(body, `name="user_id"`, `name="user_id"; name="x"`, 1)
	if _, err := p.Rules[0].Extract(r, []byte(bad)); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("duplicate disposition parameter: err = %v", err)
	}
}

// The example policy's labels and amount format, per language.
var (
	contractLabels = map[string]string{"ja": "契約者番号", "en": "Contract"}
	userLabels     = map[string]string{"ja": "利用者ID", "en": "User"}
)

func yen(grouped string) map[string]string {
	return map[string]string{"ja": grouped + "円", "en": "¥" + grouped}
}
