package gate_test

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onepush/onepush/pushauth/gate"
)

// TestBrandedWaitTemplateKeepsThePage: the demo bank's template
// (examples/templates/wait-branded.html) only redefines blocks: its header
// and logo appear, and the built-in page around them keeps the code, the
// countdown, cancel and the script.
func TestBrandedWaitTemplateKeepsThePage(t *testing.T) {
	pages, err := gate.NewPages("", "/")
	if err != nil {
		t.Fatal(err)
	}
	if err := pages.LoadWaitTemplate(filepath.Join("..", "..", "examples", "templates", "wait-branded.html")); err != nil {
		t.Fatal(err)
	}
	srv, _ := waitGate(t, pages, func() {})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/login", strings.NewReader("user=alice"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Language", "ja")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	for _, want := range []string{`class="bank-header"`, "デモ銀行", "0120-000-000", `id="title"`, "スマートフォンで承認してください", `id="countdown"`, `id="cancel"`, `<script nonce=`} {
		if !strings.Contains(page, want) {
			t.Errorf("branded waiting page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", page)
	}
}
