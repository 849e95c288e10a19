package policy

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	for _, name := range append(files, more...) {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("version: 1\nrules: [{name: a, kind: login, match: {path: {regex: \"(\"}}, user: {template: \"{\"}}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error is not an *Error: %v", err)
			}
			return
		}
		// A policy that parses must be usable.
		r, _ := http.NewRequest("POST", "http://bank.example.com/login", strings.NewReader(""))
		if r != nil {
			if rule := p.Match(r); rule != nil {
				_, _ = rule.Extract(r, []byte("a=b"))
			}
		}
	})
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/login", "/login/../login", "//login", "/LOGIN", "/login;jsessionid=1",
		"/log%69n", "/a%2f..%2flogin", "/login/", "/./login", "/login%00", "/%ff", `\login`,
		"/100%25", "/%2525", "/a/%2e%2e/b", "/%E6%8C%AF", "", "/İ", "/\u212a"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, ci bool) {
		out, err := NormalizePath(in, ci)
		if err != nil {
			if !errors.Is(err, errPath) {
				t.Fatalf("error %v does not wrap errPath", err)
			}
			return
		}
		again, err := NormalizePath(out, ci)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		if !strings.HasPrefix(out, "/") || strings.Contains(out, "//") || strings.Contains(out, "/../") ||
			strings.HasSuffix(out, "/..") || strings.Contains(out, "/./") || strings.HasSuffix(out, "/.") ||
			strings.ContainsAny(out, ";\\") || (len(out) > 1 && strings.HasSuffix(out, "/")) {
			t.Fatalf("NormalizePath(%q) = %q is not normal", in, out)
		}
	})
}

func FuzzExtract(f *testing.F) {
	p, err := Load(filepath.Join("..", "examples", "policy", "bank.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(0, "application/x-www-form-urlencoded", "", "contract_no=1&user_id=2&password=3")
	f.Add(1, "application/json", "amount=1", `{"payee_account":"1","amount":2,"x":[{"y":[]}]}`)
	f.Add(1, "multipart/form-data; boundary=B", "", "--B\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n1\r\n--B--\r\n")
	f.Add(2, "", "", "")
	f.Fuzz(func(t *testing.T, rule int, ct, query, body string) {
		rl := p.Rules[uint(rule)%uint(len(p.Rules))]
		r, err := http.NewRequest("POST", "http://bank.example.com/x", nil)
		if err != nil {
			t.Skip()
		}
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", ct)
		r.Header.Set("Cookie", "BANKSESSION=abc")
		x, err := rl.Extract(r, []byte(body))
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error does not wrap ErrBadRequest: %v", err)
			}
			return
		}
		if rl.userTmpl != nil && x.UserKey == "" {
			t.Fatal("empty user key accepted")
		}
		if len(x.Display) != len(rl.display) {
			t.Fatalf("display has %d fields, want %d", len(x.Display), len(rl.display))
		}
	})
}
