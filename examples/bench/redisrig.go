package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/internal/caddyrig"
)

// startRedis runs redis-server (bin) on a free loopback port, keeping
// nothing on disk, with extra arguments; it returns the process and its
// address once it answers PING.
func startRedis(dir, bin, name string, extra ...string) (*proc, string, error) {
	port, err := caddyrig.FreePort()
	if err != nil {
		return nil, "", err
	}
	return startRedisOn(dir, bin, name, port, extra...)
}

// startRedisOn is startRedis on the given port (a killed server coming
// back).
func startRedisOn(dir, bin, name string, port int, extra ...string) (*proc, string, error) {
	work := filepath.Join(dir, name)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, "", err
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work}, extra...)
	p, err := startProc(dir, name, bin, args, nil)
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitFor(10*time.Second, func() string {
		if _, ok := redisStats(addr); !ok {
			return "no answer"
		}
		return ""
	}); err != nil {
		p.stop()
		return nil, "", fmt.Errorf("%s on %s: %w", name, addr, err)
	}
	return p, addr, nil
}

// quietRedis drops go-redis's own log lines: the bench reads the
// counters of a primary it killed, and says itself what failed.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func init() { goredis.SetLogger(quietRedis{}) }

// sentinelName is the primary's name the bench's Sentinels monitor.
const sentinelName = "onepush-bench"

// sentinelRig is a primary, its replica and three Sentinels (quorum 2),
// each a redis-server process; Sentinels run as `redis-server <conf>
// --sentinel`.
type sentinelRig struct {
	dir, bin  string
	data      map[string]*proc // by address; the primary first started as data[primary]
	primary   string
	sentinels []*proc
	addrs     []string // the Sentinels'
}

func (r *sentinelRig) stop() {
	for _, p := range r.sentinels {
		p.stop()
	}
	for _, p := range r.data {
		p.stop()
	}
}

func startSentinelRig(dir, bin string) (*sentinelRig, error) {
	r := &sentinelRig{dir: dir, bin: bin, data: map[string]*proc{}}
	p, primary, err := startRedis(dir, bin, "redis-primary")
	if err != nil {
		return nil, err
	}
	r.data[primary], r.primary = p, primary
	host, port, _ := net.SplitHostPort(primary)
	p, replica, err := startRedis(dir, bin, "redis-replica", "--replicaof", host, port)
	if err != nil {
		r.stop()
		return nil, err
	}
	r.data[replica] = p
	// The Sentinels learn the replica from the primary's INFO: start them
	// once it is there.
	if err := waitFor(30*time.Second, func() string { return replicaInSync(primary) }); err != nil {
		r.stop()
		return nil, err
	}
	for i := range 3 {
		sport, err := caddyrig.FreePort()
		if err != nil {
			r.stop()
			return nil, err
		}
		work := filepath.Join(dir, fmt.Sprintf("sentinel-%d", i))
		if err := os.MkdirAll(work, 0o755); err != nil {
			r.stop()
			return nil, err
		}
		conf := filepath.Join(work, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nlogfile \"\"\nloglevel warning\n"+
			"sentinel monitor %[3]s %[4]s %[5]s 2\nsentinel down-after-milliseconds %[3]s 1000\nsentinel failover-timeout %[3]s 5000\nsentinel parallel-syncs %[3]s 1\n",
			sport, work, sentinelName, host, port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			r.stop()
			return nil, err
		}
		sp, err := startProc(dir, fmt.Sprintf("sentinel-%d", i), bin, []string{conf, "--sentinel"}, nil)
		if err != nil {
			r.stop()
			return nil, err
		}
		r.sentinels = append(r.sentinels, sp)
		r.addrs = append(r.addrs, fmt.Sprintf("127.0.0.1:%d", sport))
	}
	err = waitFor(30*time.Second, func() string {
		for _, a := range r.addrs {
			others, err1 := sentinelDo(a, "SENTINEL", "SENTINELS", sentinelName)
			replicas, err2 := sentinelDo(a, "SENTINEL", "REPLICAS", sentinelName)
			if err1 != nil || err2 != nil {
				return fmt.Sprintf("sentinel %s: %v %v", a, err1, err2)
			}
			if l, _ := others.([]any); len(l) != 2 {
				return fmt.Sprintf("sentinel %s knows %d other Sentinels", a, len(l))
			}
			if l, _ := replicas.([]any); len(l) != 1 || !strings.Contains(fmt.Sprint(l[0]), "master-link-status:ok") {
				return fmt.Sprintf("sentinel %s sees replicas %v", a, replicas)
			}
		}
		return ""
	})
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("Sentinels not ready: %w", err)
	}
	return r, nil
}

// revive starts the data server at addr again, as an operator (or an
// orchestrator) restarts a crashed one: on the same port and with no
// role, so that the Sentinels make it a replica of the new primary.
func (r *sentinelRig) revive(addr string) error {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	p, _, err := startRedisOn(r.dir, r.bin, "redis-revived-"+port, n)
	if err != nil {
		return err
	}
	r.data[addr] = p
	return nil
}

// replicaInSync says why primary has no replica in sync ("" when it has).
func replicaInSync(primary string) string {
	inf := redisInfo(primary, "replication")
	if inf["connected_slaves"] != "1" || !strings.Contains(inf["slave0"], "state=online") {
		return fmt.Sprintf("%s has no replica in sync (%s replicas: %s)", primary, inf["connected_slaves"], inf["slave0"])
	}
	return ""
}

// master is the primary a majority of the Sentinels names ("" if none).
func (r *sentinelRig) master() string {
	votes := map[string]int{}
	for _, a := range r.addrs {
		v, err := sentinelDo(a, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinelName)
		if pair, ok := v.([]any); err == nil && ok && len(pair) == 2 {
			votes[net.JoinHostPort(fmt.Sprint(pair[0]), fmt.Sprint(pair[1]))]++
		}
	}
	for addr, n := range votes {
		if n >= 2 {
			return addr
		}
	}
	return ""
}

func sentinelDo(addr string, args ...any) (any, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return c.Do(ctx, args...).Result()
}

// redisInfo reads one INFO section of addr as key/value pairs (empty when
// it does not answer).
func redisInfo(addr, section string) map[string]string {
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out := map[string]string{}
	text, err := c.Info(ctx, section).Result()
	if err != nil {
		return out
	}
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// redisCounters are a server's commands processed and bytes in and out,
// and whether it is a primary.
type redisCounters struct {
	ops, bytes int64
	primary    bool
	calls      map[string]int64 // per command (INFO commandstats)
}

func redisStats(addr string) (redisCounters, bool) {
	inf := redisInfo(addr, "all")
	ops, ok := inf["total_commands_processed"]
	if !ok {
		return redisCounters{}, false
	}
	var r redisCounters
	r.ops, _ = strconv.ParseInt(ops, 10, 64)
	in, _ := strconv.ParseInt(inf["total_net_input_bytes"], 10, 64)
	out, _ := strconv.ParseInt(inf["total_net_output_bytes"], 10, 64)
	r.bytes = in + out
	r.primary = inf["role"] == "master"
	r.calls = map[string]int64{}
	for k, v := range inf {
		if cmd, ok := strings.CutPrefix(k, "cmdstat_"); ok {
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			r.calls[cmd], _ = strconv.ParseInt(calls, 10, 64)
		}
	}
	return r, true
}

// waitFor polls cond (which says what is not ready yet, "" when ready).
func waitFor(timeout time.Duration, cond func() string) error {
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
