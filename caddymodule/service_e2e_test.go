package caddymodule_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
	examplepolicy "github.com/onepush/onepush/examples/policy"
	"github.com/onepush/onepush/internal/caddyrig"
)

// loopbackBrowser is a browser that reaches every host name (fx.localhost)
// on 127.0.0.1, so a site can be addressed by its own host.
func loopbackBrowser() *browser {
	b := newBrowser()
	b.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}}
	return b
}

// decideNext waits for the phone's next prompt, checks it names service and
// host, and decides it.
func decideNext(t *testing.T, ctx context.Context, phone *device.Phone, service, host, decision string) *device.Challenge {
	t.Helper()
	ch := waitChallenge(t, phone)
	if ch.Parsed.Service != service || ch.Parsed.Host != host {
		t.Fatalf("prompt says service %q host %q, want %q on %q", ch.Parsed.Service, ch.Parsed.Host, service, host)
	}
	if st, err := phone.Decide(ctx, ch, decision, 0); err != nil || st != http.StatusOK {
		t.Fatalf("%s: %d %v", decision, st, err)
	}
	return ch
}

// TestServiceFXEditionSharesOnePhone: the domestic edition and the FX
// edition (another host, its own policy, service and bank application)
// share the gateway's store. Alice enrols once, on the domestic site; the
// FX site's login and remittance ring the same phone, labelled 外為（FX）/
// 外国送金 and fx.localhost. A remittance denied on FX executes nothing and
// leaves both sessions as they were: the domestic transfer and a later FX
// remittance still go through after approval.
func TestServiceFXEditionSharesOnePhone(t *testing.T) {
	e := newEnv(t, envOptions{})
	fxBank := bank.New(bank.Config{Users: bank.DefaultUsers()})
	fxSrv := httptest.NewServer(fxBank)
	t.Cleanup(fxSrv.Close)
	fxPolicy := filepath.Join(e.dir, "fx.yaml")
	if err := os.WriteFile(fxPolicy, []byte(heldLogin(t, string(examplepolicy.FX))), 0o600); err != nil {
		t.Fatal(err)
	}
	port, fxPort, adminPort := freePort(t), freePort(t), freePort(t)
	cfg := caddyrig.Options(adminPort, "", "\t\tstore embedded {\n\t\t\tauto_init\n\t\t}\n\t\tpush_rate 60") +
		caddyrig.GatedSite(port, e.policy, "", strings.TrimPrefix(e.bankURL, "http://")) +
		caddyrig.GatedSite(fxPort, fxPolicy, "", strings.TrimPrefix(fxSrv.URL, "http://"))
	g, err := e.runCaddy(cfg, port, adminPort)
	if err != nil {
		t.Fatal(err)
	}
	fxURL := fmt.Sprintf("http://fx.localhost:%d", fxPort)
	phone := newPhone(t, g)
	enroll(t, g, alice, phone)
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	fx := loopbackBrowser()
	res := fx.postAsync(ctx, fxURL+"/login", loginBody(alice))
	decideNext(t, ctx, phone, "外為（FX）", "fx.localhost", device.Approve)
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("FX login: %v %v", r.err, r.resp)
	}
	domestic := approvedLogin(t, g, alice, phone)

	res = fx.postAsync(ctx, fxURL+"/transfer", transferForm("US-000111", "2500", alice.TxnPassword))
	ch := decideNext(t, ctx, phone, "外国送金", "fx.localhost", device.Deny)
	if tx := ch.Parsed.Transaction; tx == nil || tx.Currency != "USD" || tx.Amount != "2500" {
		t.Fatalf("FX remittance shows %+v, want 2500 USD", tx)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied FX remittance: %v %v, want 403", r.err, r.resp)
	}
	if n := len(opsOf(fxBank.OpsLog(), bank.OpTransfer)); n != 0 {
		t.Fatalf("FX bank executed %d remittances after the denial", n)
	}

	res = domestic.postAsync(ctx, g.URL+"/transfer", transferForm("5550001", "1000", alice.TxnPassword))
	decideNext(t, ctx, phone, "振込", "127.0.0.1", device.Approve)
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusOK {
		t.Fatalf("domestic transfer after the FX denial: %v %v", r.err, r.resp)
	}
	if n := len(opsOf(e.ops(t), bank.OpTransfer)); n != 1 {
		t.Fatalf("domestic bank executed %d transfers, want 1", n)
	}
	res = fx.postAsync(ctx, fxURL+"/transfer", transferForm("US-000111", "2500", alice.TxnPassword))
	decideNext(t, ctx, phone, "外国送金", "fx.localhost", device.Approve)
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusOK {
		t.Fatalf("FX remittance after approval: %v %v", r.err, r.resp)
	}
	if ops := opsOf(fxBank.OpsLog(), bank.OpTransfer); len(ops) != 1 || ops[0].UserID != "alice" {
		t.Fatalf("FX bank executed %+v, want alice's one remittance", ops)
	}
}
