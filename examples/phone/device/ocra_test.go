package device

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth/ocra"
)

// serverResponse is what the gateway expects for cred's key over its raw
// transaction fields.
func serverResponse(t *testing.T, f *fakeServer, cred string, tx ocra.Transaction) string {
	t.Helper()
	f.mu.Lock()
	hexKey := f.creds[cred].ocraKey
	f.mu.Unlock()
	key, err := hex.DecodeString(hexKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ocra.TransactionResponse(key, tx)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegisterKeepsTheOCRAKey(t *testing.T) {
	f, p := pollPhone(t)
	f.mu.Lock()
	want := f.creds[p.CredentialID()].ocraKey
	f.mu.Unlock()
	if p.OCRAKey() == "" || p.OCRAKey() != want {
		t.Fatalf("OCRAKey = %q, the server sent %q", p.OCRAKey(), want)
	}
	if got := p.OCRA(); got != (OCRAParams{Suite: ocra.TransactionSuite, Question: ocra.QuestionLayout, ChallengeDigits: 8}) {
		t.Fatalf("OCRA = %+v", got)
	}
}

// TestRespondMatchesTheGateway: what the user types from the waiting page
// into the phone, offline, gives the response the gateway computes from
// the challenge's raw fields; the same typing for a transfer that differs
// in amount or payee does not.
func TestRespondMatchesTheGateway(t *testing.T) {
	f, p := pollPhone(t)
	f.srv.Close() // offline from here on
	raw := ocra.Transaction{Challenge: "04711235", Payee: "1234567", Amount: "1500000", Currency: "JPY"}
	want := serverResponse(t, f, p.CredentialID(), raw)
	for _, typed := range []struct{ challenge, payee, amount string }{
		{"0471 1235", "1234567", "1,500,000"},
		{"04711235", "1234567", "1500000 JPY"},
		{"０４７１１２３５", " 1234567 ", "1,500,000 jpy"},
	} {
		got, err := p.Respond(typed.challenge, typed.payee, typed.amount)
		if err != nil || got != want {
			t.Errorf("Respond(%q, %q, %q) = %s, %v; the gateway expects %s", typed.challenge, typed.payee, typed.amount, got, err, want)
		}
	}
	for _, other := range []struct{ name, challenge, payee, amount string }{
		{"another amount", "04711235", "1234567", "1,500,001"},
		{"another payee", "04711235", "1234568", "1,500,000"},
		{"another currency", "04711235", "1234567", "1,500,000 USD"},
		{"another challenge", "04711236", "1234567", "1,500,000"},
	} {
		got, err := p.Respond(other.challenge, other.payee, other.amount)
		if err != nil {
			t.Fatalf("%s: %v", other.name, err)
		}
		if got == want {
			t.Errorf("%s: same response %s", other.name, got)
		}
	}
	if _, err := p.Respond("04711235", "1234567", "1.500.000"); err == nil || !strings.Contains(err.Error(), "amount") {
		t.Errorf("an amount with dots: %v, want it refused, not guessed", err)
	}

	// A phone of another home currency reads an amount without a code in it.
	usd, err := Restore("", mustState(t, p), WithHomeCurrency("USD"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := usd.Respond("04711235", "1234567", "1,500,000"); got != serverResponse(t, f, p.CredentialID(), ocra.Transaction{Challenge: "04711235", Payee: "1234567", Amount: "1500000", Currency: "USD"}) {
		t.Error("WithHomeCurrency(USD) does not bind USD")
	}
}

func mustState(t *testing.T, p *Phone) []byte {
	t.Helper()
	b, err := p.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRespondNeedsAKeyAndAKnownSuite: a phone registered with a server
// that sent no key, or another suite, says so instead of showing digits
// the gateway would refuse.
func TestRespondNeedsAKeyAndAKnownSuite(t *testing.T) {
	f, p := pollPhone(t)
	p.mu.Lock()
	p.ocraKey = ""
	p.mu.Unlock()
	if _, err := p.Respond("12345678", "1234567", "1000"); err == nil || !strings.Contains(err.Error(), "register again") {
		t.Fatalf("without a key: %v", err)
	}
	q := registered(t, f, "none", "")
	q.mu.Lock()
	q.ocra.Suite = "OCRA-1:HOTP-SHA1-6:QN08"
	q.mu.Unlock()
	if _, err := q.Respond("12345678", "1234567", "1000"); err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Fatalf("another suite: %v", err)
	}
}

// TestDecisionCarriesTheCode: an approval of a code-transfer challenge
// carries the typed code as the string claim code; the server refuses a
// wrong one; deny carries none; approve-only decisions are as before.
func TestDecisionCarriesTheCode(t *testing.T) {
	f, p := pollPhone(t)
	ctx := context.Background()
	id := f.addCodeChallenge(p.CredentialID(), codeCtx, "042917", false)
	ch, err := p.Get(ctx, id)
	if err != nil || ch.Parsed.CodeDigits != 6 {
		t.Fatalf("Get = %+v, %v", ch, err)
	}
	if _, err := p.DecideWithCode(ctx, ch, Approve, ""); err == nil || !strings.Contains(err.Error(), "6-digit code") {
		t.Fatalf("approve without the code: %v, want a local refusal", err)
	}
	if _, err := p.DecideWithCode(ctx, ch, Approve, "42917"); err == nil {
		t.Fatal("a 5-digit code for a 6-digit challenge was sent")
	}
	if _, err := p.DecideWithCode(ctx, ch, Approve, "04291a"); err == nil {
		t.Fatal("a code with a letter was sent")
	}
	if st, err := p.DecideWithCode(ctx, ch, Approve, "042918"); err != nil || st != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d %v, want 401", st, err)
	}
	if d := f.waitDecision(t); d.Code == nil || *d.Code != "042918" {
		t.Fatalf("server saw %+v", d)
	}
	if st, err := p.DecideWithCode(ctx, ch, Approve, " 042917 "); err != nil || st != http.StatusOK {
		t.Fatalf("right code: %d %v", st, err)
	}
	if d := f.waitDecision(t); d.Decision != Approve || d.Code == nil || *d.Code != "042917" {
		t.Fatalf("server saw %+v (the leading zero must survive)", d)
	}

	// Deny needs no code and sends none.
	id = f.addCodeChallenge(p.CredentialID(), codeCtx, "123456", false)
	ch, _ = p.Get(ctx, id)
	if st, err := p.DecideWithCode(ctx, ch, Deny, ""); err != nil || st != http.StatusOK {
		t.Fatalf("deny: %d %v", st, err)
	}
	if d := f.waitDecision(t); d.Code != nil {
		t.Fatalf("deny carried a code: %+v", d)
	}

	// An approve-only challenge: no code claim by either call.
	for _, decide := range []func(*Challenge) (int, error){
		func(ch *Challenge) (int, error) { return p.Decide(ctx, ch, Approve, 0) },
		func(ch *Challenge) (int, error) { return p.DecideWithCode(ctx, ch, Approve, "") },
	} {
		id = f.addChallenge(p.CredentialID(), "login", loginCtx, false, 0, false)
		ch, _ = p.Get(ctx, id)
		if st, err := decide(ch); err != nil || st != http.StatusOK {
			t.Fatalf("approve-only: %d %v", st, err)
		}
		if d := f.waitDecision(t); d.Code != nil {
			t.Fatalf("approve-only decision carried a code: %+v", d)
		}
	}
}

// TestSimulatorCodeTransfer: auto-approve leaves a code-transfer prompt to
// a person; the page asks for the code and sends it.
func TestSimulatorCodeTransfer(t *testing.T) {
	f := newFakeServer(t)
	sim, hs := startSim(t, f, "approve", "webhook")
	id := f.addCodeChallenge(sim.Phone().CredentialID(), codeCtx, "730104", true)
	waitPrompt(t, sim)
	select {
	case d := <-f.decisions:
		t.Fatalf("auto-approve decided a code-transfer prompt: %+v", d)
	case <-time.After(200 * time.Millisecond):
	}
	page := get(t, hs.URL+"/")
	if !strings.Contains(page, `name="code"`) || !strings.Contains(page, `pattern="[0-9]{6}"`) || strings.Contains(page, `http-equiv="refresh"`) {
		t.Fatalf("the prompt should ask for the 6-digit code and not reload:\n%s", page)
	}
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no csrf")
	}
	resp, err := http.PostForm(hs.URL+"/decide", url.Values{"id": {id}, "decision": {"approve"}, "code": {"730104"}, "csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := f.waitDecision(t); d.ChallengeID != id || d.Code == nil || *d.Code != "730104" {
		t.Fatalf("recorded %+v", d)
	}
	if f.state(id) != "approve" {
		t.Fatalf("challenge %s is %s", id, f.state(id))
	}
}

// TestSimulatorRespondsOffline: the page's offline form shows the
// response the gateway expects, without asking the server anything.
func TestSimulatorRespondsOffline(t *testing.T) {
	f := newFakeServer(t)
	sim, hs := startSim(t, f, "off", "none")
	page := get(t, hs.URL+"/")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, `action="/respond"`) {
		t.Fatal("no offline response form")
	}
	f.srv.Close()
	resp, err := http.PostForm(hs.URL+"/respond", url.Values{"challenge": {"1234 5678"}, "payee": {"1234567"}, "amount": {"1,500,000"}, "csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := serverResponse(t, f, sim.Phone().CredentialID(), ocra.Transaction{Challenge: "12345678", Payee: "1234567", Amount: "1500000", Currency: "JPY"})
	if !strings.Contains(string(body), `<div class="code" id="response">`+want+`</div>`) {
		t.Fatalf("the page does not show %s:\n%s", want, body)
	}
	resp, err = http.PostForm(hs.URL+"/respond", url.Values{"challenge": {"1234"}, "payee": {"1234567"}, "amount": {"1"}, "csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `id="respond-err"`) || strings.Contains(string(body), `id="response"`) {
		t.Fatalf("a short challenge number should be refused on the page:\n%s", body)
	}
	resp, err = http.PostForm(hs.URL+"/respond", url.Values{"challenge": {"12345678"}, "payee": {"1"}, "amount": {"1"}, "csrf": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged form: HTTP %d", resp.StatusCode)
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
