package memory

import (
	"context"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// BenchmarkAuditAppend: the memory trail, chained under its lock.
func BenchmarkAuditAppend(b *testing.B) {
	l := NewAuditLog(time.Hour, 100000, nil)
	ctx := context.Background()
	ev := pushauth.AuditEvent{Time: time.Now(), Type: pushauth.AuditCreated, User: "1001/alice", Credential: "OPGWVXMS542362BJRK",
		Challenge: "Hh2k3LrKkq1nBz0S7QoJ9w", Rule: "transfer", ClientIP: "192.0.2.10", Outcome: "pending", Actor: "gateway", Service: "banking", Host: "bank.example.jp"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := l.Append(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}
