package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// mainPeak runs the peak scenario, prints its table (and writes the JSON
// file when jsonOut is set) and returns the exit code: 1 when a check
// failed or the run did not finish.
func mainPeak(cfg peakConfig, jsonOut string) int {
	started := time.Now()
	rep := &peakReport{}
	err := runPeak(cfg, rep)
	out := struct {
		Started time.Time   `json:"started"`
		CPUs    int         `json:"cpus"`
		Go      string      `json:"go"`
		Seconds float64     `json:"seconds"`
		Peak    *peakReport `json:"peak"`
		Error   string      `json:"error,omitempty"`
	}{started, runtime.NumCPU(), runtime.Version(), time.Since(started).Round(time.Second).Seconds(), rep, ""}
	if err != nil {
		out.Error = err.Error()
	}
	fmt.Fprintf(os.Stdout, "\nonepush bench -scenario peak — %d CPUs, %s, %s, %.0f s\n\n", out.CPUs, out.Go, started.Format("2006-01-02 15:04"), out.Seconds)
	printPeak(os.Stdout, rep)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(out, "", "  ")
		if werr := os.WriteFile(jsonOut, append(b, '\n'), 0o644); werr != nil {
			fmt.Fprintf(os.Stderr, "bench: writing %s: %v\n", jsonOut, werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stdout, "ERROR: %v\n", err)
		return 1
	}
	if !rep.Check.ok() {
		return 1
	}
	return 0
}

func printPeak(out io.Writer, r *peakReport) {
	c := r.Check
	if c == nil {
		fmt.Fprintln(out, "no checks: the run did not finish")
		return
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	cf := r.Config
	fmt.Fprintf(w, "run\t%s; %d users on %d phones, %d load clients; rules time out after %.0f s\t\t\t\n", cf.Shape, cf.Users, cf.Phones, cf.Clients, cf.TimeoutS)
	fmt.Fprintf(w, "arrivals\t%d customers started of %.0f due (%d found no free user; max lag %d ms)\t%.1f customers/s at the top\t\t\n", r.Offered, r.Due, r.Skipped, r.MaxLagMs, cf.CustomersPerS)
	fmt.Fprintf(w, "approvals/s\t%.1f (best 5 s), %.1f (mean over the top)\ttarget %.0f /s\t%.0f%%\t\n", r.ApprovalsTop, r.ApprovalsAvg, cf.TargetApprovalsPerS, 100*r.ApprovalsTop/cf.TargetApprovalsPerS)
	fmt.Fprintf(w, "added latency p50 / p99 / p999\t%s\tquiet release: %s\tp99 %.2f×\t\n", lq(r.Added), lq(r.Quiet), safeDiv(r.Added.P99ms, r.Quiet.P99ms))
	fmt.Fprintf(w, "  outside the fault windows\t%s\t\tp99 %.2f×\t≤ 2×\n", lq(r.AddedCalm), r.CalmP99x)
	var kinds []string
	for k := range r.ByKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "  %s\t%s\t\tp99 %.2f×\t\n", k, lq(r.ByKind[k]), safeDiv(r.ByKind[k].P99ms, r.Quiet.P99ms))
	}
	fmt.Fprintf(w, "  of which: sent → push at the phone\t%s\t\t\t\n", lq(r.ToPush))
	fmt.Fprintf(w, "  of which: decision sent → bank's answer\t%s\t\t\t\n", lq(r.Release))
	for _, s := range r.Timeline {
		fmt.Fprintf(w, "  %3.0f–%3.0f s\t%d approved, p50 %.1f / p99 %.1f ms\t%s\tp99 %.2f×\t\n", s.FromS, s.FromS+10, s.Approvals, s.P50ms, s.P99ms, s.Faults, safeDiv(s.P99ms, r.Quiet.P99ms))
	}
	fmt.Fprintf(w, "Caddy CPU per approval\t%.0f µs (both instances)\t\t\t\n", r.CPUusPerApproval)
	fmt.Fprintf(w, "the machine meanwhile\tall cores %.0f%% busy (everyone's work); this run: Caddy %.2f cores, phones + bank + customers %.2f\t%d CPUs\t\t\n", r.MachineBusyPct, r.CoresCaddy, r.CoresOthers, runtime.NumCPU())
	fmt.Fprintf(w, "RSS per instance (max)\tA %.1f MiB, B %.1f MiB\t\t\t\n", r.RSSMiB[0], r.RSSMiB[1])
	fmt.Fprintf(w, "Redis per approval\t%.1f commands, %.0f bytes in+out\t%s\t\t\n", r.RedisOpsPerApproval, r.RedisBytesPerApproval, topCommands(r.RedisCommands, 6))
	if rc := r.Restart; rc != nil && !rc.StopAt.IsZero() {
		fmt.Fprintf(w, "fault: instance A restarted\texited %.1f s after SIGTERM, answering %.1f s after, first request through it answered by the bank %.1f s after\t%d connections open at SIGTERM\t\t\n",
			rc.ExitedMs/1000, rc.ReadyMs/1000, rc.FirstOKMs/1000, rc.HeldAtStopA)
		fmt.Fprintf(w, "  not completed in the window\tA: %s\tB: %s\t\tB: none\n", counts(rc.AffectedA), counts(rc.AffectedB))
		fmt.Fprintf(w, "  B's added latency meanwhile\t%s\t\tp99 %.2f×\t\n", lq(rc.LatencyB), safeDiv(rc.LatencyB.P99ms, r.Quiet.P99ms))
	}
	if k := r.RedisKill; k != nil && !k.KillAt.IsZero() {
		fmt.Fprintf(w, "fault: Redis primary killed\ta replica promoted %.1f s after, the old primary its replica %.1f s after, first request answered by the bank %.1f s after\t%d requests answered 503\t\t\n",
			k.PromotedMs/1000, k.ReplicaMs/1000, k.FirstOKMs/1000, k.Answered503)
		fmt.Fprintf(w, "  added latency meanwhile\t%s\t\tp99 %.2f×\t\n", lq(k.Latency), safeDiv(k.Latency.P99ms, r.Quiet.P99ms))
	}
	if f := r.Fail503; f != nil && !f.Window.From.IsZero() {
		fmt.Fprintf(w, "fault: push provider 503\t%d pushes refused over %.0f s; %d requests expired (408) after them\t%.1f expired/s otherwise\t\t\n",
			f.PushesRefused, f.Window.To.Sub(f.Window.From).Seconds(), f.ExpiredDuring, f.ExpiredPerSecO)
	}
	w.Flush()
	fmt.Fprintf(out, "\nrequests %d: executed %d, approvals accepted %d (and %d sent without a trustworthy answer); answers: %s", c.Requests, c.Executed, c.Approvals, c.ApprovalsUnknown, counts(c.Classes))
	if len(c.Statuses) > 0 {
		var st []string
		for s, n := range c.Statuses {
			st = append(st, fmt.Sprintf("%d×%d", n, s))
		}
		sort.Strings(st)
		fmt.Fprintf(out, " (refused: %s)", strings.Join(st, ", "))
	}
	fmt.Fprintf(out, "\napproved, not forwarded (client told or gone): %s; executed, client not told: %d\n", counts(c.ApprovedNotForwarded), c.ExecutedNotTold)
	for _, g := range c.Gaps {
		fmt.Fprintf(out, "BANK LOG GAP: %s\n", g)
	}
	for _, p := range c.Problems {
		fmt.Fprintf(out, "  %s\n", p)
	}
	fmt.Fprintf(out, "unanswered %d\n", c.Unanswered)
	fmt.Fprintf(out, "lost %d, duplicated %d, unapproved %d\n", c.Lost, c.Duplicated, c.Unapproved)
}

func lq(q latencyQ) string {
	return fmt.Sprintf("%.1f / %.1f / %.1f ms (n=%d)", q.P50ms, q.P99ms, q.P999ms, q.N)
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var s []string
	for k, n := range m {
		s = append(s, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// topCommands lists the n commands with the most calls per approval.
func topCommands(m map[string]float64, n int) string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || (l[i].v == l[j].v && l[i].k < l[j].k) })
	var s []string
	for i, e := range l {
		if i == n {
			break
		}
		s = append(s, fmt.Sprintf("%s %.1f", e.k, e.v))
	}
	return strings.Join(s, ", ")
}
