package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ---- 1. pass-through ----

type passSide struct {
	RPS    float64 `json:"rps"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	Errors int64   `json:"errors"`
}

type passResult struct {
	Gated passSide `json:"onepush"`
	Plain passSide `json:"plain"`
	// ThroughputPct and P99Pct are the medians of the per-round ratios:
	// each round pairs an onepush run with a plain run next to it in time,
	// so a burst of load from elsewhere on the machine moves one pair, not
	// the figure.
	ThroughputPct float64   `json:"throughput_pct"`
	P99Pct        float64   `json:"p99_pct"`
	RoundRatios   []float64 `json:"round_throughput_pcts"`
	Conc          int       `json:"concurrency"`
	Rounds        int       `json:"rounds"`
	RoundSec      float64   `json:"round_seconds"`
}

// passThrough alternates rounds on the two sites of one Caddy process, so
// drift on a shared 2-core machine hits both sides alike.
func passThrough(dir string, g *gateway, rounds, conc int, round time.Duration, profile string) (*passResult, error) {
	path := "/static/style.css" // no rule lists this path
	hs := [2]*hist{newHist(), newHist()}
	var counts, errs [2]int64
	var durs [2]time.Duration
	var tputPct, p99Pct []float64
	for r := range rounds {
		var rps, p99 [2]float64
		for side, base := range []string{g.Gated, g.Plain} {
			if r%2 == 1 {
				side = 1 - side
				base = []string{g.Gated, g.Plain}[side]
			}
			if profile != "" && side == 0 && r == 0 {
				go fetchProfile(g, filepath.Join(profile, "passthrough.cpu.pprof"), round)
			}
			p, err := startRole(dir, fmt.Sprintf("load-pass-%d-%d", r, side), "load",
				"-mode", "pass", "-url", base+path, "-conc", strconv.Itoa(conc), "-dur", round.String())
			if err != nil {
				return nil, err
			}
			l, err := p.line(round + 30*time.Second)
			p.stop()
			if err != nil {
				return nil, err
			}
			var res loadResult
			if err := json.Unmarshal([]byte(l), &res); err != nil {
				return nil, fmt.Errorf("load client output %q: %w", l, err)
			}
			hs[side].merge(res.Hist)
			counts[side] += res.Count
			errs[side] += res.Errors
			durs[side] += res.Dur
			rps[side] = float64(res.Count) / res.Dur.Seconds()
			p99[side] = float64(res.Hist.quantile(0.99))
		}
		tputPct = append(tputPct, 100*rps[0]/rps[1])
		p99Pct = append(p99Pct, 100*p99[0]/p99[1])
	}
	side := func(i int) passSide {
		return passSide{RPS: float64(counts[i]) / durs[i].Seconds(), P50ms: ms(hs[i].quantile(0.5)), P99ms: ms(hs[i].quantile(0.99)), Errors: errs[i]}
	}
	res := &passResult{Gated: side(0), Plain: side(1), Conc: conc, Rounds: rounds, RoundSec: round.Seconds(), RoundRatios: tputPct}
	res.ThroughputPct = median(tputPct)
	res.P99Pct = median(p99Pct)
	return res, nil
}

// settleGCs is how many collections run before live memory is read: each
// may halve a goroutine's stack, so three bring a held request's stacks to
// what they stay at in a long-running process.
const settleGCs = 3

// liveMemory returns the Go runtime's heap and goroutine stack bytes in
// Caddy, with collect after settleGCs collections (pprof heap with gc=1).
func (g *gateway) liveMemory(collect bool) (heap, stack int64) {
	var b []byte
	url, reads := g.Admin+"/debug/pprof/heap?debug=1", 1
	if collect {
		url, reads = url+"&gc=1", settleGCs
	}
	for range reads {
		resp, err := http.Get(url)
		if err != nil {
			return 0, 0
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "# HeapAlloc = "); ok {
			heap, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "# Stack = "); ok {
			stack, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return heap, stack
}

// floorMemory is liveMemory for the floor server (its /memstats). Without
// collect it only reads: a collection in the idle floor would size every
// later goroutine's first stack by its few idle ones (the runtime's
// adaptive stack start), which a floor holding requests never does.
func floorMemory(addr string) func(collect bool) (heap, stack int64) {
	return func(collect bool) (heap, stack int64) {
		n := 0
		if collect {
			n = settleGCs
		}
		resp, err := http.Get(fmt.Sprintf("http://%s/memstats?gc=%d", addr, n))
		if err != nil {
			return 0, 0
		}
		defer resp.Body.Close()
		_, _ = fmt.Fscan(resp.Body, &heap, &stack)
		return heap, stack
	}
}

func fetchHeap(g *gateway, file string) {
	resp, err := http.Get(g.Admin + "/debug/pprof/heap?debug=1")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_ = os.WriteFile(file, b, 0o644)
	resp2, err := http.Get(g.Admin + "/debug/pprof/heap")
	if err != nil {
		return
	}
	defer resp2.Body.Close()
	b, _ = io.ReadAll(resp2.Body)
	_ = os.WriteFile(strings.TrimSuffix(file, ".txt")+".pprof", b, 0o644)
}

func fetchProfile(g *gateway, file string, d time.Duration) {
	secs := int(d.Seconds())
	if secs < 1 {
		secs = 1
	}
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", g.Admin, secs))
	if err != nil {
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// ---- 2. holding ----

type holdPoint struct {
	Held        int     `json:"held"`
	RSSDeltaMiB float64 `json:"rss_delta_mib"`
	KiBPerReq   float64 `json:"kib_per_request"`
	OpenFiles   int     `json:"open_files"`
	Answered    int     `json:"answered_early"`
	IdleCPUPct  float64 `json:"idle_cpu_pct"`
	// StackKiBPerReq and HeapKiBPerReq are what each held request keeps
	// after a garbage collection (from the Go runtime): goroutine stacks
	// and live heap. RSS is more: the heap the GC lets grow between
	// collections (GOGC), which the runtime also sizes by the stacks.
	StackKiBPerReq float64 `json:"stack_kib_per_request,omitempty"`
	HeapKiBPerReq  float64 `json:"live_heap_kib_per_request,omitempty"`
}

type holdSide struct {
	BaseRSSMiB float64     `json:"base_rss_mib"`
	Points     []holdPoint `json:"points"`
}

// holdTarget is a process that holds requests: the gateway or the floor.
type holdTarget struct {
	name string
	pid  int
	addr string // host:port
	path string
	gc   func()
	// profile, when set, is called at each size while the requests are held.
	profile func(held int)
	// mem, when set, returns the target's heap and goroutine stack bytes,
	// after collecting garbage when collect is set.
	mem func(collect bool) (heap, stack int64)
}

// holdSources are the client addresses held requests come from: more than
// enough that no address reaches the gateway's per-address bound (256).
func holdSources() string {
	var s []string
	for i := 10; i < 130; i++ {
		s = append(s, fmt.Sprintf("127.0.0.%d", i))
	}
	return strings.Join(s, ",")
}

const perClientProcess = 4000 // connections per load-client process (each is capped at 20,000 files)

// hold ramps cumulatively to each size (users 0..size-1, each its own
// login post) and records RSS and open files at each, then releases all.
func hold(dir string, t holdTarget, sizes []int) (*holdSide, error) {
	if t.gc != nil {
		t.gc()
		time.Sleep(300 * time.Millisecond)
	}
	base, err := rssKB(t.pid)
	if err != nil {
		return nil, err
	}
	baseFiles, _ := openFiles(t.pid)
	var baseStack int64
	var baseHeap int64
	if t.mem != nil {
		baseHeap, baseStack = t.mem(false)
	}
	side := &holdSide{BaseRSSMiB: float64(base) / 1024}
	var clients []*proc
	defer func() {
		for _, c := range clients {
			c.stop()
		}
		// Wait for the target to drop the connections before the next phase.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if n, _ := openFiles(t.pid); n <= baseFiles+50 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	srcs := holdSources()
	held := 0
	for _, size := range sizes {
		var starting []*proc
		for from := held; from < size; from += perClientProcess {
			to := min(from+perClientProcess, size)
			p, err := startRole(dir, fmt.Sprintf("load-hold-%s-%d", t.name, from), "load",
				"-mode", "hold", "-addr", t.addr, "-path", t.path, "-from", strconv.Itoa(from), "-to", strconv.Itoa(to), "-src", srcs, "-conc", "64")
			if err != nil {
				return side, err
			}
			clients = append(clients, p)
			starting = append(starting, p)
		}
		for _, p := range starting {
			l, err := p.line(2 * time.Minute)
			if err != nil {
				return side, err
			}
			if !strings.Contains(l, "failed=0") {
				return side, fmt.Errorf("%s: %s", p.name, l)
			}
		}
		held = size
		// Wait until the target has every connection and its memory settles.
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if n, _ := openFiles(t.pid); n >= baseFiles+size {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		var rss int64
		for prev := int64(-1); time.Now().Before(deadline); prev = rss {
			time.Sleep(250 * time.Millisecond)
			rss, _ = rssKB(t.pid)
			if prev > 0 && rss-prev < max(prev/500, 64) {
				break
			}
		}
		answered := 0
		for _, c := range clients {
			fmt.Fprintln(c.in, "report")
			l, err := c.line(10 * time.Second)
			if err != nil {
				return side, err
			}
			n, _ := strconv.Atoi(strings.TrimPrefix(l, "answered="))
			answered += n
		}
		if t.profile != nil {
			t.profile(size)
		}
		files, _ := openFiles(t.pid)
		// CPU the target spends just holding (timers, re-reads), over 1 s.
		c0, w0 := cpuTicks(t.pid), time.Now()
		time.Sleep(time.Second)
		idle := 100 * float64(cpuTicks(t.pid)-c0) / clockTicks / time.Since(w0).Seconds()
		side.Points = append(side.Points, holdPoint{
			Held: size, RSSDeltaMiB: float64(rss-base) / 1024, KiBPerReq: float64(rss-base) / float64(size),
			OpenFiles: files, Answered: answered, IdleCPUPct: idle,
		})
		if t.mem != nil {
			heap, stack := t.mem(true)
			pt := &side.Points[len(side.Points)-1]
			pt.StackKiBPerReq = float64(stack-baseStack) / 1024 / float64(size)
			pt.HeapKiBPerReq = float64(heap-baseHeap) / 1024 / float64(size)
		}
		if answered > 0 {
			return side, fmt.Errorf("%s answered %d of %d requests that should be held (see %s.log)", t.name, answered, size, t.name)
		}
	}
	return side, nil
}

const clockTicks = 100 // USER_HZ on Linux

// ---- 3. release ----

type latency struct {
	N     int     `json:"n"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
}

func latencyOf(s samples) latency {
	return latency{N: len(s), P50ms: ms(s.quantile(0.5)), P99ms: ms(s.quantile(0.99))}
}

// release holds one login at a time at each of holdAt in turn (so two
// settings are measured interleaved, under the same conditions); the
// fleet's phone approves through its own device API base, and the sample is
// the time from sending the decision to the request arriving at the
// backend. It returns one latency per holdAt.
func release(f *fleet, holdAt []string, users []int) ([]latency, error) {
	f.acting.Store(true)
	defer f.acting.Store(false)
	client := &http.Client{Transport: newTransport(4), Timeout: 30 * time.Second}
	s := make([]samples, len(holdAt))
	result := func() []latency {
		out := make([]latency, len(s))
		for i := range s {
			out[i] = latencyOf(s[i])
		}
		return out
	}
	for _, u := range users {
		for i, at := range holdAt {
			resp, err := client.PostForm(at+"/login", url.Values{"user": {"u" + strconv.Itoa(u)}, "password": {"secret"}})
			if err != nil {
				return result(), err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			id := resp.Header.Get("X-Challenge")
			arrived, _ := strconv.ParseInt(resp.Header.Get("X-Arrived"), 10, 64)
			sent, ok := f.sent.Load(id)
			if resp.StatusCode != http.StatusOK || !ok || arrived == 0 {
				return result(), fmt.Errorf("release of u%d at %s: HTTP %d, challenge %q (phone failures %d: %v)", u, at, resp.StatusCode, id, f.failures.Load(), f.lastErr.Load())
			}
			s[i] = append(s[i], time.Unix(0, arrived).Sub(sent.(time.Time)))
		}
	}
	return result(), nil
}

// pubsubRTT is PUBLISH → subscriber delivery on the same Redis, one at a time.
func pubsubRTT(addr string, n int) (latency, error) {
	ctx := context.Background()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	sub := c.Subscribe(ctx, "bench-rtt")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return latency{}, err
	}
	ch := sub.Channel()
	var s samples
	for i := range n {
		t0 := time.Now()
		if err := c.Publish(ctx, "bench-rtt", strconv.Itoa(i)).Err(); err != nil {
			return latencyOf(s), err
		}
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			return latencyOf(s), fmt.Errorf("pub/sub message %d not delivered", i)
		}
		s = append(s, time.Since(t0))
	}
	return latencyOf(s), nil
}

// ---- 4. full cycles ----

type cycleResult struct {
	GatewayCPUus float64 `json:"gateway_cpu_us_per_cycle"`
	FloorCPUus   float64 `json:"floor_cpu_us_per_cycle"`
	Gateway      float64 `json:"gateway_cycles_per_s"`
	GatewayP50ms float64 `json:"gateway_p50_ms"`
	Floor        float64 `json:"floor_cycles_per_s"`
	Pct          float64 `json:"pct_of_floor"`
	Conc         int     `json:"concurrency"`
	Seconds      float64 `json:"seconds"`
}

// cycles runs conc workers for d: each posts a login of the next user, the
// gateway pushes to the fleet, the phone fetches the challenge and posts a
// signed approval, and the login reaches the backend and comes back. Each
// user is used at most perUser times (the per-user push budget).
func cycles(f *fleet, gated string, pool []int, perUser, conc int, d time.Duration) (float64, time.Duration, error) {
	f.acting.Store(true)
	defer f.acting.Store(false)
	client := &http.Client{Transport: newTransport(conc), Timeout: 30 * time.Second}
	var next atomic.Int64
	var mu sync.Mutex
	h := newHist()
	budget := int64(len(pool) * perUser)
	n, el, err := drive(conc, d, func() (bool, error) {
		i := next.Add(1) - 1
		if i >= budget {
			return false, nil
		}
		u := pool[i%int64(len(pool))]
		t0 := time.Now()
		resp, err := client.PostForm(gated+"/login", url.Values{"user": {"u" + strconv.Itoa(u)}, "password": {"secret"}})
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Challenge") == "" {
			return false, fmt.Errorf("cycle of u%d: HTTP %d, forwarded with challenge %t", u, resp.StatusCode, resp.Header.Get("X-Challenge") != "")
		}
		mu.Lock()
		h.add(time.Since(t0))
		mu.Unlock()
		return true, nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("%w (phone failures %d: %v)", err, f.failures.Load(), f.lastErr.Load())
	}
	return float64(n) / el.Seconds(), h.quantile(0.5), nil
}

// floorCycles: two loopback HTTP exchanges with the bare server (a form
// post, then a post of an ES256 JWT it verifies) per cycle.
func floorCycles(floor, token string, conc int, d time.Duration) (float64, error) {
	client := &http.Client{Transport: newTransport(conc), Timeout: 30 * time.Second}
	n, el, err := drive(conc, d, func() (bool, error) {
		resp, err := client.PostForm("http://"+floor+"/login", url.Values{"user": {"u1"}, "password": {"secret"}})
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			resp, err = client.Post("http://"+floor+"/verify", "application/jwt", strings.NewReader(token))
		}
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("floor verify: HTTP %d", resp.StatusCode)
		}
		return true, nil
	})
	if err != nil {
		return 0, err
	}
	return float64(n) / el.Seconds(), nil
}

// drive runs conc workers for d, each calling cycle again until the time
// is up, cycle says there is no more to do, or it fails; it returns the
// cycles done, the time it took and the first failure.
func drive(conc int, d time.Duration, cycle func() (more bool, err error)) (int64, time.Duration, error) {
	var done atomic.Int64
	var firstErr atomic.Value // string: the first failure
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for time.Now().Before(stop) {
				more, err := cycle()
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				if !more {
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	if e, ok := firstErr.Load().(string); ok {
		return 0, el, fmt.Errorf("%s", e)
	}
	return done.Load(), el, nil
}
