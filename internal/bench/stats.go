// Package bench holds the pure parts of adoptbench (statistics, the result
// table, the targets) and the raw process primitives its workloads use.
package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes repeated measurements of one quantity.
type Summary struct {
	N        int
	Median   float64
	Min, Max float64
	P25, P75 float64
}

// Summarize sorts a copy of xs and describes it. An empty input gives N == 0.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Summary{
		N: len(s), Median: Quantile(s, 0.5), Min: s[0], Max: s[len(s)-1],
		P25: Quantile(s, 0.25), P75: Quantile(s, 0.75),
	}
}

// Spread is the interquartile range relative to the median (0.05 = ±2.5%).
func (s Summary) Spread() float64 {
	if s.N == 0 || s.Median == 0 {
		return math.NaN()
	}
	return (s.P75 - s.P25) / s.Median
}

// Quantile of sorted data, q in [0,1], linearly interpolated.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	if q <= 0 {
		return sorted[0]
	}
	if q >= 1 {
		return sorted[len(sorted)-1]
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	frac := pos - float64(lo)
	return sorted[lo]*(1-frac) + sorted[hi]*frac
}

// Ratios divides each measurement by its round's baseline (same index), so
// noise that hits a whole round cancels; rounds without a baseline are skipped.
func Ratios(xs, baseline []float64) []float64 {
	var out []float64
	for i := range xs {
		if i < len(baseline) && baseline[i] > 0 {
			out = append(out, xs[i]/baseline[i])
		}
	}
	return out
}

// Latencies summarises durations: p50, p99, max.
type Latencies struct {
	N             int
	P50, P99, Max time.Duration
}

// SummarizeLatencies computes p50/p99/max of ds (which it sorts).
func SummarizeLatencies(ds []time.Duration) Latencies {
	if len(ds) == 0 {
		return Latencies{}
	}
	slices.Sort(ds)
	f := make([]float64, len(ds))
	for i, d := range ds {
		f[i] = float64(d)
	}
	return Latencies{
		N:   len(ds),
		P50: time.Duration(Quantile(f, 0.5)),
		P99: time.Duration(Quantile(f, 0.99)),
		Max: ds[len(ds)-1],
	}
}
