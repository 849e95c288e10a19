package gate_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	examplepolicy "github.com/onepush/onepush/examples/policy"
	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/gate"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// BenchmarkGatePassThrough is what the gate adds to a request no rule
// matches (a page or an asset): header strip, the gateway's own paths,
// the policy match.
func BenchmarkGatePassThrough(b *testing.B) {
	store := memory.New(nil)
	b.Cleanup(func() { _ = store.Close() })
	eng, err := pushauth.NewEngine(pushauth.Config{Store: store, Logger: pushauthtest.Quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = eng.Close() })
	pol, err := policy.Parse("bank.yaml", examplepolicy.Bank)
	if err != nil {
		b.Fatal(err)
	}
	pages, _ := gate.NewPages("", "/")
	g := &gate.Gate{Engine: eng, Policy: pol, Pages: pages, Log: pushauthtest.Quiet(),
		EnrollPath: "/onepush/enroll", WaitPath: "/onepush/wait/"}
	r := httptest.NewRequest(http.MethodGet, "/static/style.css", nil)
	r.Header.Set("User-Agent", "Mozilla/5.0")
	r.Header.Set("Accept", "text/css,*/*;q=0.1")
	r.Header.Set("Accept-Language", "ja,en;q=0.8")
	r.Header.Set("Cookie", "BANKSESSION=abc")
	w := httptest.NewRecorder()
	next := func(http.ResponseWriter, *http.Request) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Route(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
}
