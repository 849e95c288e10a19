package main

import (
	"math"
	"slices"
	"time"
)

// hist is a latency histogram with buckets 1% wide, so load clients in other
// processes can send theirs as JSON and the coordinator can merge them.
type hist struct {
	B map[int]int64 `json:"b"`
	N int64         `json:"n"`
}

const histBase = 1.01

func newHist() *hist { return &hist{B: map[int]int64{}} }

func (h *hist) add(d time.Duration) {
	ns := float64(d.Nanoseconds())
	if ns < 1 {
		ns = 1
	}
	h.B[int(math.Log(ns)/math.Log(histBase))]++
	h.N++
}

func (h *hist) merge(o *hist) {
	for k, v := range o.B {
		h.B[k] += v
	}
	h.N += o.N
}

// quantile returns the q-quantile (0..1), accurate to about 1%.
func (h *hist) quantile(q float64) time.Duration {
	if h.N == 0 {
		return 0
	}
	keys := make([]int, 0, len(h.B))
	for k := range h.B {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := int64(math.Ceil(q * float64(h.N)))
	if want < 1 {
		want = 1
	}
	var seen int64
	for _, k := range keys {
		seen += h.B[k]
		if seen >= want {
			return time.Duration(math.Pow(histBase, float64(k)+0.5))
		}
	}
	return time.Duration(math.Pow(histBase, float64(keys[len(keys)-1])+0.5))
}

// samples are exact latencies, for the small sequential measurements.
type samples []time.Duration

func (s samples) quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	i := int(math.Ceil(q*float64(len(c)))) - 1
	if i < 0 {
		i = 0
	}
	return c[i]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	c := slices.Clone(xs)
	slices.Sort(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}
