package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/internal/caddyrig"
)

// MasterName is the name the Sentinels of StartSentinel monitor.
const MasterName = "onepush-test"

// Sentinel timings: a primary that answers no PING for downAfter is down;
// with them a failover takes a few seconds on a busy machine.
const (
	downAfter       = 1000 * time.Millisecond
	failoverTimeout = 5 * time.Second
)

// Sentinel is a primary, one replica and three Sentinels monitoring them
// (quorum 2), all redis-server processes on 127.0.0.1 started by the test
// (`redis-server <conf> --sentinel` for the Sentinels).
type Sentinel struct {
	t testing.TB
	// Servers are the data servers: Servers[0] started as the primary,
	// Servers[1] as its replica. After a failover the roles change; ask
	// Master.
	Servers   []*Server
	Sentinels []*Server
}

// StartSentinel starts the rig and waits until the Sentinels know each
// other and the replica is in sync, so that a failover can happen. extra
// goes to both data servers.
func StartSentinel(t testing.TB, extra ...string) *Sentinel {
	t.Helper()
	primary := StartServer(t, extra...)
	replica := StartServer(t, append(append([]string(nil), extra...), "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))...)
	rig := &Sentinel{t: t, Servers: []*Server{primary, replica}}
	// The Sentinels learn the replica from the primary's INFO, which they
	// read on connecting and then every 10 s: start them once it is there.
	rig.WaitReplicas(primary.Addr(), 1, 30*time.Second)
	for range 3 {
		rig.Sentinels = append(rig.Sentinels, startSentinelServer(t, primary.port))
	}
	start := time.Now()
	rig.waitReady(30 * time.Second)
	t.Logf("redistest: Sentinels ready in %s", time.Since(start).Round(time.Millisecond))
	return rig
}

func startSentinelServer(t testing.TB, primaryPort int) *Server {
	t.Helper()
	s := &Server{t: t, bin: findRedis(t), dir: t.TempDir()}
	s.conf = func(port int) string {
		return fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
logfile ""
loglevel warning
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
sentinel parallel-syncs %s 1
`, port, s.dir, MasterName, primaryPort, MasterName, downAfter.Milliseconds(), MasterName, failoverTimeout.Milliseconds(), MasterName)
	}
	var err error
	for range 5 {
		if s.port, err = caddyrig.FreePort(); err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		if err = s.start(); err == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("redistest: starting a Sentinel: %v", err)
	return nil
}

// Addrs are the Sentinels' addresses, as a client's configuration lists
// them.
func (r *Sentinel) Addrs() []string {
	out := make([]string, len(r.Sentinels))
	for i, s := range r.Sentinels {
		out[i] = s.Addr()
	}
	return out
}

// ServerAt is the data server listening on addr.
func (r *Sentinel) ServerAt(addr string) *Server {
	for _, s := range r.Servers {
		if s.Addr() == addr {
			return s
		}
	}
	r.t.Fatalf("redistest: no data server at %s", addr)
	return nil
}

func (r *Sentinel) sentinelDo(ctx context.Context, s *Server, args ...any) (any, error) {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	return c.Do(ctx, args...).Result()
}

// Master asks the Sentinels which server is the primary: the address a
// majority of them names.
func (r *Sentinel) Master(ctx context.Context) (string, error) {
	votes := map[string]int{}
	for _, s := range r.Sentinels {
		v, err := r.sentinelDo(ctx, s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName)
		if err != nil {
			continue
		}
		if pair, ok := v.([]any); ok && len(pair) == 2 {
			votes[net.JoinHostPort(fmt.Sprint(pair[0]), fmt.Sprint(pair[1]))]++
		}
	}
	for addr, n := range votes {
		if n >= 2 {
			return addr, nil
		}
	}
	return "", fmt.Errorf("redistest: the Sentinels do not agree on a primary: %v", votes)
}

// info reads INFO replication of addr as key/value pairs.
func info(ctx context.Context, addr string) (map[string]string, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	text, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// waitReady waits until every Sentinel knows the other two and the
// replica, and the primary has its replica online.
func (r *Sentinel) waitReady(timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		why = r.notReady()
		if why == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("redistest: Sentinel rig not ready after %s: %s", timeout, why)
}

func (r *Sentinel) notReady() string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range r.Sentinels {
		v, err := r.sentinelDo(ctx, s, "SENTINEL", "SENTINELS", MasterName)
		if err != nil {
			return fmt.Sprintf("sentinel %s: %v", s.Addr(), err)
		}
		if l, _ := v.([]any); len(l) != len(r.Sentinels)-1 {
			return fmt.Sprintf("sentinel %s knows %d other sentinels", s.Addr(), len(l))
		}
		v, err = r.sentinelDo(ctx, s, "SENTINEL", "REPLICAS", MasterName)
		if err != nil {
			return fmt.Sprintf("sentinel %s: %v", s.Addr(), err)
		}
		if l, _ := v.([]any); len(l) != 1 || !strings.Contains(fmt.Sprint(l[0]), "master-link-status:ok") {
			return fmt.Sprintf("sentinel %s sees replicas %v", s.Addr(), v)
		}
	}
	m, err := r.Master(ctx)
	if err != nil {
		return err.Error()
	}
	inf, err := info(ctx, m)
	if err != nil {
		return fmt.Sprintf("primary %s: %v", m, err)
	}
	if inf["role"] != "master" || inf["connected_slaves"] != "1" || !strings.Contains(inf["slave0"], "state=online") {
		return fmt.Sprintf("primary %s: role %s, %s replicas (%s)", m, inf["role"], inf["connected_slaves"], inf["slave0"])
	}
	return ""
}

// WaitFailover waits until the Sentinels name a primary other than old
// and it says it is the primary, and returns its address.
func (r *Sentinel) WaitFailover(old string, timeout time.Duration) string {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		m, err := r.Master(ctx)
		if err == nil && m != old {
			inf, err := info(ctx, m)
			if err == nil && inf["role"] == "master" {
				cancel()
				return m
			}
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("redistest: no failover away from %s within %s", old, timeout)
	return ""
}

// StallReplica freezes the replica (SIGSTOP) and then writes more
// unrelated data to the primary than the kernel's socket buffers between
// them can hold (tcp_rmem's and tcp_wmem's maximum, and 8 MiB more). From
// then on the primary keeps what it must send the replica in its own
// memory: everything it accepts never reaches the replica and is lost when
// it dies, which is what a failover loses. It returns the replica, to
// Resume after the primary is killed.
func (r *Sentinel) StallReplica(ctx context.Context) *Server {
	r.t.Helper()
	primary, err := r.Master(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var replica *Server
	for _, s := range r.Servers {
		if s.Addr() != primary {
			replica = s
		}
	}
	replica.Pause()
	fill := socketBufferMax("/proc/sys/net/ipv4/tcp_rmem") + socketBufferMax("/proc/sys/net/ipv4/tcp_wmem") + 8<<20
	c := goredis.NewClient(&goredis.Options{Addr: primary})
	defer c.Close()
	chunk := strings.Repeat("x", 1<<20)
	for i := 0; i*len(chunk) < fill; i++ {
		if err := c.Set(ctx, fmt.Sprintf("redistest:filler:%d", i), chunk, time.Minute).Err(); err != nil {
			r.t.Fatalf("redistest: filling the replication link: %v", err)
		}
	}
	r.t.Logf("redistest: replication to %s stalled behind %d MiB", replica.Addr(), fill>>20)
	return replica
}

// socketBufferMax is the largest a TCP socket buffer grows to, from a
// tcp_rmem or tcp_wmem file (min default max); 32 MiB when unknown.
func socketBufferMax(file string) int {
	b, err := os.ReadFile(file)
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			if n, err := strconv.Atoi(f[2]); err == nil {
				return n
			}
		}
	}
	return 32 << 20
}

// Rejoin restarts the data server at addr (killed, e.g. the old primary)
// as a replica of primary, as an operator brings a failed server back
// (the Sentinels would convert it too, but only after their next INFO,
// up to 10 s later), and waits until primary has it online.
func (r *Sentinel) Rejoin(addr, primary string) {
	r.t.Helper()
	srv := r.ServerAt(addr)
	host, port, _ := net.SplitHostPort(primary)
	srv.extra = append(append([]string(nil), srv.extra...), "--replicaof", host, port)
	srv.Restart()
	r.WaitReplicas(primary, 1, 30*time.Second)
}

// WaitReplicas waits until the primary at addr has n replicas online
// (a returning old primary is turned into a replica by the Sentinels).
func (r *Sentinel) WaitReplicas(addr string, n int, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		inf, err := info(ctx, addr)
		cancel()
		if err == nil {
			last = inf
			online := 0
			for k, v := range inf {
				if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online") {
					online++
				}
			}
			if online >= n {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("redistest: primary %s has not %d replicas online after %s: %v", addr, n, timeout, last)
}
