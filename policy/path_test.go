package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in   string
		ci   bool
		want string // "" means an error is expected
	}{
		{"/login", false, "/login"},
		{"/login/../login", false, "/login"},
		{"//login", false, "/login"},
		{"/LOGIN", true, "/login"},
		{"/LOGIN", false, "/LOGIN"},
		{"/login;jsessionid=1", false, "/login"},
		{"/log%69n", false, "/login"},
		{"/a%2f..%2flogin", false, "/login"},
		{"/a%2F..%2Flogin", false, "/login"},
		{"/login/", false, "/login"},
		{"/./login", false, "/login"},
		{"/login%00", false, ""},
		{"/%ff", false, ""},
		{`\login`, false, "/login"},
		{`/a\..\login`, false, "/login"},
		{"/a%5c..%5clogin", false, "/login"},
		{"/", false, "/"},
		{"", false, "/"},
		{"/..", false, "/"},
		{"/../../login", false, "/login"},
		{"/a/b/../../login", false, "/login"},
		{"/a/./b/.", false, "/a/b"},
		{"///a////b///", false, "/a/b"},
		{"/a;x/b;y=1/login;z", false, "/a/b/login"},
		{"/login%3bjsessionid=1", false, "/login"},
		{"/login;x%2f..%2fabout", false, "/login"}, // separators inside params do not count
		{"/%2e%2e/login", false, "/login"},         // encoded dot segments
		{"/%2E/login", false, "/login"},            //
		{"/transfer/%E6%8C%AF%E8%BE%BC", false, "/transfer/振込"},
		{"/Transfer/%E6%8C%AF", true, "/transfer/振"},
		{"/100%25", false, "/100%25"},               // a literal percent stays encoded
		{"/100%25.png", false, "/100%25.png"},       //
		{"/%252e%252e/login", false, ""},            // double encoding refused
		{"/%2541", false, ""},                       //
		{"/%2", false, ""},                          // truncated escape
		{"/%zz", false, ""},                         // invalid escape
		{"/a%0d%0aSet-Cookie:x", false, ""},         // encoded CR LF
		{"/a\tb", false, ""},                        // raw control byte
		{"/a\x7f", false, ""},                       // DEL
		{"/a;%zz", false, ""},                       // bad escape hidden in params
		{"/\xff", false, ""},                        // raw invalid UTF-8
		{"/%c3%28", false, ""},                      // invalid UTF-8 sequence
		{"login", false, ""},                        // not absolute
		{"*", false, ""},                            //
		{"/.well-known/x", false, "/.well-known/x"}, // dot files are not dot segments
		{"/a/...", false, "/a/..."},                 //
		{"/a+b", false, "/a+b"},                     // + is literal in paths
		{"/a%20b", false, "/a b"},                   //
		{"/static/App.css", true, "/static/app.css"},
	}
	for _, tt := range tests {
		got, err := NormalizePath(tt.in, tt.ci)
		if tt.want == "" {
			if err == nil {
				t.Errorf("NormalizePath(%q, %v) = %q, want error", tt.in, tt.ci, got)
			} else if !errors.Is(err, errPath) {
				t.Errorf("NormalizePath(%q) error %v does not wrap errPath", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("NormalizePath(%q, %v) error: %v", tt.in, tt.ci, err)
			continue
		}
		if got != tt.want {
			t.Errorf("NormalizePath(%q, %v) = %q, want %q", tt.in, tt.ci, got, tt.want)
		}
		if again, err := NormalizePath(got, tt.ci); err != nil || again != got {
			t.Errorf("NormalizePath not idempotent on %q: %q, %v", got, again, err)
		}
	}
}

func TestNormalizePathFastPathDoesNotAllocate(t *testing.T) {
	for _, p := range []string{"/", "/login", "/static/app.css", "/a/b.c/d"} {
		var out string
		allocs := testing.AllocsPerRun(100, func() { out, _ = NormalizePath(p, true) })
		if allocs != 0 || out != p {
			t.Errorf("NormalizePath(%q) = %q with %v allocs, want same string, 0 allocs", p, out, allocs)
		}
	}
}

func TestNormalizePathLongInput(t *testing.T) {
	in := strings.Repeat("/a/..", 10000) + "/login"
	if got, err := NormalizePath(in, false); err != nil || got != "/login" {
		t.Fatalf("got %q, %v", got, err)
	}
}
