package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// demo is a running demo command: its addresses and what it logged.
type demo struct {
	gw, phone, outbox string
	stderr            *syncBuilder
}

// startDemo builds and runs the demo command with args added to its
// addresses, and waits for its banner; it stops with the test.
func startDemo(t *testing.T, args ...string) (*demo, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "demo")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/demo: %v\n%s", err, out)
	}
	d := &demo{gw: freeAddr(t), phone: freeAddr(t), outbox: freeAddr(t), stderr: &syncBuilder{}}
	cmd := exec.Command(bin, append([]string{"-listen", d.gw, "-bank-listen", freeAddr(t), "-phone-listen", d.phone, "-outbox-listen", d.outbox}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("demo did not stop on SIGINT within 10s")
		}
		if t.Failed() {
			t.Logf("demo stderr:\n%s", d.stderr.String())
		}
	})

	banner := make(chan string, 1)
	go func() {
		var sb strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			sb.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Ctrl-C stops") {
				banner <- sb.String()
				io.Copy(io.Discard, stdout)
				return
			}
		}
		banner <- sb.String()
	}()
	select {
	case out := <-banner:
		return d, out
	case <-time.After(60 * time.Second):
		t.Fatal("demo printed no banner within 60s")
	}
	return nil, ""
}

// syncBuilder is a strings.Builder safe for a process writing while the
// test reads.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	shownCodeRE = regexp.MustCompile(`id="code"[^>]*>([0-9]{6})<`)
	waitBaseRE  = regexp.MustCompile(`action="([^"]+)/cancel"`)
)

// throughWaitingPage reads the waiting page a request was answered with,
// types its code into the phone's page and approves there, as a person
// does, then presses Continue; it returns the bank's answer.
func (d *demo) throughWaitingPage(t *testing.T, client *http.Client, page []byte) (*http.Response, []byte) {
	t.Helper()
	code, base := shownCodeRE.FindSubmatch(page), waitBaseRE.FindSubmatch(page)
	if code == nil || base == nil {
		t.Fatalf("want the waiting page with a code: %.500s", page)
	}
	id := string(base[1][strings.LastIndex(string(base[1]), "/")+1:])
	var csrf [][]byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r, err := http.Get("http://" + d.phone + "/")
		if err != nil {
			t.Fatal(err)
		}
		phonePage, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if strings.Contains(string(phonePage), id) {
			csrf = regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(phonePage)
			break
		}
	}
	if csrf == nil {
		t.Fatalf("the phone's page never showed challenge %s", id)
	}
	r, err := http.PostForm("http://"+d.phone+"/decide", url.Values{"csrf": {string(csrf[1])}, "id": {id}, "decision": {"approve"}, "code": {string(code[1])}})
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	resp, err := client.PostForm("http://"+d.gw+string(base[1])+"/continue", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

// TestDemoRunsAsTheREADMESays builds and runs the demo command, then uses
// it the way the README tells a person to: alice's login and transfer go
// through once the (auto-approving) phone approves; bob logs in without a
// phone.
func TestDemoRunsAsTheREADMESays(t *testing.T) {
	d, out := startDemo(t, "-phone-auto", "approve")
	gw, phoneAddr, outbox, stderr := d.gw, d.phone, d.outbox, d.stderr
	for _, want := range []string{"http://" + gw + "/", "http://" + phoneAddr + "/", "Outbox (what each customer was sent): http://" + outbox + "/",
		"1001 / alice / alice-pass-1", "enrolled on the simulated phone", "1001 / bob / bob-pass-1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("banner lacks %q:\n%s", want, out)
		}
	}

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := client.PostForm("http://"+gw+"/login", url.Values{"contract_no": {"1001"}, "user_id": {"alice"}, "password": {"alice-pass-1"}})
	if err != nil {
		t.Fatal(err)
	}
	// The test push sent when alice's phone was bound at start-up shows
	// on the phone's page.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := http.Get("http://" + phoneAddr + "/")
		if err != nil {
			t.Fatal(err)
		}
		phonePage, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if strings.Contains(string(phonePage), "Test notification: this phone is registered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the phone's page does not show the test push: %.1500s", phonePage)
		}
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The login is password-first with code transfer: the waiting page
	// shows a code, which the user types into the phone's page.
	resp, _ = d.throughWaitingPage(t, client, page)
	if resp.Request.URL.Path != "/dashboard" {
		t.Fatalf("alice's login ended at %s (%d), want the dashboard", resp.Request.URL.Path, resp.StatusCode)
	}
	resp, err = client.PostForm("http://"+gw+"/transfer", url.Values{"payee_account": {"7654321"}, "amount": {"1200"}, "txn_password": {"alice-txn-1"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "Transfer of 1200 JPY to 7654321 accepted") {
		t.Fatalf("transfer: %d %.300s", resp.StatusCode, body)
	}
	if !strings.Contains(stderr.String(), `"type":"challenge.decided"`) {
		t.Fatalf("alice's operations were not approved through a challenge; logs:\n%s", stderr.String())
	}

	resp, err = http.Get("http://" + gw + "/ops/log")
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(ops), `"amount": "1200"`) {
		t.Fatalf("bank's log lacks the transfer: %s", ops)
	}

	// alice's binding at start-up reached the bank's notification system,
	// signed (the sink refuses anything else), and its page shows it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + outbox + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(page), "1001/alice") && strings.Contains(string(page), "phone.bound") && strings.Contains(string(page), "0 with a bad signature") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the outbox page does not show alice's binding:\n%.2000s", page)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDemoServesTheInterstitialFlow: with the shipped interstitial policy
// the demo puts the login and a transfer on waiting pages; the code typed
// into the phone's page approves each, and the bank executes the transfer
// once, after Continue.
func TestDemoServesTheInterstitialFlow(t *testing.T) {
	d, _ := startDemo(t, "-policy", filepath.Join("..", "policy", "interstitial.yaml"))
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	post := func(path string, form url.Values) []byte {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+d.gw+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept-Language", "ja")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	page := post("/login", url.Values{"contract_no": {"1001"}, "user_id": {"alice"}, "password": {"alice-pass-1"}})
	if resp, _ := d.throughWaitingPage(t, client, page); resp.Request.URL.Path != "/dashboard" {
		t.Fatalf("alice's login ended at %s, want the dashboard", resp.Request.URL.Path)
	}
	page = post("/transfer", url.Values{"payee_account": {"7654321"}, "amount": {"1500000"}, "txn_password": {"alice-txn-1"}})
	for _, want := range []string{"スマートフォンで承認してください", "1,500,000円", "7654321", "残り時間", "デモ銀行"} {
		if !strings.Contains(string(page), want) {
			t.Fatalf("the transfer's waiting page lacks %q: %.1500s", want, page)
		}
	}
	resp, err := http.Get("http://" + d.gw + "/ops/log")
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(ops), `"amount": "1500000"`) {
		t.Fatal("the bank executed the transfer while its page waited")
	}
	if _, body := d.throughWaitingPage(t, client, page); !strings.Contains(string(body), "Transfer of 1500000 JPY to 7654321 accepted") {
		t.Fatalf("the transfer after approval: %.500s", body)
	}
}
