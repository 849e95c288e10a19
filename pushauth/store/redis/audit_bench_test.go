package redis

import (
	"context"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// BenchmarkAuditAppend is one audit event appended to the shared stream
// from one instance: with the hash chain, WATCH, the newest entry and
// MULTI/EXEC instead of one pipeline.
func BenchmarkAuditAppend(b *testing.B) {
	l := NewAuditLog(open(b, []string{redistest.Start(b)}, uniquePrefix()), time.Hour, 100000)
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

// BenchmarkAuditAppendParallel is many requests of one instance recording
// at once.
func BenchmarkAuditAppendParallel(b *testing.B) {
	l := NewAuditLog(open(b, []string{redistest.Start(b)}, uniquePrefix()), time.Hour, 100000)
	ctx := context.Background()
	ev := pushauth.AuditEvent{Time: time.Now(), Type: pushauth.AuditCreated, User: "1001/alice", Credential: "OPGWVXMS542362BJRK",
		Challenge: "Hh2k3LrKkq1nBz0S7QoJ9w", Rule: "transfer", ClientIP: "192.0.2.10", Outcome: "pending", Actor: "gateway", Service: "banking", Host: "bank.example.jp"}
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Append(ctx, ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
