package redis

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// TestAuditStreamIsSharedAndBounded: events appended on one instance are
// queryable on another, by user and time, and the stream stays bounded.
func TestAuditStreamIsSharedAndBounded(t *testing.T) {
	addr := redistest.Start(t)
	prefix := uniquePrefix()
	a := NewAuditLog(open(t, []string{addr}, prefix), time.Hour, 50)
	b := NewAuditLog(open(t, []string{addr}, prefix), time.Hour, 50)
	ctx := ctxT(t)
	start := time.Now()
	for i := range 10 {
		user := "1001/alice"
		if i%2 == 1 {
			user = "1001/bob"
		}
		if err := a.Append(ctx, pushauth.AuditEvent{Time: time.Now(), Type: pushauth.AuditDecided, User: user, Outcome: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	evs, err := b.Query(ctx, pushauth.AuditQuery{User: "1001/alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 || evs[0].Outcome != "0" || evs[4].Outcome != "8" {
		t.Fatalf("alice's events from the other instance: %+v", evs)
	}
	evs, _ = b.Query(ctx, pushauth.AuditQuery{Limit: 3})
	if len(evs) != 3 || evs[0].Outcome != "7" || evs[2].Outcome != "9" {
		t.Fatalf("newest 3, oldest first: %+v", evs)
	}
	evs, _ = b.Query(ctx, pushauth.AuditQuery{Since: start.Add(-time.Minute), Until: start.Add(-time.Second)})
	if len(evs) != 0 {
		t.Fatalf("events before the test started: %+v", evs)
	}
	for range 500 {
		if err := a.Append(ctx, pushauth.AuditEvent{Time: time.Now(), Type: pushauth.AuditCreated, User: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := a.client.XLen(ctx, a.key).Result()
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole stream nodes, so allow one node (100 entries) over.
	if n > 150 {
		t.Fatalf("stream holds %d entries, want about the bound of 50", n)
	}
}

// TestAuditChainDoesNotForkAcrossInstances: instances appending to one
// stream at the same moment still make one chain, every entry's prev the
// hash of the entry before it, even while the stream is trimmed.
func TestAuditChainDoesNotForkAcrossInstances(t *testing.T) {
	addr := redistest.Start(t)
	prefix := uniquePrefix()
	logs := []*AuditLog{
		NewAuditLog(open(t, []string{addr}, prefix), time.Hour, 150),
		NewAuditLog(open(t, []string{addr}, prefix), time.Hour, 150),
		NewAuditLog(open(t, []string{addr}, prefix), time.Hour, 150),
	}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i, l := range logs {
		for w := range 4 {
			wg.Go(func() {
				for n := range 25 {
					if err := l.Append(ctx, pushauth.AuditEvent{Time: time.Now(), Type: pushauth.AuditCreated, Detail: fmt.Sprint(i, w, n)}); err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Challenge events are appended after Append returns (OnRequestPath):
	// wait, bounded, for all 300.
	var v *pushauth.AuditVerification
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if v, err = pushauth.VerifyAudit(ctx, logs[0]); err != nil {
			t.Fatal(err)
		}
		if v.Last == 300 || time.Now().After(deadline) {
			break
		}
	}
	if v.Break != nil || v.Last != 300 || v.Events < 150 || v.Last-v.First+1 != uint64(v.Events) {
		t.Fatalf("after 300 concurrent appends from 3 instances: %+v (break %v)", v, v.Break)
	}
}
