package main

import (
	"math"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
)

// TestCheckPeak shows each check of the peak scenario failing when the
// records show what it looks for: the same clean run with one fault
// injected at a time.
func TestCheckPeak(t *testing.T) {
	op := func(seq int, kind, ref string) bankRecord {
		return bankRecord{Op: bank.Op{Seq: seq, Op: kind, Body: "user_id=u1&password=pw1&ref=" + ref}}
	}
	approve := func(ref string, status int) phoneRecord {
		return phoneRecord{Challenge: "ch-" + ref, Ref: ref, Decision: "approve", Status: status}
	}
	clean := func() ([]bankRecord, []phoneRecord, []clientRecord) {
		ops := []bankRecord{
			op(1, bank.OpLogin, "enrol-u1"), // before the user had a phone: not the scenario's
			op(2, bank.OpLogin, "a"),
			op(3, bank.OpTransfer, "d"),
		}
		decisions := []phoneRecord{
			approve("a", 200),
			{Challenge: "ch-b", Ref: "b", Decision: "deny", Status: 200},
			approve("c", 200),
			approve("d", 200),
			approve("e", 409), // too late: expired meanwhile
		}
		requests := []clientRecord{
			{Ref: "a", Kind: "login", Class: "ok", Status: 303},
			{Ref: "b", Kind: "login", Class: "refused", Status: 403},
			{Ref: "c", Kind: "login", Class: "closed"},    // its instance stopped before forwarding
			{Ref: "d", Kind: "transfer", Class: "closed"}, // forwarded, then the connection closed
			{Ref: "e", Kind: "login", Class: "refused", Status: 408},
		}
		return ops, decisions, requests
	}
	tests := []struct {
		name   string
		inject func(ops *[]bankRecord, ds *[]phoneRecord, rs *[]clientRecord)
		want   peakCheck
		wantOK bool
	}{
		{"clean", func(*[]bankRecord, *[]phoneRecord, *[]clientRecord) {}, peakCheck{}, true},
		{"executed twice", func(ops *[]bankRecord, _ *[]phoneRecord, _ *[]clientRecord) {
			*ops = append(*ops, op(4, bank.OpLogin, "a"))
		}, peakCheck{Duplicated: 1}, false},
		{"denied but executed", func(ops *[]bankRecord, _ *[]phoneRecord, _ *[]clientRecord) {
			*ops = append(*ops, op(4, bank.OpLogin, "b"))
		}, peakCheck{Unapproved: 1, Lost: 1}, false},
		{"approval refused by the gateway, executed anyway", func(ops *[]bankRecord, _ *[]phoneRecord, rs *[]clientRecord) {
			*ops = append(*ops, op(4, bank.OpLogin, "e"))
			(*rs)[4] = clientRecord{Ref: "e", Kind: "login", Class: "closed"}
		}, peakCheck{Unapproved: 1}, false},
		{"approval sent, its answer lost, executed", func(ops *[]bankRecord, ds *[]phoneRecord, rs *[]clientRecord) {
			*ops = append(*ops, op(4, bank.OpLogin, "e"))
			(*ds)[4] = phoneRecord{Challenge: "ch-e", Ref: "e", Decision: "approve", Status: 409, Unknown: true}
			(*rs)[4] = clientRecord{Ref: "e", Kind: "login", Class: "closed"}
		}, peakCheck{}, true},
		{"refused by the bank counts as reaching it", func(ops *[]bankRecord, ds *[]phoneRecord, _ *[]clientRecord) {
			*ops = append(*ops, op(4, bank.OpTransferRefused, "b"))
		}, peakCheck{Unapproved: 1}, false},
		{"told ok, never executed", func(ops *[]bankRecord, _ *[]phoneRecord, _ *[]clientRecord) {
			*ops = (*ops)[:1]
			*ops = append(*ops, op(3, bank.OpTransfer, "d"))
		}, peakCheck{Lost: 1}, false},
		{"executed, told it failed", func(_ *[]bankRecord, _ *[]phoneRecord, rs *[]clientRecord) {
			(*rs)[3] = clientRecord{Ref: "d", Kind: "transfer", Class: "refused", Status: 502}
		}, peakCheck{Lost: 1}, false},
		{"nobody sent it", func(ops *[]bankRecord, _ *[]phoneRecord, _ *[]clientRecord) {
			*ops = append(*ops, op(4, bank.OpTransfer, "zz"))
		}, peakCheck{Unapproved: 1}, false},
		{"never answered", func(_ *[]bankRecord, _ *[]phoneRecord, rs *[]clientRecord) {
			(*rs)[2].Class = "unanswered"
		}, peakCheck{Unanswered: 1}, false},
		{"bank log gap", func(ops *[]bankRecord, _ *[]phoneRecord, _ *[]clientRecord) {
			*ops = append(*ops, bankRecord{Gap: "operations 4 to 9 fell out"})
		}, peakCheck{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, ds, rs := clean()
			tt.inject(&ops, &ds, &rs)
			got := checkPeak(ops, ds, rs, "enrol-")
			if got.Lost != tt.want.Lost || got.Duplicated != tt.want.Duplicated || got.Unapproved != tt.want.Unapproved || got.Unanswered != tt.want.Unanswered {
				t.Errorf("lost %d, duplicated %d, unapproved %d, unanswered %d; want %d, %d, %d, %d (problems %q)",
					got.Lost, got.Duplicated, got.Unapproved, got.Unanswered, tt.want.Lost, tt.want.Duplicated, tt.want.Unapproved, tt.want.Unanswered, got.Problems)
			}
			if got.ok() != tt.wantOK {
				t.Errorf("ok() = %t, want %t", got.ok(), tt.wantOK)
			}
		})
	}
	// The clean run's other counts.
	ops, ds, rs := clean()
	got := checkPeak(ops, ds, rs, "enrol-")
	if got.Executed != 2 || got.Approvals != 3 || got.ApprovedNotForwarded["closed"] != 1 || got.ExecutedNotTold != 1 {
		t.Errorf("executed %d, approvals %d, approved not forwarded %v, executed not told %d; want 2, 3, closed 1, 1",
			got.Executed, got.Approvals, got.ApprovedNotForwarded, got.ExecutedNotTold)
	}
}

// TestArrivals checks the arrivals' shape: its integral at the corners,
// and that dueAt inverts due.
func TestArrivals(t *testing.T) {
	a := arrivals{top: 10, ramp: 4 * time.Second, hold: 6 * time.Second, down: 2 * time.Second}
	for _, tt := range []struct {
		at   time.Duration
		want float64
	}{
		{0, 0},
		{2 * time.Second, 5},   // half-way up: 10/s × 2 s / 2
		{4 * time.Second, 20},  // the ramp: 10 × 4 / 2
		{10 * time.Second, 80}, // and the top: 10 × 6
		{12 * time.Second, 90}, // and the way down: 10 × 2 / 2
		{time.Minute, 90},
	} {
		if got := a.due(tt.at); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("due(%s) = %g, want %g", tt.at, got, tt.want)
		}
	}
	for _, n := range []int{1, 5, 20, 50, 89, 90} {
		at := a.dueAt(n)
		if a.due(at) < float64(n) || a.due(at-2*time.Millisecond) >= float64(n) {
			t.Errorf("dueAt(%d) = %s: due there %g, 2 ms before %g", n, at, a.due(at), a.due(at-2*time.Millisecond))
		}
	}
}
