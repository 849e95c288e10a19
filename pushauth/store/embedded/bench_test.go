package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// BenchmarkGatewayCycle is the store's share of one full cycle of the
// bench (login held, pushed, fetched and approved by the phone, the bank's
// session learned), run by many goroutines at once as Caddy runs them:
// the memory store (main's default until this store) against the embedded
// one. ns/op is CPU and waiting per cycle; compare the two side by side.
func BenchmarkGatewayCycle(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func(b *testing.B) (pushauth.Store, pushauth.AuditLog)
	}{
		{"memory", func(b *testing.B) (pushauth.Store, pushauth.AuditLog) {
			return pushauth.NewMemoryStore(nil), pushauth.NewMemoryAuditLog(0, 0, nil)
		}},
		{"embedded", func(b *testing.B) (pushauth.Store, pushauth.AuditLog) {
			s := initAndOpen(b, layout(b))
			return s, s.AuditLog()
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, audit := tc.open(b)
			defer s.Close()
			ctx := context.Background()
			const users = 2000
			w := newWorld()
			if err := s.PutCredential(ctx, &w.cred); err != nil {
				b.Fatal(err)
			}
			for i := range users {
				if err := s.PutUser(ctx, &pushauth.User{Key: fmt.Sprintf("u%d", i), CredentialID: w.cred.ID, State: pushauth.UserActive}); err != nil {
					b.Fatal(err)
				}
			}
			var seq atomic.Int64
			b.SetParallelism(16) // 32 goroutines on 2 CPUs, like the bench's 32 clients
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					user := fmt.Sprintf("u%d", n%users)
					id := fmt.Sprintf("c%d", n)
					now := time.Now()
					must(b, func() error { _, err := s.GetUser(ctx, user); return err })
					must(b, func() error { _, err := s.GetCredential(ctx, w.cred.ID); return err })
					must(b, func() error {
						_, err := s.UseJTI(ctx, fmt.Sprintf("push/%s/%d/0", user, n), now.Add(2*time.Minute))
						return err
					})
					c := &pushauth.Challenge{ID: id, UserKey: user, CredentialID: w.cred.ID, Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
					must(b, func() error { _, err := s.CreateChallenge(ctx, c, c.ExpiresAt); return err })
					must(b, func() error {
						return audit.Append(ctx, pushauth.AuditEvent{Time: now, Type: pushauth.AuditCreated, User: user, Challenge: id, Rule: "login", ClientIP: "127.0.0.1", Actor: "gateway"})
					})
					for range 2 { // the phone fetches the challenge, then decides: two device tokens
						must(b, func() error { _, err := s.GetCredential(ctx, w.cred.ID); return err })
						must(b, func() error {
							_, err := s.UseJTI(ctx, fmt.Sprintf("jti/%s/%d-%d", w.cred.ID, n, time.Now().UnixNano()), now.Add(150*time.Second))
							return err
						})
					}
					must(b, func() error {
						// A newer cycle of the same user may have superseded it.
						if _, err := s.Resolve(ctx, id, pushauth.StatusApproved, false, now); !errors.Is(err, pushauth.ErrConflict) {
							return err
						}
						return nil
					})
					must(b, func() error {
						return audit.Append(ctx, pushauth.AuditEvent{Time: now, Type: pushauth.AuditDecided, User: user, Challenge: id, Rule: "login", Outcome: "approved", Actor: "phone"})
					})
					must(b, func() error { return s.PutSession(ctx, fmt.Sprintf("session-%d", n), user, 30*time.Minute) })
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			if es, ok := s.(interface{ Commits() int64 }); ok {
				b.ReportMetric(float64(es.Commits())/float64(b.N), "commits/op")
			}
		})
	}
}

// cpuTime is the CPU this process used (user and system), the figure the
// bench reads from /proc for Caddy.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func must(b *testing.B, f func() error) {
	if err := f(); err != nil {
		b.Error(err)
	}
}

// BenchmarkReleasePath is the store's part of releasing a held request:
// the decision token's credential and jti, the challenge read and
// resolved, the decision audited, the user's failure count read. Releases
// come one at a time with a pause between them (untimed), as in the
// bench's "release, one instance" figure, so ns/op is the latency the
// store adds to one release, not its throughput.
func BenchmarkReleasePath(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func(b *testing.B) (pushauth.Store, pushauth.AuditLog)
	}{
		{"memory", func(b *testing.B) (pushauth.Store, pushauth.AuditLog) {
			return pushauth.NewMemoryStore(nil), pushauth.NewMemoryAuditLog(0, 0, nil)
		}},
		{"embedded", func(b *testing.B) (pushauth.Store, pushauth.AuditLog) {
			s := initAndOpen(b, layout(b))
			return s, s.AuditLog()
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, audit := tc.open(b)
			defer s.Close()
			ctx := context.Background()
			w := newWorld()
			if err := s.PutCredential(ctx, &w.cred); err != nil {
				b.Fatal(err)
			}
			if err := s.PutUser(ctx, &w.users[0]); err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = fmt.Sprintf("c%d", i)
				c := &pushauth.Challenge{ID: ids[i], UserKey: fmt.Sprintf("u%d", i), CredentialID: w.cred.ID, Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
				if _, err := s.CreateChallenge(ctx, c, c.ExpiresAt); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				must(b, func() error { _, err := s.GetCredential(ctx, w.cred.ID); return err })
				must(b, func() error {
					_, err := s.UseJTI(ctx, "jti/"+w.cred.ID+"/"+ids[i], now.Add(150*time.Second))
					return err
				})
				must(b, func() error { _, err := s.GetChallenge(ctx, ids[i]); return err })
				must(b, func() error { _, err := s.Resolve(ctx, ids[i], pushauth.StatusApproved, false, now); return err })
				must(b, func() error {
					return audit.Append(ctx, pushauth.AuditEvent{Time: now, Type: pushauth.AuditDecided, User: "1001/alice", Challenge: ids[i], Outcome: "approved", Actor: "phone"})
				})
				must(b, func() error { _, err := s.GetUser(ctx, "1001/alice"); return err })
				b.StopTimer()
				time.Sleep(200 * time.Microsecond)
				b.StartTimer()
			}
		})
	}
}
