package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

func TestMemoryAuditLogRetention(t *testing.T) {
	clk := pushauthtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := memory.NewAuditLog(time.Hour, 3, clk.Now)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		_ = l.Append(ctx, pushauth.AuditEvent{Time: clk.Now(), Type: "t", User: string(rune('a' + i))})
		clk.Advance(time.Minute)
	}
	evs, _ := l.Query(ctx, pushauth.AuditQuery{})
	if len(evs) != 3 || evs[0].User != "c" || evs[2].User != "e" {
		t.Fatalf("count bound: %+v", evs)
	}
	clk.Advance(58 * time.Minute) // c is now older than an hour
	if evs, _ := l.Query(ctx, pushauth.AuditQuery{}); len(evs) != 2 || evs[0].User != "d" {
		t.Fatalf("age bound: %+v", evs)
	}
	if evs, _ := l.Query(ctx, pushauth.AuditQuery{User: "e", Limit: 5}); len(evs) != 1 {
		t.Fatalf("by user: %+v", evs)
	}
}
