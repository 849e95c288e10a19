package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// The store's share of the bench's figures, the memory store (the default
// before this one) against the embedded store, side by side:
//
//	go test -run XXX -bench . ./pushauth/store/embedded/

type benchStore struct {
	name string
	open func(b *testing.B) (pushauth.Store, pushauth.AuditLog)
}

var benchStores = []benchStore{
	{"memory", func(b *testing.B) (pushauth.Store, pushauth.AuditLog) {
		return memory.New(nil), memory.NewAuditLog(0, 0, nil)
	}},
	{"embedded", func(b *testing.B) (pushauth.Store, pushauth.AuditLog) {
		s := initAndOpen(b, layout(b))
		return s, s.AuditLog()
	}},
}

// benchUsers enrols n users on the world's phone.
func benchUsers(b *testing.B, s pushauth.Store, n int) world {
	ctx := context.Background()
	w := newWorld()
	if err := s.PutCredential(ctx, &w.cred); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := s.PutUser(ctx, &pushauth.User{Key: fmt.Sprintf("u%d", i), CredentialID: w.cred.ID, State: pushauth.UserActive}); err != nil {
			b.Fatal(err)
		}
	}
	return w
}

// BenchmarkGatewayCycle is the store's work for one full cycle of the
// bench (login held, pushed, fetched and approved by the phone, the bank's
// session learned), started 1000 times a second, each in its own
// goroutine as Caddy serves them. cpu-ns/op is the process's CPU per
// cycle, the writer's included.
func BenchmarkGatewayCycle(b *testing.B) {
	const rate = 1000
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			s, audit := bs.open(b)
			defer s.Close()
			ctx := context.Background()
			const users = 2000
			w := benchUsers(b, s, users)
			tick := time.NewTicker(time.Second / rate)
			defer tick.Stop()
			var wg sync.WaitGroup
			cpu0, commits0 := cpuTime(), commits(s)
			b.ResetTimer()
			for n := range b.N {
				<-tick.C
				wg.Go(func() {
					user, id, now := fmt.Sprintf("u%d", n%users), fmt.Sprintf("c%d", n), time.Now()
					must(b, func() error { _, err := s.GetUser(ctx, user); return err })
					must(b, func() error { _, err := s.GetCredential(ctx, w.cred.ID); return err })
					must(b, func() error {
						_, err := s.UseJTI(ctx, fmt.Sprintf("push/%s/%d/0", user, n), now.Add(2*time.Minute))
						return err
					})
					c := &pushauth.Challenge{ID: id, UserKey: user, CredentialID: w.cred.ID, Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
					must(b, func() error { _, err := s.CreateChallenge(ctx, c, c.ExpiresAt); return err })
					for _, ev := range []pushauth.AuditEvent{
						{Time: now, Type: pushauth.AuditCreated, User: user, Challenge: id, Rule: "login", ClientIP: "127.0.0.1", Actor: "gateway"},
						{Time: now, Type: pushauth.AuditPushed, User: user, Challenge: id, Outcome: "sent", Detail: "webhook"},
					} {
						must(b, func() error { return audit.Append(ctx, ev) })
					}
					for k := range 2 { // the phone fetches the challenge, then decides: two device tokens
						must(b, func() error { _, err := s.GetCredential(ctx, w.cred.ID); return err })
						must(b, func() error {
							_, err := s.UseJTI(ctx, fmt.Sprintf("jti/%s/%d-%d", w.cred.ID, n, k), now.Add(150*time.Second))
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
					// The approval resets the user's failure count (none to reset).
					must(b, func() error { return s.ResetFailures(ctx, user, now) })
					must(b, func() error { return s.PutSession(ctx, fmt.Sprintf("session-%d", n), user, 30*time.Minute) })
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(commits(s)-commits0)/float64(b.N), "commits/op")
		})
	}
}

// commits is how many transactions the embedded store committed (0 for
// the memory store).
func commits(s pushauth.Store) int64 {
	if es, ok := s.(interface{ Commits() int64 }); ok {
		return es.Commits()
	}
	return 0
}

// BenchmarkReleasePath is the store's part of releasing a held request:
// the decision token's credential and jti, the challenge read and
// resolved, the decision audited, the user's failure count reset (a user
// without failures: nothing to write). Releases
// come one at a time with a pause between them (untimed), as in the
// bench's "release, one instance" figure, so ns/op is the latency the
// store adds to one release, not its throughput.
func BenchmarkReleasePath(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			s, audit := bs.open(b)
			defer s.Close()
			ctx := context.Background()
			w := benchUsers(b, s, 1)
			now := time.Now()
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = fmt.Sprintf("c%d", i)
				c := &pushauth.Challenge{ID: ids[i], UserKey: fmt.Sprintf("v%d", i), CredentialID: w.cred.ID, Status: pushauth.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
				if _, err := s.CreateChallenge(ctx, c, c.ExpiresAt); err != nil {
					b.Fatal(err)
				}
			}
			commits0 := commits(s)
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
					return audit.Append(ctx, pushauth.AuditEvent{Time: now, Type: pushauth.AuditDecided, User: "u0", Challenge: ids[i], Outcome: "approved", Actor: "phone"})
				})
				must(b, func() error { return s.ResetFailures(ctx, "u0", now) })
				b.StopTimer()
				time.Sleep(200 * time.Microsecond)
				b.StartTimer()
			}
			b.StopTimer()
			// Batched writes are committed every Linger, never waited for.
			b.ReportMetric(float64(commits(s)-commits0)/float64(b.N), "commits/op")
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
