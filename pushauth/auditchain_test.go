package pushauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// records is a trail as a store would hand it to VerifyAudit.
type records [][]byte

func (r records) WalkAudit(_ context.Context, fn func([]byte) error) error {
	for _, rec := range r {
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

func chain(t *testing.T, n int) records {
	t.Helper()
	var out records
	var prev []byte
	for i := range n {
		_, rec, err := pushauth.ChainAudit(pushauth.AuditEvent{Time: time.Unix(int64(1700000000+i), 0), Type: pushauth.AuditAdmin, User: "1001/alice", Outcome: fmt.Sprint(i)}, prev)
		if err != nil {
			t.Fatal(err)
		}
		out, prev = append(out, rec), rec
	}
	return out
}

// TestVerifyAuditNamesTheFirstBreak is the auditor's view of an edited
// trail: each kind of tampering is named with the event it concerns, and
// a trail trimmed at its head (retention) is not a break.
func TestVerifyAuditNamesTheFirstBreak(t *testing.T) {
	ctx := context.Background()
	edit := func(rec []byte, f func(*pushauth.AuditEvent)) []byte {
		var ev pushauth.AuditEvent
		if err := json.Unmarshal(rec, &ev); err != nil {
			t.Fatal(err)
		}
		f(&ev)
		out, _ := json.Marshal(ev)
		return out
	}
	intact := chain(t, 6)
	for _, tc := range []struct {
		name string
		recs records
		seq  uint64
		kind string
	}{
		{"changed", append(append(records{}, intact[:2]...), append(records{edit(intact[2], func(e *pushauth.AuditEvent) { e.Outcome = "nothing" })}, intact[3:]...)...), 3, "changed"},
		{"removed", append(append(records{}, intact[:2]...), intact[3:]...), 3, "removed"},
		{"reordered", records{intact[0], intact[1], intact[3], intact[2], intact[4]}, 3, "removed"},
		{"chain fields stripped", append(append(records{}, intact[:2]...), append(records{edit(intact[2], func(e *pushauth.AuditEvent) { e.Seq, e.Prev = 0, "" })}, intact[3:]...)...), 3, "changed"},
		// Review 3: the oldest events made to look as if they predated
		// the chain (seq and prev removed), one of them edited: without
		// a check of where the chain starts, verify said "intact, 3 older
		// events predate the chain".
		{"oldest events passed off as pre-chain, one edited", append(records{
			edit(intact[0], func(e *pushauth.AuditEvent) { e.Seq, e.Prev = 0, "" }),
			edit(intact[1], func(e *pushauth.AuditEvent) { e.Seq, e.Prev = 0, "" }),
			edit(intact[2], func(e *pushauth.AuditEvent) { e.Seq, e.Prev, e.Outcome = 0, "", "nothing" }),
		}, intact[3:]...), 3, "changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := pushauth.VerifyAudit(ctx, tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			if v.Break == nil || v.Break.Seq != tc.seq || v.Break.Kind != tc.kind {
				t.Fatalf("break = %+v, want seq %d %s", v.Break, tc.seq, tc.kind)
			}
		})
	}
	// Events from before the chain, then the chain: the first chained
	// event is seq 1 and names the last of them (ChainAudit).
	var pre records
	for i := range 2 {
		rec, _ := json.Marshal(pushauth.AuditEvent{Time: time.Unix(int64(1600000000+i), 0), Type: pushauth.AuditAdmin, Outcome: "old"})
		pre = append(pre, rec)
	}
	upgraded := append(records{}, pre...)
	prev := pre[1]
	for i := range 3 {
		_, rec, err := pushauth.ChainAudit(pushauth.AuditEvent{Time: time.Unix(int64(1700000000+i), 0), Type: pushauth.AuditAdmin, Outcome: fmt.Sprint(i)}, prev)
		if err != nil {
			t.Fatal(err)
		}
		upgraded, prev = append(upgraded, rec), rec
	}
	if v, err := pushauth.VerifyAudit(ctx, upgraded); err != nil || v.Break != nil || v.Unchained != 2 || v.First != 1 || v.Last != 3 {
		t.Fatalf("a trail begun before the chain: %+v %v", v, err)
	}
	if v, err := pushauth.VerifyAudit(ctx, append(records{edit(pre[0], func(e *pushauth.AuditEvent) { e.Outcome = "x" }), []byte(strings.Replace(string(pre[1]), "old", "new", 1))}, upgraded[2:]...)); err != nil || v.Break == nil || v.Break.Seq != 1 {
		t.Fatalf("the last event before the chain edited: %+v %v", v, err)
	}
	v, err := pushauth.VerifyAudit(ctx, intact[2:])
	if err != nil || v.Break != nil || v.First != 3 || v.Last != 6 || v.Anchor != pushauth.AuditHash(intact[1]) || v.Head != pushauth.AuditHash(intact[5]) {
		t.Fatalf("a trail trimmed at its head: %+v %v", v, err)
	}
}

// TestMemoryAuditIsChained: the memory store's trail verifies, and
// verification notices an event changed in it.
func TestMemoryAuditIsChained(t *testing.T) {
	ctx := context.Background()
	l := memory.NewAuditLog(time.Hour, 10, nil)
	for i := range 25 {
		if err := l.Append(ctx, pushauth.AuditEvent{Time: time.Now().In(time.FixedZone("JST", 9*3600)), Type: pushauth.AuditAdmin, Detail: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := pushauth.VerifyAudit(ctx, l)
	if err != nil || v.Break != nil || v.Events != 10 || v.First != 16 || v.Last != 25 {
		t.Fatalf("verify = %+v %v, want events 16..25 intact", v, err)
	}
	var recs records
	_ = l.WalkAudit(ctx, func(r []byte) error { recs = append(recs, r); return nil })
	recs[4] = []byte(strings.Replace(string(recs[4]), `"detail":"19"`, `"detail":"x"`, 1))
	if v, _ := pushauth.VerifyAudit(ctx, recs); v.Break == nil || v.Break.Seq != 20 {
		t.Fatalf("a changed event: %+v", v.Break)
	}
}
