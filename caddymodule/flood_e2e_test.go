package caddymodule_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	examplepolicy "github.com/onepush/onepush/examples/policy"
)

// floodSize is the 20,000 posts; ONEPUSH_FLOOD_N changes it (e.g. 200000 for a
// long run).
func floodSize(t *testing.T) int {
	if v := os.Getenv("ONEPUSH_FLOOD_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("ONEPUSH_FLOOD_N=%q is not a positive integer", v)
		}
		return n
	}
	return 20000
}

// vmRSS reads a process's resident set size in KiB from /proc.
func vmRSS(pid int) (int, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb, err == nil
		}
	}
	return 0, false
}

// hotCounter counts logins of one user that reach the bank.
type hotCounter struct {
	h    http.Handler
	user string
	n    atomic.Int64
}

func (c *hotCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/login" {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if bytes.Contains(body, []byte("user_id="+c.user+"&")) || bytes.HasSuffix(body, []byte("user_id="+c.user)) {
			c.n.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	c.h.ServeHTTP(w, r)
}

// TestFloodOfLoginsKeepsPassThroughAnsweredAndMemoryBounded runs a load client in its
// own process that posts 20,000 logins for random users (every 20th for alice, whose
// phone never answers) while the test keeps fetching a page that passes straight
// through, and samples Caddy's RSS. Figures are printed with -v.
func TestFloodOfLoginsKeepsPassThroughAnsweredAndMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test skipped in -short mode")
	}
	n := floodSize(t)
	client := filepath.Join(t.TempDir(), "floodclient")
	build := exec.Command("go", "build", "-o", client, "github.com/onepush/onepush/caddymodule/internal/floodclient")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the flood client: %v\n%s", err, out)
	}

	pol := strings.Replace(heldLogin(t, string(examplepolicy.Bank)), "timeout: 90s", "timeout: 2s", 1)
	e, _ := newBankEnv(t, bank.DefaultUsers(), pol)
	// Count alice's logins reaching the bank: re-point the env at a counting wrapper.
	hc := &hotCounter{h: e.bank, user: alice.UserID}
	srv := httptest.NewServer(hc)
	t.Cleanup(srv.Close)
	e.bankURL = srv.URL
	g, phone := e.gatewayWithAlice("\t\tmax_failures 1000000")
	hc.n.Store(0)
	pid := g.cmd.Process.Pid

	base, ok := vmRSS(pid)
	if !ok {
		t.Skip("no /proc/<pid>/status VmRSS on this system")
	}

	cmd := exec.Command(client, "-url", g.URL+"/login", "-n", strconv.Itoa(n), "-c", "64",
		"-hot", alice.ContractNo+"/"+alice.UserID+":"+alice.Password, "-hot-every", "20")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var (
		peak      = base
		probes    int
		failures  []string
		latencies []time.Duration
		mu        sync.Mutex
	)
	probe := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var clientErr error
loop:
	for {
		select {
		case clientErr = <-done:
			break loop
		case <-tick.C:
		}
		if time.Since(start) > 85*time.Second {
			_ = cmd.Process.Kill()
			t.Fatalf("flood of %d posts still running after 85s", n)
		}
		if kb, ok := vmRSS(pid); ok && kb > peak {
			peak = kb
		}
		t0 := time.Now()
		resp, err := probe.Get(g.URL + "/static/style.css")
		d := time.Since(t0)
		mu.Lock()
		probes++
		latencies = append(latencies, d)
		if err != nil {
			failures = append(failures, err.Error())
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failures = append(failures, resp.Status)
			}
		}
		mu.Unlock()
	}
	took := time.Since(start)
	if clientErr != nil {
		t.Fatalf("flood client: %v\n%s", clientErr, stderr.String())
	}
	var sum struct {
		Requests   int            `json:"requests"`
		Statuses   map[string]int `json:"statuses"`
		Errors     int            `json:"errors"`
		FirstError string         `json:"first_error"`
		PerSecond  float64        `json:"per_second"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("flood client output %q: %v", stdout.String(), err)
	}
	// Let held requests time out, then look at memory again.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pending, err := phone.Pending(context.Background())
		if err == nil && len(pending) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	after, _ := vmRSS(pid)

	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(p*float64(len(latencies)-1))]
	}
	t.Logf("flood: %d login posts in %s (%.0f/s), statuses %v, transport errors %d", sum.Requests, took.Round(time.Millisecond), sum.PerSecond, sum.Statuses, sum.Errors)
	t.Logf("pass-through during the flood: %d probes, %d failed, latency p50 %s p99 %s max %s", probes, len(failures), pct(0.5), pct(0.99), pct(1))
	t.Logf("caddy VmRSS: before %d KiB, peak %d KiB (+%d KiB), after %d KiB", base, peak, peak-base, after)

	if sum.Requests != n || sum.Errors != 0 {
		t.Errorf("flood client: %d requests, %d transport errors (first: %s)", sum.Requests, sum.Errors, sum.FirstError)
	}
	total := 0
	for code, c := range sum.Statuses {
		total += c
		switch code {
		case "200", "303", "403", "408", "409", "429", "503":
		default:
			t.Errorf("%d posts answered %s", c, code)
		}
	}
	if total != n {
		t.Errorf("%d posts answered, want %d", total, n)
	}
	if probes < 5 || len(failures) != 0 {
		t.Errorf("pass-through during the flood: %d probes, failures %v", probes, failures)
	}
	// Bounded: 20,000 posts must not cost the gateway more than this over its idle size.
	const maxGrowthKiB = 256 << 10
	if peak-base > maxGrowthKiB {
		t.Errorf("caddy RSS grew by %d KiB during the flood, over the %d KiB bound", peak-base, maxGrowthKiB)
	}
	if got := hc.n.Load(); got != 0 {
		t.Errorf("%d of alice's unapproved logins reached the bank", got)
	}
}
