// Command bench measures the onepush gateway on loopback and prints a table
// (and, with -json, a JSON file) of the four figures in the README's
// performance section, each next to what it is compared with:
//
//  1. pass-through: requests no rule matches, through Caddy with onepush vs
//     the same Caddy binary on a route without it, to the same backend;
//  2. holding: Caddy's RSS per held login post at several sizes vs a bare
//     Go net/http server holding as many, the file-descriptor ceiling of one
//     process, and the instances a 100k peak needs;
//  3. release: decision sent → request at the bank, in one instance and
//     across two instances through Redis, vs Redis pub/sub round trip;
//  4. full cycles per second (post, push, signed approval, forward) vs two
//     loopback HTTP exchanges plus one ES256 verification.
//
// Run it from the repository root:
//
//	go run ./examples/bench [-sizes 1000,5000,15000] [-json bench.json]
//
// It builds Caddy from examples/caddy and runs the backend, the floor server
// and the load clients as child processes of its own binary (each process is
// limited to its own open files), all on 127.0.0.0/8. Redis figures need
// redis-server on PATH.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onepush/onepush/internal/caddyrig"
	"github.com/onepush/onepush/pushauth/seal"
)

type report struct {
	Started     time.Time    `json:"started"`
	CPUs        int          `json:"cpus"`
	Go          string       `json:"go"`
	Seconds     float64      `json:"seconds"`
	PassThrough *passResult  `json:"pass_through,omitempty"`
	Hold        *holdReport  `json:"hold,omitempty"`
	Release     *relReport   `json:"release,omitempty"`
	Cycles      *cycleResult `json:"cycles,omitempty"`
	Errors      []string     `json:"errors,omitempty"`
}

type holdReport struct {
	Gateway        *holdSide `json:"gateway"`
	Floor          *holdSide `json:"floor"`
	EnrolSeconds   float64   `json:"enrol_seconds"`
	NoFile         int       `json:"rlimit_nofile"`
	Overhead       int       `json:"fd_overhead"`
	Capacity       int       `json:"capacity_per_process"`
	CapacityPct    float64   `json:"capacity_pct_of_limit"`
	PeakInstances  int       `json:"instances_for_100k"`
	PeakMiBPerInst float64   `json:"mib_per_instance_at_peak"`
}

type relReport struct {
	Single      latency  `json:"single_instance"`
	PubSub      *latency `json:"redis_pubsub,omitempty"`
	Cross       *latency `json:"two_instances_redis,omitempty"`
	RedisSingle *latency `json:"one_instance_redis,omitempty"`
	CrossStatus string   `json:"two_instances_status,omitempty"`
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "__role" {
		runRole(os.Args[2], os.Args[3:])
		return
	}
	var (
		sizesFlag = flag.String("sizes", "1000,5000,15000", "held-request counts, ascending")
		jsonOut   = flag.String("json", "", "also write the results to this JSON file")
		passConc  = flag.Int("pass-conc", 32, "pass-through: concurrent connections")
		passRound = flag.Duration("pass-round", 2*time.Second, "pass-through: length of one round")
		passN     = flag.Int("pass-rounds", 7, "pass-through: rounds per side (alternating)")
		relN      = flag.Int("release-n", 200, "release: samples per setting")
		cycConc   = flag.Int("cycle-conc", 32, "full cycles: concurrent clients")
		cycDur    = flag.Duration("cycle-dur", 6*time.Second, "full cycles: duration per side")
		profile   = flag.String("pprof", "", "write CPU profiles of Caddy (pass-through, cycles) into this directory")
		keep      = flag.Bool("keep", false, "keep the work directory (configs, logs)")
		skipHold  = flag.Bool("skip-hold", false, "skip the holding figure (and its enrolment)")
		caddyBin  = flag.String("caddy", "", "use this Caddy binary (built with onepush) instead of building examples/caddy")
		scenario  = flag.String("scenario", "", `"peak": the morning peak with faults (docs/peak.md) instead of the four figures`)
		pk        = defaultPeak()
	)
	flag.Float64Var(&pk.Rate, "rate", pk.Rate, "peak: approvals per second at the top")
	flag.DurationVar(&pk.Ramp, "ramp", pk.Ramp, "peak: ramp up to the top")
	flag.DurationVar(&pk.Hold, "hold", pk.Hold, "peak: time at the top")
	flag.DurationVar(&pk.Down, "down", pk.Down, "peak: ramp down")
	flag.IntVar(&pk.Clients, "clients", pk.Clients, "peak: load-client processes")
	flag.IntVar(&pk.Users, "users", 0, "peak: users in the pool (0: about 40 s of arrivals at the top)")
	flag.IntVar(&pk.QuietN, "quiet-n", pk.QuietN, "peak: customers of the quiet release figure, measured first")
	flag.DurationVar(&pk.Timeout, "timeout", pk.Timeout, "peak: the rules' timeout (unanswered prompts expire)")
	flag.DurationVar(&pk.Mix.thinkMin, "think-min", pk.Mix.thinkMin, "peak: shortest think time on the phone")
	flag.DurationVar(&pk.Mix.thinkMax, "think-max", pk.Mix.thinkMax, "peak: longest think time on the phone")
	flag.BoolVar(&pk.Restart, "restart", pk.Restart, "peak: stop instance A (SIGTERM) in the middle of the top and start it again")
	flag.DurationVar(&pk.Grace, "grace", pk.Grace, "peak: Caddy's grace_period (what a stopped instance gives the requests it holds)")
	flag.DurationVar(&pk.Fail503, "fail503", pk.Fail503, "peak: how long the push provider of half the phones answers 503 (0: never)")
	flag.BoolVar(&pk.Sentinel, "sentinel", false, "peak: Redis as a primary, a replica and three Sentinels, and the primary killed three quarters into the top")
	flag.StringVar(&pk.Redis, "redis", "", "peak: use this Redis (host:port) instead of starting redis-server")
	flag.Parse()
	if *scenario == "peak" {
		pk.Caddy, pk.Keep = *caddyBin, *keep
		os.Exit(mainPeak(pk, *jsonOut))
	} else if *scenario != "" {
		fatalf("-scenario %q: the only scenario is peak", *scenario)
	}
	var sizes []int
	for _, s := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
			fatalf("-sizes %q: want ascending positive integers", *sizesFlag)
		}
		sizes = append(sizes, n)
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			fatalf("%v", err)
		}
	}
	rep := &report{Started: time.Now(), CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if err := run(rep, sizes, *passConc, *passN, *passRound, *relN, *cycConc, *cycDur, *profile, *keep, *skipHold, *caddyBin); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	rep.Seconds = math.Round(time.Since(rep.Started).Seconds())
	printTable(os.Stdout, rep)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fatalf("writing %s: %v", *jsonOut, err)
		}
	}
	if len(rep.Errors) > 0 {
		os.Exit(1)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(2)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(rep *report, sizes []int, passConc, passN int, passRound time.Duration, relN, cycConc int, cycDur time.Duration, profile string, keep, skipHold bool, bin string) (err error) {
	dir, err := os.MkdirTemp("", "onepush-bench-")
	if err != nil {
		return err
	}
	if keep {
		logf("work directory %s (kept)", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if bin == "" {
		logf("building examples/caddy")
		if bin, err = caddyrig.Build(dir); err != nil {
			return err
		}
	}
	backend, backendAddr, err := startServerRole(dir, "backend", "backend")
	if err != nil {
		return err
	}
	defer backend.stop()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	floor, floorAddr, err := startServerRole(dir, "floor", "floor", "-pub", base64.RawURLEncoding.EncodeToString(der))
	if err != nil {
		return err
	}
	defer floor.stop()
	f, err := newFleet()
	if err != nil {
		return err
	}
	// The default store, created on first start in the bench's directory.
	g, err := startGateway(dir, bin, "caddy", f.rcv, backendAddr, "embedded {\n\t\t\tauto_init\n\t\t}")
	if err != nil {
		return err
	}
	defer g.stop()

	if passN > 0 {
		logf("1/4 pass-through: %d rounds of %s per side, %d connections", passN, passRound, passConc)
		if rep.PassThrough, err = passThrough(dir, g, passN, passConc, passRound, profile); err != nil {
			return fmt.Errorf("pass-through: %w", err)
		}
	}

	maxSize := sizes[len(sizes)-1]
	pool := max(maxSize, relN, 2000)
	if !skipHold {
		hr := &holdReport{}
		rep.Hold = hr
		logf("2/4 holding: bare Go floor at %v", sizes)
		if hr.Floor, err = hold(dir, holdTarget{name: "floor", pid: floor.pid(), addr: floorAddr, path: "/hold", mem: floorMemory(floorAddr)}, sizes); err != nil {
			return fmt.Errorf("holding (floor): %w", err)
		}
		logf("2/4 holding: enrolling %d users through the device API and /onepush/enroll", pool)
		t0 := time.Now()
		if err := f.enrol(context.Background(), g.Gated, 0, pool, func(n int) { logf("  %d users enrolled", n) }); err != nil {
			return fmt.Errorf("enrolment: %w", err)
		}
		hr.EnrolSeconds = math.Round(time.Since(t0).Seconds())
		logf("2/4 holding: gateway at %v", sizes)
		_, port, _ := strings.Cut(strings.TrimPrefix(g.Gated, "http://"), ":")
		gt := holdTarget{name: "gateway", pid: g.pid(), addr: "127.0.0.1:" + port, path: "/login", gc: g.forceGC, mem: g.liveMemory}
		if profile != "" {
			gt.profile = func(n int) { fetchHeap(g, fmt.Sprintf("%s/hold-%d.heap.txt", profile, n)) }
		}
		hr.Gateway, err = hold(dir, gt, sizes)
		if err != nil {
			return fmt.Errorf("holding (gateway): %w", err)
		}
		hr.NoFile, _ = nofile(g.pid())
		last := hr.Gateway.Points[len(hr.Gateway.Points)-1]
		hr.Overhead = last.OpenFiles - last.Held
		hr.Capacity = min(hr.NoFile-hr.Overhead, 50000)
		hr.CapacityPct = 100 * float64(hr.Capacity) / float64(hr.NoFile)
		hr.PeakInstances = int(math.Ceil(100000 / float64(hr.Capacity)))
		hr.PeakMiBPerInst = math.Round(100000/float64(hr.PeakInstances)*last.KiBPerReq/1024 + hr.Gateway.BaseRSSMiB)
		if relN == 0 {
			return nil
		}
	} else {
		logf("enrolling %d users", pool)
		if err := f.enrol(context.Background(), g.Gated, 0, pool, nil); err != nil {
			return fmt.Errorf("enrolment: %w", err)
		}
	}

	var rel *relReport
	if relN > 0 {
		logf("3/4 release: %d sequential approvals in one instance", relN)
		rel = &relReport{}
		rep.Release = rel
		users := make([]int, relN)
		for i := range users {
			users[i] = i
		}
		single, err := release(f, []string{g.Gated}, users)
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		rel.Single = single[0]
	}

	logf("4/4 full cycles: %d clients for %s, then the floor", cycConc, cycDur)
	all := make([]int, pool)
	for i := range all {
		all[i] = i
	}
	if profile != "" {
		go fetchProfile(g, profile+"/cycles.cpu.pprof", cycDur-time.Second)
	}
	cr := &cycleResult{Conc: cycConc, Seconds: cycDur.Seconds()}
	rep.Cycles = cr
	var p50 time.Duration
	c0 := cpuTicks(g.pid())
	if cr.Gateway, p50, err = cycles(f, g.Gated, all, 2, cycConc, cycDur); err != nil {
		return fmt.Errorf("full cycles: %w", err)
	}
	cr.GatewayCPUus = math.Round(float64(cpuTicks(g.pid())-c0) / clockTicks * 1e6 / (cr.Gateway * cycDur.Seconds()))
	cr.GatewayP50ms = ms(p50)
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": "OPBENCH", "aud": "onepush", "sub": "challenge", "jti": "j", "decision": "approve",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString(key)
	if err != nil {
		return err
	}
	c0 = cpuTicks(floor.pid())
	if cr.Floor, err = floorCycles(floorAddr, tok, cycConc, cycDur); err != nil {
		return fmt.Errorf("floor cycles: %w", err)
	}
	cr.FloorCPUus = math.Round(float64(cpuTicks(floor.pid())-c0) / clockTicks * 1e6 / (cr.Floor * cycDur.Seconds()))
	cr.Pct = 100 * cr.Gateway / cr.Floor
	g.stop()

	if rel == nil {
		return nil
	}
	logf("3/4 release across instances: Redis")
	return redisFigures(dir, bin, backendAddr, rel, relN)
}

func redisFigures(dir, bin, backendAddr string, rel *relReport, relN int) error {
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		rel.CrossStatus = "skipped: redis-server not on PATH (apt-get install redis-server)"
		return nil
	}
	rp, addr, err := startRedis(dir, redisBin, "redis")
	if err != nil {
		return err
	}
	defer rp.stop()
	deadline := time.Now().Add(10 * time.Second)
	var ps latency
	for {
		if ps, err = pubsubRTT(addr, 1000); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("redis pub/sub: %w", err)
	}
	rel.PubSub = &ps

	f, err := newFleet()
	if err != nil {
		return err
	}
	key, err := seal.NewKey()
	if err != nil {
		return err
	}
	// Both instances need the same key: the Redis store seals what it keeps.
	store := fmt.Sprintf("redis {\n\t\t\taddresses %s\n\t\t\tprefix bench%d:\n\t\t}\n\t\tencryption_key %s", addr, time.Now().UnixNano(), key)
	if ok, why := adaptOK(dir, bin, f.rcv, backendAddr, store); !ok {
		rel.CrossStatus = "pending: this build does not accept `store redis { ... }` (" + why + ")"
		return nil
	}
	a, err := startGateway(dir, bin, "caddy-a", f.rcv, backendAddr, store)
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := startGateway(dir, bin, "caddy-b", f.rcv, backendAddr, store)
	if err != nil {
		return err
	}
	defer b.stop()
	n := max(relN/2+1, 3) // each user: 4 challenges (2 passes × 2 settings), under the push budget of 5 a minute
	if err := f.enrol(context.Background(), b.Gated, 0, n, nil); err != nil {
		return fmt.Errorf("enrolment through instance B: %w", err)
	}
	users := make([]int, relN)
	for i := range users {
		users[i] = i % n
	}
	// Held on A and approved through B, interleaved with held and approved
	// on B: the same store round trips, so the difference is the hop
	// between instances.
	lat, err := release(f, []string{a.Gated, b.Gated}, users)
	if err != nil {
		return fmt.Errorf("release across instances: %w", err)
	}
	cross, same := lat[0], lat[1]
	rel.Cross = &cross
	rel.CrossStatus = "measured"
	rel.RedisSingle = &same
	return nil
}
