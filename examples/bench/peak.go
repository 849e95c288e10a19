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
  - name: transfer-corporate
    kind: transaction
    match: {methods: [POST], hosts: [corp.bank.test], path: {exact: /transfer}, fields: [payee_account, amount, ref]}
    user: {session: true}
    transaction:
      amount: "{form.amount}"
      currency: JPY
      payee: "{form.payee_account}"
    display:
      - {label: Ref, value: "{form.ref}"}
    mode: interstitial
    code_digits: 6
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
	PDisconnect      float64       // share of customers who leave while held (or stop polling the waiting page)
	PDouble          float64       // share of logins sent twice, the second superseding the first
	PCode            float64       // share of transfers on the corporate site (interstitial, code transfer)
	Restart          bool          // stop instance A (SIGTERM) and start it again
	Grace            time.Duration // Caddy's grace_period: held requests get this long after SIGTERM
	Fail503          time.Duration // the odd phones' push provider answers 503 this long (0: never)
	Sentinel         bool          // Redis as primary, replica and three Sentinels; the primary is killed
	Redis            string        // use this Redis; "" starts redis-server
	Caddy            string        // Caddy binary; "" builds examples/caddy
	Keep             bool
}

func defaultPeak() peakConfig {
	return peakConfig{
		Rate: 200, Ramp: 30 * time.Second, Hold: 60 * time.Second, Down: 20 * time.Second,
		Clients: 4, QuietN: 40, Timeout: 20 * time.Second,
		Mix:         phoneMix{thinkMin: time.Second, thinkMax: 8 * time.Second, pSilent: 0.08, pDeny: 0.06, pFraud: 0.01},
		PDisconnect: 0.04, PDouble: 0.02, PCode: 0.3, Restart: true, Grace: 5 * time.Second, Fail503: 10 * time.Second,
	}
}

// customerRate is the customers' arrival rate at the top that brings Rate
// approvals a second: a customer's login is approved with the share pa of
// prompts approved, and then, unless she left, her transfer too.
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
func (c peakConfig) killAt() time.Duration    { return c.Ramp + 3*c.Hold/4 }

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

type killCost struct {
	Primary    string    `json:"primary"`
	NewPrimary string    `json:"new_primary"`
	KillAt     time.Time `json:"kill_at"`
	PromotedMs float64   `json:"promoted_after_ms"`
	ReplicaMs  float64   `json:"replica_in_sync_after_ms"`
	Window     window    `json:"window"`
	// Answered503 are requests the instances answered 503 (the store
	// failing closed) in the window; FirstOKMs is when the first
	// request sent after the kill was answered by the bank.
	Answered503 int      `json:"answered_503"`
	FirstOKMs   float64  `json:"first_ok_after_ms"`
	Latency     latencyQ `json:"added_latency_during"`
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
	Check     *peakCheck `json:"check"`
	Quiet     latencyQ   `json:"quiet_added_latency"`
	Added     latencyQ   `json:"added_latency_all"`
	AddedCalm latencyQ   `json:"added_latency_outside_faults"`
	CalmP99x  float64    `json:"outside_faults_p99_over_quiet_p99"`
	// Parts of the added latency (peak, all): the gateway's way to the
	// phone, and from the phone's decision to the bank's answer.
	ToPush latencyQ `json:"sent_to_push"`
	// ByKind is the added latency of each kind of request (peak, all):
	// login, transfer (held), transfer (interstitial: the page's status
	// poll and its continue included).
	ByKind                map[string]latencyQ `json:"added_latency_by_kind"`
	Release               latencyQ            `json:"decision_to_answer"`
	ApprovalsTop          float64             `json:"approvals_per_s_top_5s"`
	ApprovalsAvg          float64             `json:"approvals_per_s_during_hold"`
	Offered               int64               `json:"customers_started"`
	Due                   float64             `json:"customers_due"`
	Skipped               int64               `json:"customers_skipped_no_free_user"`
	MaxLagMs              int64               `json:"max_arrival_lag_ms"`
	CPUusPerApproval      float64             `json:"caddy_cpu_us_per_approval"`
	RSSMiB                [2]float64          `json:"max_rss_mib"`
	RedisOpsPerApproval   float64             `json:"redis_ops_per_approval"`
	RedisBytesPerApproval float64             `json:"redis_bytes_per_approval"`
	// RedisCommands is each command's calls per approval (INFO
	// commandstats of the primary), those at 0.1 or more.
	RedisCommands map[string]float64 `json:"redis_commands_per_approval"`
	Restart       *restartCost       `json:"restart,omitempty"`
	Fail503       *fail503Cost       `json:"push_503,omitempty"`
	RedisKill     *killCost          `json:"redis_primary_killed,omitempty"`
	Timeline      []timeSlice        `json:"timeline"`
	EnrolSeconds  float64            `json:"enrol_seconds"`
	// MachineBusyPct is how busy all the machine's cores were from the
	// start of the arrivals to the last customer's end (every user's
	// work, not only this run's); CoresCaddy and CoresOthers are the
	// cores this run's Caddy processes and its phones, bank and load
	// clients used meanwhile.
	MachineBusyPct float64 `json:"machine_busy_pct"`
	CoresCaddy     float64 `json:"cores_caddy"`
	CoresOthers    float64 `json:"cores_phones_bank_clients"`
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
	var (
		redisAddrs []string // the data servers, for their counters
		storeAddrs string   // what the store's addresses line lists
		storeExtra string
		rig        *sentinelRig
	)
	switch {
	case cfg.Redis != "":
		redisAddrs, storeAddrs = []string{cfg.Redis}, cfg.Redis
	default:
		rb, err := exec.LookPath("redis-server")
		if err != nil {
			return fmt.Errorf("the peak scenario needs redis-server on PATH (apt-get install redis-server)")
		}
		if cfg.Sentinel {
			logf("peak: starting a Redis primary, its replica and three Sentinels")
			if rig, err = startSentinelRig(dir, rb); err != nil {
				return err
			}
			defer rig.stop()
			for a := range rig.data {
				redisAddrs = append(redisAddrs, a)
			}
			storeAddrs, storeExtra = strings.Join(rig.addrs, " "), "\n\t\t\tmaster_name "+sentinelName
			break
		}
		rp, addr, err := startRedis(dir, rb, "redis")
		if err != nil {
			return err
		}
		defer rp.stop()
		redisAddrs, storeAddrs = []string{addr}, addr
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
	store := fmt.Sprintf("redis {\n\t\t\taddresses %s%s\n\t\t\tprefix peak%d:\n\t\t}\n\t\tencryption_key %s", storeAddrs, storeExtra, time.Now().UnixNano(), key)
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
			"-p-disconnect", fmtF(cfg.PDisconnect), "-p-double", fmtF(cfg.PDouble), "-p-code", fmtF(cfg.PCode), "-phones", rcv,
			"-timeout", (cfg.Timeout + 20*time.Second).String())
		if err != nil {
			return err
		}
		clients = append(clients, p)
		defer p.stop()
	}
	var (
		mu        sync.Mutex
		cpuTicks0 = [2]int64{cpuTicksOf(gws[0]), cpuTicksOf(gws[1])}
		cpuUsed   [2]int64
		rss       [2]int64
		// What the gateways asked of Redis: each second, what the
		// primary of that second processed (a replica's counters count
		// the primary's writes again).
		redisLast            = map[string]redisCounters{}
		redisOps, redisBytes int64
		redisCalls           = map[string]int64{}
	)
	sampleRedis := func() {
		for _, a := range redisAddrs {
			c, ok := redisStats(a)
			if !ok {
				continue
			}
			mu.Lock()
			if prev, seen := redisLast[a]; seen && c.primary && c.ops >= prev.ops {
				redisOps += c.ops - prev.ops
				redisBytes += c.bytes - prev.bytes
				for cmd, n := range c.calls {
					redisCalls[cmd] += n - prev.calls[cmd]
				}
			}
			redisLast[a] = c
			mu.Unlock()
		}
	}
	sampleRedis()
	// How busy the machine was, and how much of it this run's own
	// processes took: whether the latency measures the gateway or a
	// queue for the machine's cores.
	m0, w0 := machineTicks(), time.Now()
	other0 := cpuTicks(phonesProc.pid()) + cpuTicks(bankProc.pid())
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
			sampleRedis()
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
			// As an orchestrator does: a process that fails to start (its
			// store unreachable) is started again.
			for try := 2; ; try++ {
				err := g.start(dir, bin, fmt.Sprintf("caddy-a-%d", try))
				if err == nil {
					break
				}
				if try == 10 {
					logf("peak: restarting instance A: %v", err)
					return
				}
				time.Sleep(time.Second)
			}
			rc.ReadyMs = ms(time.Since(rc.StopAt))
			mu.Lock()
			cpuTicks0[0] = cpuTicksOf(g)
			mu.Unlock()
			logf("peak: instance A answers again after %.1f s", rc.ReadyMs/1000)
		})
	}
	if rig != nil {
		kc := &killCost{}
		rep.RedisKill = kc
		faults.Go(func() {
			time.Sleep(time.Until(start.Add(cfg.killAt())))
			old := rig.master()
			kc.Primary = old
			logf("peak: fault: Redis primary %s killed (SIGKILL)", old)
			kc.KillAt = time.Now()
			if p := rig.data[old]; p != nil {
				_ = p.cmd.Process.Kill()
			}
			if err := waitFor(60*time.Second, func() string {
				if m := rig.master(); m != "" && m != old && redisInfo(m, "replication")["role"] == "master" {
					kc.NewPrimary = m
					return ""
				}
				return "no new primary"
			}); err != nil {
				logf("peak: Redis failover: %v", err)
				return
			}
			kc.PromotedMs = ms(time.Since(kc.KillAt))
			logf("peak: %s promoted after %.1f s; the old primary is started again", kc.NewPrimary, kc.PromotedMs/1000)
			if err := rig.revive(old); err != nil {
				logf("peak: starting %s again: %v", old, err)
				return
			}
			if err := waitFor(60*time.Second, func() string { return replicaInSync(kc.NewPrimary) }); err != nil {
				logf("peak: Redis replica: %v", err)
				return
			}
			kc.ReplicaMs = ms(time.Since(kc.KillAt))
			logf("peak: %s is its replica %.1f s after the kill", old, kc.ReplicaMs/1000)
		})
	}
	var sums []loadSummary
	var clientCPU time.Duration
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
		select {
		case <-p.done:
			clientCPU += p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
		case <-time.After(10 * time.Second):
		}
	}
	faults.Wait()
	close(sampleDone)
	m1, wall := machineTicks(), time.Since(w0).Seconds()
	other := float64(cpuTicks(phonesProc.pid())+cpuTicks(bankProc.pid())-other0) / clockTicks
	sampleRedis()
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
	if m1.total > m0.total {
		rep.MachineBusyPct = math.Round(100 * float64(m1.busy-m0.busy) / float64(m1.total-m0.total))
	}
	round := func(x float64) float64 { return math.Round(x*100) / 100 }
	rep.CoresCaddy = round(float64(cpuUsed[0]+cpuUsed[1]) / clockTicks / wall)
	rep.CoresOthers = round((other + clientCPU.Seconds()) / wall)
	c := &rep.Config
	c.TargetApprovalsPerS, c.CustomersPerS = cfg.Rate, math.Round(a.top*10)/10
	c.Shape = fmt.Sprintf("ramp %s, hold %s, down %s", cfg.Ramp, cfg.Hold, cfg.Down)
	c.Users, c.Clients, c.TimeoutS = total, cfg.Clients, cfg.Timeout.Seconds()
	peakFigures(rep, cfg, start, decisions, requests)
	if n := approvalsIn(decisions, "peak"); n > 0 {
		rep.CPUusPerApproval = math.Round(float64(cpuUsed[0]+cpuUsed[1]) / clockTicks * 1e6 / float64(n))
		rep.RedisOpsPerApproval = math.Round(float64(redisOps)/float64(n)*10) / 10
		rep.RedisBytesPerApproval = math.Round(float64(redisBytes) / float64(n))
		rep.RedisCommands = map[string]float64{}
		for cmd, calls := range redisCalls {
			if per := math.Round(float64(calls)/float64(n)*10) / 10; per >= 0.1 {
				rep.RedisCommands[cmd] = per
			}
		}
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
	if kc := rep.RedisKill; kc != nil && !kc.KillAt.IsZero() {
		kc.Window = window{kc.KillAt, kc.KillAt.Add(time.Duration(max(kc.PromotedMs, kc.ReplicaMs)*1e6) + 5*time.Second)}
		wins = append(wins, kc.Window)
		winNames = append(winNames, "Redis failover")
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
	var quiet, all, calm, restartB, killLat, toPush, release samples
	byKind := map[string]samples{}
	slices := map[int]*struct {
		n int
		s samples
		f map[string]bool
	}{}
	var perSec = map[int64]int{}
	for _, r := range requests {
		sent, done := time.Unix(0, r.Sent), time.Unix(0, r.Done)
		// Requests the restart cost: answered while A was down or coming
		// back (a held request the store failed later is the store's).
		if rc := rep.Restart; rc != nil && rc.AffectedA != nil && r.Phase == "peak" && rc.Window.overlaps(done, done) {
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
		if kc := rep.RedisKill; kc != nil && !kc.KillAt.IsZero() && r.Phase == "peak" {
			if r.Class == "refused" && r.Status == 503 && kc.Window.overlaps(sent, done) {
				kc.Answered503++
			}
			if r.Class == "ok" && sent.After(kc.KillAt) && (kc.FirstOKMs == 0 || ms(done.Sub(kc.KillAt)) < kc.FirstOKMs) {
				kc.FirstOKMs = ms(done.Sub(kc.KillAt))
			}
		}
		d, ok := byRef[r.Ref]
		if !ok || r.Class != "ok" {
			continue
		}
		if kc := rep.RedisKill; kc != nil && kc.Window.overlaps(sent, done) {
			killLat = append(killLat, done.Sub(sent)-time.Duration(d.Think))
		}
		added := done.Sub(sent) - time.Duration(d.Think)
		if r.Phase == "quiet" {
			quiet = append(quiet, added)
			continue
		}
		perSec[time.Unix(0, d.Sent).Unix()]++
		all = append(all, added)
		toPush = append(toPush, time.Unix(0, d.Push).Sub(sent))
		kind := r.Kind + " (hold)"
		if r.Mode != "" {
			kind = r.Kind + " (" + r.Mode + ", code)"
		}
		byKind[kind] = append(byKind[kind], added)
		release = append(release, done.Sub(time.Unix(0, d.Sent)))
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
	rep.ToPush, rep.Release = quantiles(toPush), quantiles(release)
	rep.ByKind = map[string]latencyQ{}
	for k, s := range byKind {
		rep.ByKind[k] = quantiles(s)
	}
	if rep.Quiet.P99ms > 0 {
		rep.CalmP99x = math.Round(rep.AddedCalm.P99ms/rep.Quiet.P99ms*100) / 100
	}
	if rc := rep.Restart; rc != nil {
		rc.LatencyB = quantiles(restartB)
	}
	if kc := rep.RedisKill; kc != nil {
		kc.Latency = quantiles(killLat)
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

type cpuCounters struct{ busy, total int64 }

// machineTicks reads the machine's CPU time from /proc/stat: all of it,
// and all but idle and iowait.
func machineTicks() cpuCounters {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuCounters{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var c cpuCounters
	for i, v := range f[1:] {
		if i >= 8 { // guest time is already in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		c.total += n
		if i != 3 && i != 4 { // idle, iowait
			c.busy += n
		}
	}
	return c
}
