package policy

import (
	"net/http/httptest"
	"testing"
)

// BenchmarkMatchPassThrough is the cost the gateway adds to every request no
// rule matches (the pass-through figure), per request shape: it must not
// allocate.
func BenchmarkMatchPassThrough(b *testing.B) {
	p := loadBank(b)
	cases := []struct{ name, method, target, ctype string }{
		// GET is listed by the logout rule, so this walks every rule and
		// normalises the path before deciding.
		{"GET static", "GET", "http://bank.example.com/static/style.css?v=3", ""},
		{"GET account page", "GET", "http://bank.example.com/account/summary", ""},
		// POST to a path no rule covers.
		{"POST search", "POST", "http://bank.example.com/search", "application/x-www-form-urlencoded"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(c.method, c.target, nil)
			r.Header.Set("User-Agent", "Mozilla/5.0")
			r.Header.Set("Accept", "text/html")
			r.Header.Set("Cookie", "BANKSESSION=abc")
			if c.ctype != "" {
				r.Header.Set("Content-Type", c.ctype)
			}
			if p.Match(r) != nil {
				b.Fatalf("%s %s matched a rule", c.method, c.target)
			}
			b.ReportAllocs()
			for b.Loop() {
				if p.Match(r) != nil {
					b.Fatal("matched")
				}
			}
			if n := testing.AllocsPerRun(100, func() { p.Match(r) }); n != 0 {
				b.Errorf("Match of a request no rule matches allocates %.0f times; want 0", n)
			}
		})
	}
}

// BenchmarkMatchExtractLogin is the policy's share of a challenged request:
// match the login post and extract the user key and display fields.
func BenchmarkMatchExtractLogin(b *testing.B) {
	p := loadBank(b)
	body := []byte("contract_no=1234567&user_id=taro&password=secret")
	r := httptest.NewRequest("POST", "http://bank.example.com/login", nil)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	b.ReportAllocs()
	for b.Loop() {
		rule := p.Match(r)
		if rule == nil || rule.Name != "login" {
			b.Fatalf("got rule %v", rule)
		}
		ex, err := rule.Extract(r, body)
		if err != nil || ex.UserKey != "1234567/taro" {
			b.Fatalf("extract: %v %+v", err, ex)
		}
	}
}
