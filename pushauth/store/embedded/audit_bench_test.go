package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/embedded"
)

// BenchmarkAuditAppend is the audit cost of a held request's event
// (batched into the writer's next transaction), flushed at the end: the
// hash chain adds reading the newest record, hashing it and encoding.
func BenchmarkAuditAppend(b *testing.B) {
	o := layout(b)
	if _, err := embedded.Init(o); err != nil {
		b.Fatal(err)
	}
	s, err := embedded.Open(o)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	ev := pushauth.AuditEvent{Time: time.Now(), Type: pushauth.AuditCreated, User: "1001/alice", Credential: "OPGWVXMS542362BJRK",
		Challenge: "Hh2k3LrKkq1nBz0S7QoJ9w", Rule: "transfer", ClientIP: "192.0.2.10", Outcome: "pending", Actor: "gateway", Service: "banking", Host: "bank.example.jp"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := s.AuditLog().Append(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.AuditLog().Query(ctx, pushauth.AuditQuery{Limit: 1}); err != nil { // flushes
		b.Fatal(err)
	}
}
