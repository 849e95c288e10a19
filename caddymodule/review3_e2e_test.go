package caddymodule_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// TestOneOperatorCannotSuspendIntoPasswordOnly is the insider of review 3:
// a support operator who knows (or has phished) the customer's passwords
// "suspends" her with a grace of a year. A suspended user within her
// grace logs in and transfers with the password alone, which is what a
// deregistration grants, and deregister is under dual control: suspend
// must be as well, or one operator alone turns off step-up for anyone.
// The attack: ops1 suspends alice, then logs in as her and transfers
// without her phone. The bank's /ops/log must show nothing.
func TestOneOperatorCannotSuspendIntoPasswordOnly(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := startOpsGateway(t, e, caddyConfig{}, "")
	key := keyOf(alice)
	phone := newPhone(t, g.gateway)
	enroll(t, g.gateway, alice, phone)
	e.resetOps(t)

	st, out := g.as(t, "ops1", "", http.MethodPost, "/user/suspend", map[string]string{"key": key, "grace": "8760h"})
	if st != http.StatusAccepted {
		t.Errorf("suspend by ops1 alone = %d %v, want 202 (waiting for a supervisor)", st, out)
	}
	if st, out := g.as(t, "sup1", "", http.MethodGet, "/user?key="+url.QueryEscape(key), nil); st != http.StatusOK || out["state"] != "active" {
		t.Errorf("after ops1's suspend alone alice is %d %v, want active", st, out)
	}

	// ops1 now uses alice's phished passwords: no phone is asked.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := newBrowser()
	res := b.postAsync(ctx, g.URL+"/login", loginBody(alice))
	ch := waitChallengeOrNone(t, phone, 3*time.Second)
	if ch == nil {
		r := <-res
		t.Errorf("login without the phone after ops1's suspend alone: %v %v (the phone was never asked)", r.err, r.resp)
	} else {
		cancel()
		<-res
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	body := url.Values{"payee_account": {"9876543"}, "amount": {"990000"}, "txn_password": {alice.TxnPassword}}.Encode()
	tres := b.postAsync(ctx2, g.URL+"/transfer", body)
	if ch := waitChallengeOrNone(t, phone, 3*time.Second); ch != nil {
		cancel2()
	}
	<-tres
	if n := len(opsOf(e.ops(t), bank.OpTransfer)); n != 0 {
		t.Fatalf("the bank executed %d transfers that alice's phone never approved, after one operator's suspend", n)
	}
}

// waitChallengeOrNone waits up to d for the phone's next pending
// challenge; nil when none came.
func waitChallengeOrNone(t *testing.T, p *device.Phone, d time.Duration) *device.Challenge {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ch, err := p.WaitPending(ctx, 20*time.Millisecond)
	if err != nil {
		return nil
	}
	return ch
}
