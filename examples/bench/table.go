package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

func printTable(out io.Writer, r *report) {
	fmt.Fprintf(out, "\nonepush bench — %d CPUs, %s, %s, %.0f s\n\n", r.CPUs, r.Go, r.Started.Format("2006-01-02 15:04"), r.Seconds)
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "figure\tonepush\tcompared with\tratio\ttarget")
	if p := r.PassThrough; p != nil {
		fmt.Fprintf(w, "1 pass-through throughput\t%.0f req/s\tsame Caddy, no onepush: %.0f req/s\t%.1f%%\t≥ 97%%\n", p.Gated.RPS, p.Plain.RPS, p.ThroughputPct)
		fmt.Fprintf(w, "  latency p50 / p99\t%.3f / %.3f ms\t%.3f / %.3f ms\tp99 %.1f%%\t≤ 105%%\n", p.Gated.P50ms, p.Gated.P99ms, p.Plain.P50ms, p.Plain.P99ms, p.P99Pct)
	}
	if h := r.Hold; h != nil && h.Gateway != nil && h.Floor != nil {
		for i, pt := range h.Gateway.Points {
			if i >= len(h.Floor.Points) {
				break
			}
			fl := h.Floor.Points[i]
			fmt.Fprintf(w, "2 held memory at %d\t%.1f KiB/request (+%.0f MiB, idle CPU %.0f%%)\tbare Go net/http: %.1f KiB/request (idle CPU %.0f%%)\t%.2f×\t≤ 1.5×\n",
				pt.Held, pt.KiBPerReq, pt.RSSDeltaMiB, pt.IdleCPUPct, fl.KiBPerReq, fl.IdleCPUPct, pt.KiBPerReq/fl.KiBPerReq)
		}
		if g, f := h.Gateway.Points, h.Floor.Points; len(g) > 0 && len(f) >= len(g) && g[len(g)-1].StackKiBPerReq > 0 {
			gp, fp := g[len(g)-1], f[len(g)-1]
			gl, fl := gp.StackKiBPerReq+gp.HeapKiBPerReq, fp.StackKiBPerReq+fp.HeapKiBPerReq
			fmt.Fprintf(w, "  live after GC at %d: stacks + heap\t%.1f + %.1f KiB/request\t%.1f + %.1f KiB/request\t%.2f×\t\n",
				gp.Held, gp.StackKiBPerReq, gp.HeapKiBPerReq, fp.StackKiBPerReq, fp.HeapKiBPerReq, gl/max(fl, 0.1))
		}
		fmt.Fprintf(w, "  held per process (fd limit)\t%d (%d fds besides held conns)\tRLIMIT_NOFILE %d\t%.1f%%\t≥ 95%%\n", h.Capacity, h.Overhead, h.NoFile, h.CapacityPct)
		fmt.Fprintf(w, "  100k morning peak\t%d instances, ~%.0f MiB each\t\t\t\n", h.PeakInstances, h.PeakMiBPerInst)
	}
	if rl := r.Release; rl != nil {
		fmt.Fprintf(w, "3 release, one instance p50 / p99\t%.3f / %.3f ms\t\t\tp99 ≤ 2 ms\n", rl.Single.P50ms, rl.Single.P99ms)
		switch {
		case rl.Cross != nil && rl.PubSub != nil:
			fmt.Fprintf(w, "  release, two instances (Redis)\t%.3f / %.3f ms\tRedis pub/sub: %.3f / %.3f ms\t%.2f×\t≤ 2×\n",
				rl.Cross.P50ms, rl.Cross.P99ms, rl.PubSub.P50ms, rl.PubSub.P99ms, rl.Cross.P99ms/rl.PubSub.P99ms)
		}
		if rl.RedisSingle != nil {
			fmt.Fprintf(w, "  release, one instance on Redis\t%.3f / %.3f ms\t(interleaved with the line above)\t\t\n", rl.RedisSingle.P50ms, rl.RedisSingle.P99ms)
			if rl.Cross != nil && rl.PubSub != nil {
				// p99s of 200 samples on a shared machine differ by more than
				// the hop itself, so the hop is read off the medians.
				hop := rl.Cross.P50ms - rl.RedisSingle.P50ms
				fmt.Fprintf(w, "  added by the hop A → B, p50\t%+.3f ms\tRedis pub/sub p50: %.3f ms\t%.2f×\t≤ 2×\n",
					hop, rl.PubSub.P50ms, max(hop, 0)/rl.PubSub.P50ms)
			}
		}
		switch {
		case rl.Cross != nil:
		case rl.PubSub != nil:
			fmt.Fprintf(w, "  release, two instances (Redis)\t%s\tRedis pub/sub: %.3f / %.3f ms\t\t≤ 2×\n", short(rl.CrossStatus), rl.PubSub.P50ms, rl.PubSub.P99ms)
		default:
			fmt.Fprintf(w, "  release, two instances (Redis)\t%s\t\t\t\n", short(rl.CrossStatus))
		}
	}
	if c := r.Cycles; c != nil && c.Floor > 0 {
		fmt.Fprintf(w, "4 full cycles\t%.0f /s (p50 %.2f ms)\t2 HTTP exchanges + 1 ES256 verify: %.0f /s\t%.1f%%\t≥ 50%%\n", c.Gateway, c.GatewayP50ms, c.Floor, c.Pct)
		fmt.Fprintf(w, "  server CPU per cycle\tCaddy %.0f µs\tfloor server %.0f µs\t%.1f×\t\n", c.GatewayCPUus, c.FloorCPUus, c.GatewayCPUus/c.FloorCPUus)
	}
	w.Flush()
	if p := r.PassThrough; p != nil {
		var rs []string
		for _, x := range p.RoundRatios {
			rs = append(rs, fmt.Sprintf("%.1f%%", x))
		}
		fmt.Fprintf(out, "\n(pass-through ratios are medians over %d pairs of %.0f s rounds, onepush and plain side by side; throughput per pair: %s)\n",
			p.Rounds, p.RoundSec, strings.Join(rs, " "))
	}
	if h := r.Hold; h != nil {
		fmt.Fprintf(out, "(enrolling the held users took %.0f s; held memory is RSS growth over the RSS before the first request, cumulative)\n", h.EnrolSeconds)
	}
	if r.Release != nil && r.Release.CrossStatus != "" && r.Release.Cross == nil {
		fmt.Fprintf(out, "two instances: %s\n", r.Release.CrossStatus)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(out, "ERROR: %s\n", e)
	}
}

func short(s string) string {
	if i := strings.Index(s, ":"); i > 0 {
		return s[:i]
	}
	return s
}
