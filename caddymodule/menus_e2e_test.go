package caddymodule_test

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

var batchNoRE = regexp.MustCompile(`id="batch_no">([A-Z0-9]+)<`)

// makeBatch uploads file as a maker's batch (not challenged: it moves no
// money) and returns the bank's batch number; with no, it corrects the
// maker's pending batch no.
func makeBatch(t *testing.T, ctx context.Context, b *browser, g *gateway, u bank.User, file []byte, no string) string {
	t.Helper()
	fields := []string{"format", "csv", "txn_password", u.TxnPassword}
	if no != "" {
		fields = append(fields, "batch_no", no)
	}
	resp, page, err := b.postUpload(ctx, g.URL+"/batch/upload", file, fields...)
	m := batchNoRE.FindStringSubmatch(page)
	if err != nil || resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("maker's upload: %v %v %.300q", err, resp, page)
	}
	return m[1]
}

// TestBatchApprovalByNumberShowsTheRowsLookedUpAtTheBank: alice makes a
// batch, bob approves it by its number. The approval post carries only the
// number; bob's phone shows the rows the gateway read from the bank's CSV
// export in bob's own session, and the bank executes exactly those. A
// batch changed at the bank after the lookup (alice corrects it while bob's
// phone shows the old rows) is refused at release: nothing executed. A
// number the lookup cannot read is refused before any phone rings.
func TestBatchApprovalByNumberShowsTheRowsLookedUpAtTheBank(t *testing.T) {
	e, g, alicePhone := newAliceEnv(t, envOptions{}, "")
	bobPhone := newPhone(t, g)
	enroll(t, g, bob, bobPhone)
	aliceB := loggedIn(t, e, g, alicePhone)
	bobB := approvedLogin(t, g, bob, bobPhone)
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	approve := func(no string) <-chan result {
		return bobB.postAsync(ctx, g.URL+"/batch/approve", url.Values{"batch_no": {no}, "txn_password": {bob.TxnPassword}}.Encode())
	}

	no := makeBatch(t, ctx, aliceB, g, alice, batchFile(t, "bulk3.csv"), "")
	res := approve(no)
	ch := waitChallenge(t, bobPhone)
	if ch.Parsed.User != "1001/bob" || len(ch.Parsed.Display) != 1 || ch.Parsed.Display[0].Value != no || ch.Parsed.Batch.Source != "lookup" {
		t.Fatalf("bob's phone shows user %q display %+v batch %+v, want batch %s looked up", ch.Parsed.User, ch.Parsed.Display, ch.Parsed.Batch, no)
	}
	checkBatchPrompt(t, ctx, bobPhone, ch, "総合振込（承認）", bulk3CSV, "3456000")
	if st, err := bobPhone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
		t.Fatalf("approve: %d %v", st, err)
	}
	if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusOK {
		t.Fatalf("approval post: %v %v %.300q", r.err, r.resp, r.body)
	}
	ops := e.ops(t)
	if got := executedRows(ops, bank.OpBatchRow); !reflect.DeepEqual(got, bulk3CSV) {
		t.Fatalf("bank executed %q, want %q", got, bulk3CSV)
	}
	for _, o := range opsOf(ops, bank.OpBatchRow) {
		if o.UserID != "bob" || o.Batch != no {
			t.Fatalf("row executed by %s for batch %s, want bob's approval of %s", o.UserID, o.Batch, no)
		}
	}

	t.Run("changed after the lookup", func(t *testing.T) {
		e.resetOps(t)
		no := makeBatch(t, ctx, aliceB, g, alice, batchFile(t, "bulk3.csv"), "")
		res := approve(no)
		ch := waitChallenge(t, bobPhone)
		checkBatchPrompt(t, ctx, bobPhone, ch, "総合振込（承認）", bulk3CSV, "3456000")
		changed := []byte("payee_account,payee_name,amount\n1000001,Yamada Taro,1000000\n2000002,Suzuki Hanako,2000000\n3000003,Sato Ken,456000\n6666666,Mallory,9000000\n")
		makeBatch(t, ctx, aliceB, g, alice, changed, no)
		if st, err := bobPhone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
			t.Fatalf("approve: %d %v", st, err)
		}
		if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusConflict {
			t.Fatalf("approval of a batch changed since: %v %v, want 409", r.err, r.resp)
		}
		if got := executedRows(e.ops(t), bank.OpBatchRow); len(got) != 0 {
			t.Fatalf("bank executed %q of a batch changed after approval", got)
		}
	})

	t.Run("lookup fails", func(t *testing.T) {
		e.resetOps(t)
		if r := <-approve("B999999"); r.err != nil || r.resp.StatusCode != http.StatusConflict {
			t.Fatalf("approval of an unknown batch: %v %v, want 409", r.err, r.resp)
		}
		if p, _ := bobPhone.Pending(ctx); len(p) != 0 {
			t.Fatalf("bob's phone rang for a batch nobody could read: %+v", p)
		}
		if got := opsOf(e.ops(t), bank.OpBatchRow); len(got) != 0 {
			t.Fatalf("bank executed %+v", got)
		}
	})
}

// TestPayrollPayEasyDirectDebitAndSettingsAreChallenged: each menu is
// held until the phone approves, shows what it does, and is executed once,
// only after the approval; a denied settings change is not executed.
func TestPayrollPayEasyDirectDebitAndSettingsAreChallenged(t *testing.T) {
	// Six prompts in a few seconds: above the default push rate (5/min).
	e, g, phone := newAliceEnv(t, envOptions{}, "\t\tpush_rate 60")
	b := loggedIn(t, e, g, phone)
	payroll := url.Values{}
	for _, r := range append(append([]device.Row{}, bulk3CSV[:2]...), device.Row{}, bulk3CSV[2]) {
		payroll.Add("payee_account", r.Payee)
		payroll.Add("payee_name", r.PayeeName)
		payroll.Add("amount", r.Amount)
	}
	payroll.Set("txn_password", alice.TxnPassword)
	for _, tc := range []struct {
		name, path, service, op string
		form                    url.Values
		display                 []device.DisplayField
		amount                  string
		rows                    []device.Row
		deny                    bool
	}{
		{name: "payroll", path: "/payroll", service: "給与賞与振込", op: bank.OpPayrollRow, form: payroll, rows: bulk3CSV},
		{name: "PayEasy", path: "/payeasy", service: "税金・各種料金払込（Pay-easy）", op: bank.OpPayEasy,
			form:    url.Values{"collector_no": {"12345"}, "customer_no": {"98765432101"}, "confirm_no": {"4321"}, "amount": {"15800"}, "txn_password": {alice.TxnPassword}},
			display: []device.DisplayField{{Label: "収納機関番号", Value: "12345"}, {Label: "お客様番号", Value: "98765432101"}, {Label: "確認番号", Value: "4321"}}, amount: "15800"},
		{name: "direct debit", path: "/debit/register", service: "口座振替", op: bank.OpDebitRegister,
			form:    url.Values{"biller_code": {"00123"}, "customer_no": {"C-778"}, "txn_password": {alice.TxnPassword}},
			display: []device.DisplayField{{Label: "収納企業", Value: "00123"}, {Label: "お客様番号", Value: "C-778"}}},
		{name: "settings denied", path: "/settings", service: "各種設定", op: bank.OpSettings, deny: true,
			form:    url.Values{"daily_limit": {"90000000"}, "email": {"mallory@example.com"}, "txn_password": {alice.TxnPassword}},
			display: []device.DisplayField{{Label: "振込限度額（1日）", Value: "90000000"}, {Label: "登録メールアドレス", Value: "mallory@example.com"}}},
		{name: "settings", path: "/settings", service: "各種設定", op: bank.OpSettings,
			form:    url.Values{"daily_limit": {"3000000"}, "email": {"alice@example.jp"}, "txn_password": {alice.TxnPassword}},
			display: []device.DisplayField{{Label: "振込限度額（1日）", Value: "3000000"}, {Label: "登録メールアドレス", Value: "alice@example.jp"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.resetOps(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res := b.postAsync(ctx, g.URL+tc.path, tc.form.Encode())
			ch := waitChallenge(t, phone)
			if n := len(opsOf(e.ops(t), tc.op)); n != 0 {
				t.Fatalf("bank executed %s before the phone decided", tc.op)
			}
			if ch.Parsed.Service != tc.service || !reflect.DeepEqual(ch.Parsed.Display, tc.display) && tc.display != nil {
				t.Fatalf("phone shows service %q display %+v, want %q %+v", ch.Parsed.Service, ch.Parsed.Display, tc.service, tc.display)
			}
			if tc.amount != "" && (ch.Parsed.Transaction == nil || ch.Parsed.Transaction.Amount != tc.amount) {
				t.Fatalf("phone shows transaction %+v, want amount %s", ch.Parsed.Transaction, tc.amount)
			}
			if tc.rows != nil {
				checkBatchPrompt(t, ctx, phone, ch, tc.service, tc.rows, "3456000")
			}
			decision, want, executed := device.Approve, http.StatusOK, 1
			if tc.deny {
				decision, want, executed = device.Deny, http.StatusForbidden, 0
			}
			if st, err := phone.Decide(ctx, ch, decision, 0); err != nil || st != http.StatusOK {
				t.Fatalf("%s: %d %v", decision, st, err)
			}
			if r := <-res; r.err != nil || r.resp.StatusCode != want {
				t.Fatalf("post after %s: %v %v, want %d", decision, r.err, r.resp, want)
			}
			ops := opsOf(e.ops(t), tc.op)
			if tc.rows != nil {
				if got := executedRows(ops, tc.op); !reflect.DeepEqual(got, tc.rows) {
					t.Fatalf("bank executed %q, want %q", got, tc.rows)
				}
				return
			}
			if len(ops) != executed {
				t.Fatalf("bank executed %d %s, want %d: %+v", len(ops), tc.op, executed, ops)
			}
		})
	}
}
