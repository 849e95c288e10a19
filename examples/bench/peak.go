package main

// The peak scenario (-scenario peak): a bank's morning peak across two
// Caddy instances on one Redis in front of the legacy bank, with faults at
// fixed times, checked request by request (docs/peak.md).

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/internal/caddyrig"
	"github.com/onepush/onepush/pushauth/seal"
)

// peakPolicy protects the legacy bank's login and transfer by holding
// them (approve on the phone); every request's ref is shown on the phone,
// so its decision joins the bank's log exactly (every request of the
// scenario has one, so the rules match on it too). %s is the rules' timeout.
const peakPolicy = `version: 1
session:
  cookie: BANKSESSION
  ttl: 30m
rules:
  - name: login
    kind: login
    match:
      methods: [POST]
      path: {exact: /login}
      content_types: [application/x-www-form-urlencoded]
      fields: [contract_no, user_id, password, ref]
    user:
      template: "{form.user_id}"
    display:
      - {label: User, value: "{form.user_id}"}
      - {label: Ref, value: "{form.ref}"}
    not_enrolled: allow
    success: {status: [303], set_cookie: BANKSESSION, location_prefix: /dashboard}
    timeout: %[1]s
  - name: transfer
    kind: transaction
    match: {methods: [POST], path: {exact: /transfer}, fields: [payee_account, amount, ref]}
    user: {session: true}
    transaction:
      amount: "{form.amount}"
      currency: JPY
      payee: "{form.payee_account}"
    display:
      - {label: Ref, value: "{form.ref}"}
    timeout: %[1]s
  - name: logout
    kind: logout
    match: {methods: [POST, GET], path: {exact: /logout}}
    user: {session: true}
`

// peakConfig sizes the scenario.
type peakConfig struct {
	Rate             float64       // approvals per second at the top
	Ramp, Hold, Down time.Duration // the arrivals' shape
	Clients          int           // load-client processes
	Users            int           // users in the peak pool (0: from the rate)
	QuietN           int           // customers of the quiet release figure
	Timeout          time.Duration // the rules' timeout
	Mix              phoneMix
	PDisconnect      float64
	PDouble          float64
	Restart          bool          // stop instance A (SIGTERM) and start it again
	Grace            time.Duration // Caddy's grace_period: held requests get this long after SIGTERM
	Fail503          time.Duration // the odd phones' push provider answers 503 this long (0: never)
	Redis            string        // use this Redis; "" starts redis-server
	Caddy            string        // Caddy binary; "" builds examples/caddy
	Keep             bool
}

func defaultPeak() peakConfig {
	return peakConfig{
		Rate: 200, Ramp: 30 * time.Second, Hold: 60 * time.Second, Down: 20 * time.Second,
		Clients: 4, QuietN: 40, Timeout: 20 * time.Second,
		Mix:         phoneMix{thinkMin: time.Second, thinkMax: 8 * time.Second, pSilent: 0.08, pDeny: 0.06, pFraud: 0.01},
		PDisconnect: 0.04, PDouble: 0.02, Restart: true, Grace: 5 * time.Second, Fail503: 10 * time.Second,
	}
}

// pApprove is the share of prompts approved; a customer approves her login
// and then her transfer, so she brings pApprove·(1+pApprove) approvals.
func (c peakConfig) customerRate() float64 {
	pa := 1 - c.Mix.pSilent - c.Mix.pDeny - c.Mix.pFraud
	return c.Rate / (pa * (1 + pa*(1-c.PDisconnect)))
}

func (c peakConfig) arrivals() arrivals {
	return arrivals{top: c.customerRate(), ramp: c.Ramp, hold: c.Hold, down: c.Down}
}

// Fault times, from the start of the arrivals.
func (c peakConfig) fail503At() time.Duration { return c.Ramp + c.Hold/5 }
func (c peakConfig) restartAt() time.Duration { return c.Ramp + c.Hold/2 }

// users is the pool: enough that a user comes back about every 40 s.
func (c peakConfig) users() int {
	if c.Users > 0 {
		return c.Users
	}
	return max(100, int(c.customerRate()*40))
}

type window struct {
	From, To time.Time
}

func (w window) overlaps(a, b time.Time) bool { return !a.After(w.To) && !b.Before(w.From) }

type latencyQ struct {
	N      int     `json:"n"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	P999ms float64 `json:"p999_ms"`
}

func quantiles(s samples) latencyQ {
	return latencyQ{N: len(s), P50ms: ms(s.quantile(0.5)), P99ms: ms(s.quantile(0.99)), P999ms: ms(s.quantile(0.999))}
}

type restartCost struct {
	StopAt      time.Time      `json:"stop_at"`
	ExitedMs    float64        `json:"exited_after_ms"`
	ReadyMs     float64        `json:"ready_after_ms"`
	FirstOKMs   float64        `json:"first_ok_after_ms"`
	AffectedA   map[string]int `json:"affected_on_a"`
	AffectedB   map[string]int `json:"affected_on_b"`
	LatencyB    latencyQ       `json:"added_latency_b_during"`
	Window      window         `json:"window"`
	HeldAtStopA int            `json:"held_on_a_at_stop"`
}

type fail503Cost struct {
	Window         window  `json:"window"`
	PushesRefused  int     `json:"pushes_refused"`
	ExpiredDuring  int     `json:"expired_408_during"`
	ExpiredPerSecO float64 `json:"expired_408_per_s_outside"`
}

type peakReport struct {
	Config struct {
		TargetApprovalsPerS float64 `json:"target_approvals_per_s"`
		CustomersPerS       float64 `json:"customers_per_s_at_top"`
		RampS, HoldS, DownS float64 `json:"-"`
		Shape               string  `json:"shape"`
		Users               int     `json:"users"`
		Clients             int     `json:"load_clients"`
		TimeoutS            float64 `json:"rule_timeout_s"`
		Phones              int     `json:"phones"`
	} `json:"config"`
	Check                 *peakCheck   `json:"check"`
	Quiet                 latencyQ     `json:"quiet_added_latency"`
	Added                 latencyQ     `json:"added_latency_all"`
	AddedCalm             latencyQ     `json:"added_latency_outside_faults"`
	CalmP99x              float64      `json:"outside_faults_p99_over_quiet_p99"`
	ApprovalsTop          float64      `json:"approvals_per_s_top_5s"`
	ApprovalsAvg          float64      `json:"approvals_per_s_during_hold"`
	Offered               int64        `json:"customers_started"`
	Due                   float64      `json:"customers_due"`
	Skipped               int64        `json:"customers_skipped_no_free_user"`
	MaxLagMs              int64        `json:"max_arrival_lag_ms"`
	CPUusPerApproval      float64      `json:"caddy_cpu_us_per_approval"`
	RSSMiB                [2]float64   `json:"max_rss_mib"`
	RedisOpsPerApproval   float64      `json:"redis_ops_per_approval"`
	RedisBytesPerApproval float64      `json:"redis_bytes_per_approval"`
	Restart               *restartCost `json:"restart,omitempty"`
	Fail503               *fail503Cost `json:"push_503,omitempty"`
	Timeline              []timeSlice  `json:"timeline"`
	EnrolSeconds          float64      `json:"enrol_seconds"`
}

// timeSlice is the run in 10 s slices: what was approved and added.
type timeSlice struct {
	FromS     float64 `json:"from_s"`
	Approvals int     `json:"approvals"`
	P50ms     float64 `json:"added_p50_ms"`
	P99ms     float64 `json:"added_p99_ms"`
	Faults    string  `json:"faults,omitempty"`
}

// runPeak runs the scenario and fills rep; the error is a failure to run,
// not a failed check (rep.Check says that).
func runPeak(cfg peakConfig, rep *peakReport) (err error) {
	dir, err := os.MkdirTemp("", "onepush-peak-")
	if err != nil {
		return err
	}
	if cfg.Keep {
		logf("work directory %s (kept)", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := cfg.Caddy
	if bin == "" {
		logf("building examples/caddy")
		if bin, err = caddyrig.Build(dir); err != nil {
			return err
		}
	}
	redisAddr := cfg.Redis
	if redisAddr == "" {
		rb, err := exec.LookPath("redis-server")
		if err != nil {
			return fmt.Errorf("the peak scenario needs redis-server on PATH (apt-get install redis-server)")
		}
		port, err := caddyrig.FreePort()
		if err != nil {
			return err
		}
		rp, err := startProc(dir, "redis", rb, []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, nil)
		if err != nil {
			return err
		}
		defer rp.stop()
		redisAddr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	defer rdb.Close()
	if err := waitRedis(rdb, 10*time.Second); err != nil {
		return err
	}

	quietUsers, users := cfg.QuietN, cfg.users()
	total := quietUsers + users
	bankProc, bankAddr, err := startServerRole(dir, "bank", "bank", "-users", strconv.Itoa(total), "-out", filepath.Join(dir, "bank.jsonl"))
	if err != nil {
		return err
	}
	defer bankProc.stop()
	// The phones first: the instances need their endpoint (webhook_allow);
	// they learn the instances' addresses by a command.
	phonesProc, rcv, err := startServerRole(dir, "phones", "phones", "-out", filepath.Join(dir, "phones.jsonl"),
		"-think-min", cfg.Mix.thinkMin.String(), "-think-max", cfg.Mix.thinkMax.String(),
		"-p-silent", fmtF(cfg.Mix.pSilent), "-p-deny", fmtF(cfg.Mix.pDeny), "-p-fraud", fmtF(cfg.Mix.pFraud))
	if err != nil {
		return err
	}
	defer phonesProc.stop()
	key, err := seal.NewKey()
	if err != nil {
		return err
	}
	store := fmt.Sprintf("redis {\n\t\t\taddresses %s\n\t\t\tprefix peak%d:\n\t\t}\n\t\tencryption_key %s", redisAddr, time.Now().UnixNano(), key)
	// A stopped instance closes what it still holds after grace_period,
	// as a bank sets it (Caddy's default waits for ever).
	gcfg := gatewayConfig{store: store, policy: fmt.Sprintf(peakPolicy, cfg.Timeout), global: "\tgrace_period " + cfg.Grace.String()}
	var gws [2]*gateway
	defer func() {
		for _, g := range gws {
			if g != nil && g.proc != nil {
				g.stop()
			}
		}
	}()
	for i, name := range []string{"caddy-a", "caddy-b"} {
		if gws[i], err = startGatewayWith(dir, bin, name, rcv, bankAddr, gcfg); err != nil {
			return err
		}
	}
	if err := command(phonesProc, "bases "+gws[0].Gated+","+gws[1].Gated); err != nil {
		return err
	}

	// Enrolment: the real flow, through instance A, every user bound to a
	// phone whose push endpoint is the phones' process.
	f := fleetAt(rcv)
	f.loginForm = func(u int) url.Values {
		usr := peakUser(u)
		return url.Values{"contract_no": {usr.ContractNo}, "user_id": {usr.UserID}, "password": {usr.Password}, "ref": {"enrol-" + usr.UserID}}
	}
	logf("peak: enrolling %d users", total)
	t0 := time.Now()
	if err := f.enrol(context.Background(), gws[0].Gated, 0, total, func(n int) { logf("  %d users enrolled", n) }); err != nil {
		return fmt.Errorf("enrolment: %w", err)
	}
	rep.EnrolSeconds = math.Round(time.Since(t0).Seconds())
	statesFile := filepath.Join(dir, "phones-state.jsonl")
	if err := writePhoneStates(f, statesFile); err != nil {
		return err
	}
	rep.Config.Phones = len(f.phones)
	if err := command(phonesProc, "load "+statesFile); err != nil {
		return err
	}

	gates := gws[0].Gated + "," + gws[1].Gated
	srcs := peakSources(cfg.Clients)
	// 1. The quiet release figure: one customer at a time, phones that
	// approve at once.
	logf("peak: quiet release figure, %d customers one after another", quietUsers)
	if err := command(phonesProc, "mode quiet"); err != nil {
		return err
	}
	qp, err := startRole(dir, "load-quiet", "peak", "-gates", gates, "-id", "0", "-from", "0", "-to", strconv.Itoa(quietUsers),
		"-quiet", strconv.Itoa(quietUsers), "-src", srcs[0], "-out", filepath.Join(dir, "client-quiet.jsonl"), "-timeout", (cfg.Timeout + 20*time.Second).String())
	if err != nil {
		return err
	}
	if _, err := qp.line(time.Duration(quietUsers)*30*time.Second + time.Minute); err != nil {
		return fmt.Errorf("quiet phase: %w", err)
	}
	qp.stop()

	// 2. The peak.
	if err := command(phonesProc, "mode peak"); err != nil {
		return err
	}
	a := cfg.arrivals()
	start := time.Now().Add(2 * time.Second)
	logf("peak: %.0f approvals/s at the top (%.1f customers/s), ramp %s, hold %s, down %s; %d users, %d load clients",
		cfg.Rate, a.top, cfg.Ramp, cfg.Hold, cfg.Down, users, cfg.Clients)
	var clients []*proc
	per := users / cfg.Clients
	for k := range cfg.Clients {
		from := quietUsers + k*per
		to := from + per
		if k == cfg.Clients-1 {
			to = total
		}
		p, err := startRole(dir, fmt.Sprintf("load-peak-%d", k), "peak", "-gates", gates, "-id", strconv.Itoa(k+1),
			"-from", strconv.Itoa(from), "-to", strconv.Itoa(to), "-src", srcs[k%len(srcs)], "-out", filepath.Join(dir, fmt.Sprintf("client-%d.jsonl", k)),
			"-start", strconv.FormatInt(start.UnixNano(), 10), "-rate", fmtF(a.top/float64(cfg.Clients)),
			"-ramp", cfg.Ramp.String(), "-hold", cfg.Hold.String(), "-down", cfg.Down.String(),
			"-p-disconnect", fmtF(cfg.PDisconnect), "-p-double", fmtF(cfg.PDouble), "-timeout", (cfg.Timeout + 20*time.Second).String())
		if err != nil {
			return err
		}
		clients = append(clients, p)
		defer p.stop()
	}
	redis0 := redisStats(rdb)
	var (
		mu        sync.Mutex
		cpuTicks0 = [2]int64{cpuTicksOf(gws[0]), cpuTicksOf(gws[1])}
		cpuUsed   [2]int64
		rss       [2]int64
	)
	sampleDone := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-sampleDone:
				return
			case <-t.C:
			}
			mu.Lock()
			for i, g := range gws {
				if g.proc == nil {
					continue
				}
				if r, err := rssKB(g.pid()); err == nil && r > rss[i] {
					rss[i] = r
				}
			}
			mu.Unlock()
		}
	}()

	// 3. Faults at fixed times.
	var faults sync.WaitGroup
	if cfg.Fail503 > 0 {
		c503 := &fail503Cost{}
		rep.Fail503 = c503
		faults.Go(func() {
			time.Sleep(time.Until(start.Add(cfg.fail503At())))
			c503.Window.From = time.Now()
			logf("peak: fault: push provider of odd phones answers 503 for %s", cfg.Fail503)
			_ = command(phonesProc, "fail503 on")
			time.Sleep(cfg.Fail503)
			_ = command(phonesProc, "fail503 off")
			c503.Window.To = time.Now()
		})
	}
	if cfg.Restart {
		rc := &restartCost{}
		rep.Restart = rc
		faults.Go(func() {
			time.Sleep(time.Until(start.Add(cfg.restartAt())))
			g := gws[0]
			rc.HeldAtStopA = heldConns(g)
			mu.Lock()
			cpuUsed[0] += cpuTicksOf(g) - cpuTicks0[0]
			mu.Unlock()
			logf("peak: fault: instance A stopped (SIGTERM) with %d open connections, then started again", rc.HeldAtStopA)
			rc.StopAt = time.Now()
			g.stop()
			rc.ExitedMs = ms(time.Since(rc.StopAt))
			mu.Lock()
			g.proc = nil
			mu.Unlock()
			if err := g.start(dir, bin, "caddy-a-2"); err != nil {
				logf("peak: restarting instance A: %v", err)
				return
			}
			rc.ReadyMs = ms(time.Since(rc.StopAt))
			mu.Lock()
			cpuTicks0[0] = cpuTicksOf(g)
			mu.Unlock()
			logf("peak: instance A answers again after %.1f s", rc.ReadyMs/1000)
		})
	}
	var sums []loadSummary
	for _, p := range clients {
		l, err := p.line(a.total() + cfg.Timeout + 2*time.Minute)
		if err != nil {
			return fmt.Errorf("load client: %w", err)
		}
		var s loadSummary
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			return fmt.Errorf("load client output %q: %w", l, err)
		}
		sums = append(sums, s)
	}
	faults.Wait()
	close(sampleDone)
	redis1 := redisStats(rdb)
	mu.Lock()
	for i, g := range gws {
		cpuUsed[i] += cpuTicksOf(g) - cpuTicks0[i]
		rep.RSSMiB[i] = math.Round(float64(rss[i])/1024*10) / 10
	}
	mu.Unlock()
	logf("peak: arrivals done; collecting the logs")
	pl, err := finish(phonesProc)
	if err != nil {
		return fmt.Errorf("phones: %w", err)
	}
	if c := rep.Fail503; c != nil {
		_, v, _ := strings.Cut(pl, "refused=")
		c.PushesRefused, _ = strconv.Atoi(v)
	}
	if _, err := finish(bankProc); err != nil {
		return fmt.Errorf("bank: %w", err)
	}

	// 4. Checks and figures.
	ops, err := readJSONLines[bankRecord](filepath.Join(dir, "bank.jsonl"))
	if err != nil {
		return err
	}
	decisions, err := readJSONLines[phoneRecord](filepath.Join(dir, "phones.jsonl"))
	if err != nil {
		return err
	}
	quiet, err := readJSONLines[clientRecord](filepath.Join(dir, "client-quiet.jsonl"))
	if err != nil {
		return err
	}
	requests := quiet
	for k := range cfg.Clients {
		rs, err := readJSONLines[clientRecord](filepath.Join(dir, fmt.Sprintf("client-%d.jsonl", k)))
		if err != nil {
			return err
		}
		requests = append(requests, rs...)
	}
	rep.Check = checkPeak(ops, decisions, requests, "enrol-")
	for _, s := range sums {
		rep.Offered += s.Customers
		rep.Skipped += s.Skipped
		rep.MaxLagMs = max(rep.MaxLagMs, s.MaxLagMs)
	}
	rep.Due = math.Round(a.due(a.total()))
	c := &rep.Config
	c.TargetApprovalsPerS, c.CustomersPerS = cfg.Rate, math.Round(a.top*10)/10
	c.Shape = fmt.Sprintf("ramp %s, hold %s, down %s", cfg.Ramp, cfg.Hold, cfg.Down)
	c.Users, c.Clients, c.TimeoutS = total, cfg.Clients, cfg.Timeout.Seconds()
	peakFigures(rep, cfg, start, decisions, requests)
	if n := approvalsIn(decisions, "peak"); n > 0 {
		rep.CPUusPerApproval = math.Round(float64(cpuUsed[0]+cpuUsed[1]) / clockTicks * 1e6 / float64(n))
		rep.RedisOpsPerApproval = math.Round(float64(redis1.ops-redis0.ops)/float64(n)*10) / 10
		rep.RedisBytesPerApproval = math.Round(float64(redis1.bytes-redis0.bytes) / float64(n))
	}
	return nil
}

// finish closes p's stdin, reads its last line and waits for it to exit.
func finish(p *proc) (string, error) {
	_ = p.in.Close()
	l, err := p.line(2 * time.Minute)
	p.stop()
	return l, err
}

func fmtF(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// command sends a line to a role that answers "ok <line>".
func command(p *proc, line string) error {
	if _, err := fmt.Fprintln(p.in, line); err != nil {
		return err
	}
	got, err := p.line(time.Minute)
	if err != nil {
		return err
	}
	if got != "ok "+line {
		return fmt.Errorf("%s: %q answered %q", p.name, line, got)
	}
	return nil
}

// writePhoneStates writes the fleet's phones, one state a line, in the
// order of their push endpoints' index.
func writePhoneStates(f *fleet, file string) error {
	w, err := createJSONLines(file)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.phones {
		b, err := p.MarshalState()
		if err != nil {
			return err
		}
		w.write(json.RawMessage(b))
	}
	return w.close()
}

// peakSources gives each load client its own 32 loopback addresses.
func peakSources(clients int) []string {
	out := make([]string, clients)
	for k := range out {
		var s []string
		for i := range 32 {
			s = append(s, fmt.Sprintf("127.0.%d.%d", 20+k, 10+i))
		}
		out[k] = strings.Join(s, ",")
	}
	return out
}

func cpuTicksOf(g *gateway) int64 {
	if g.proc == nil {
		return 0
	}
	return cpuTicks(g.pid())
}

// heldConns is how many connections the instance has open (its held
// requests, mostly).
func heldConns(g *gateway) int {
	n, _ := openFiles(g.pid())
	return n
}

func waitRedis(c *goredis.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type redisCounters struct{ ops, bytes int64 }

// redisStats reads the commands processed and the bytes in and out.
func redisStats(c *goredis.Client) redisCounters {
	s, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		return redisCounters{}
	}
	var r redisCounters
	for _, l := range strings.Split(s, "\r\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "total_commands_processed":
			r.ops = n
		case "total_net_input_bytes", "total_net_output_bytes":
			r.bytes += n
		}
	}
	return r
}

func approvalsIn(ds []phoneRecord, phase string) int {
	n := 0
	for _, d := range ds {
		if d.Phase == phase && d.Decision == "approve" && d.Status == 200 {
			n++
		}
	}
	return n
}

// peakFigures computes the latency and throughput figures. Added latency
// is what the customer waited beyond her own thinking: from sending the
// request to the bank's answer, less the time the person took to decide.
func peakFigures(rep *peakReport, cfg peakConfig, start time.Time, decisions []phoneRecord, requests []clientRecord) {
	byRef := map[string]phoneRecord{}
	for _, d := range decisions {
		if d.Decision == "approve" && d.Status == 200 && d.Ref != "" {
			byRef[d.Ref] = d
		}
	}
	var wins []window
	var winNames []string
	if rep.Fail503 != nil && !rep.Fail503.Window.From.IsZero() {
		// Its requests that were approved had their push through the
		// other provider; those that were not expire (counted below).
		wins = append(wins, window{rep.Fail503.Window.From, rep.Fail503.Window.To.Add(time.Second)})
		winNames = append(winNames, "push 503")
	}
	if rc := rep.Restart; rc != nil && !rc.StopAt.IsZero() {
		rc.Window = window{rc.StopAt, rc.StopAt.Add(time.Duration(rc.ReadyMs*1e6) + 2*time.Second)}
		wins = append(wins, rc.Window)
		winNames = append(winNames, "restart A")
		rc.AffectedA, rc.AffectedB = map[string]int{}, map[string]int{}
	}
	inFault := func(a, b time.Time) string {
		var names []string
		for i, w := range wins {
			if w.overlaps(a, b) {
				names = append(names, winNames[i])
			}
		}
		return strings.Join(names, "+")
	}
	var quiet, all, calm, restartB samples
	slices := map[int]*struct {
		n int
		s samples
		f map[string]bool
	}{}
	var perSec = map[int64]int{}
	for _, r := range requests {
		sent, done := time.Unix(0, r.Sent), time.Unix(0, r.Done)
		if rc := rep.Restart; rc != nil && rc.AffectedA != nil && r.Phase == "peak" && rc.Window.overlaps(sent, done) {
			bad := r.Class != "ok" && !(r.Class == "refused" && r.Status != 503) && r.Class != "gaveup"
			if bad {
				if r.Inst == 0 {
					rc.AffectedA[r.Class+statusSuffix(r)]++
				} else {
					rc.AffectedB[r.Class+statusSuffix(r)]++
				}
			}
		}
		if rc := rep.Restart; rc != nil && r.Inst == 0 && r.Class == "ok" && rc.FirstOKMs == 0 && sent.After(rc.StopAt.Add(time.Duration(rc.ReadyMs*1e6))) {
			rc.FirstOKMs = ms(done.Sub(rc.StopAt))
		}
		if c := rep.Fail503; c != nil && r.Class == "refused" && r.Status == 408 && r.Phase == "peak" {
			if done.After(c.Window.From.Add(cfg.Timeout)) && !done.After(c.Window.To.Add(cfg.Timeout)) {
				c.ExpiredDuring++
			}
		}
		d, ok := byRef[r.Ref]
		if !ok || r.Class != "ok" {
			continue
		}
		added := done.Sub(sent) - time.Duration(d.Think)
		if r.Phase == "quiet" {
			quiet = append(quiet, added)
			continue
		}
		perSec[time.Unix(0, d.Sent).Unix()]++
		all = append(all, added)
		f := inFault(sent, done)
		if f == "" {
			calm = append(calm, added)
		}
		if rc := rep.Restart; rc != nil && r.Inst == 1 && rc.Window.overlaps(sent, done) {
			restartB = append(restartB, added)
		}
		k := int(sent.Sub(start) / (10 * time.Second))
		sl := slices[k]
		if sl == nil {
			sl = &struct {
				n int
				s samples
				f map[string]bool
			}{f: map[string]bool{}}
			slices[k] = sl
		}
		sl.n++
		sl.s = append(sl.s, added)
		for _, name := range strings.Split(f, "+") {
			if name != "" {
				sl.f[name] = true
			}
		}
	}
	rep.Quiet, rep.Added, rep.AddedCalm = quantiles(quiet), quantiles(all), quantiles(calm)
	if rep.Quiet.P99ms > 0 {
		rep.CalmP99x = math.Round(rep.AddedCalm.P99ms/rep.Quiet.P99ms*100) / 100
	}
	if rc := rep.Restart; rc != nil {
		rc.LatencyB = quantiles(restartB)
	}
	var keys []int
	for k := range slices {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		sl := slices[k]
		var fs []string
		for f := range sl.f {
			fs = append(fs, f)
		}
		sort.Strings(fs)
		q := quantiles(sl.s)
		rep.Timeline = append(rep.Timeline, timeSlice{FromS: float64(k * 10), Approvals: sl.n, P50ms: q.P50ms, P99ms: q.P99ms, Faults: strings.Join(fs, ",")})
	}
	// Approvals per second: the best 5 s, and the mean over the hold.
	holdFrom, holdTo := start.Add(cfg.Ramp).Unix(), start.Add(cfg.Ramp+cfg.Hold).Unix()
	var holdN int
	for s, n := range perSec {
		if s >= holdFrom && s < holdTo {
			holdN += n
		}
		w := 0
		for i := range int64(5) {
			w += perSec[s+i]
		}
		rep.ApprovalsTop = max(rep.ApprovalsTop, float64(w)/5)
	}
	if holdTo > holdFrom {
		rep.ApprovalsAvg = math.Round(float64(holdN)/float64(holdTo-holdFrom)*10) / 10
	}
	if c := rep.Fail503; c != nil {
		// Expiries outside the window, per second, to compare with.
		out := 0
		for _, r := range requests {
			done := time.Unix(0, r.Done)
			if r.Phase == "peak" && r.Class == "refused" && r.Status == 408 && (done.Before(c.Window.From.Add(cfg.Timeout)) || done.After(c.Window.To.Add(cfg.Timeout))) {
				out++
			}
		}
		span := (cfg.Ramp + cfg.Hold + cfg.Down + cfg.Timeout - c.Window.To.Sub(c.Window.From)).Seconds()
		c.ExpiredPerSecO = math.Round(float64(out)/span*10) / 10
	}
}

func statusSuffix(r clientRecord) string {
	if r.Status != 0 {
		return " " + strconv.Itoa(r.Status)
	}
	return ""
}
