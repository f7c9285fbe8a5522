// Package latency aggregates journeys into per-path and per-hop latency
// percentiles (p50/p90/p99/max) in bounded memory, for `hoptrace latency`
// live or from a recording. It is pure Go: journeys in, numbers out.
package latency

import (
	"math/bits"
	"time"
)

// Log-linear buckets: values below subBuckets ns are exact; above, each
// power of two is split in subBuckets equal buckets, so a percentile is off
// by at most 1/subBuckets (about 3%) of its value.
const (
	subBits    = 5
	subBuckets = 1 << subBits
	// maxValue caps recorded values (about 18 minutes); larger ones count as
	// the cap, so the bucket array has a fixed size.
	maxValue   = 1<<40 - 1
	numBuckets = subBuckets + (40-subBits)*subBuckets
)

// Histogram counts durations in fixed log-linear buckets. The zero value is
// ready to use; its buckets are allocated on the first Add.
type Histogram struct {
	counts   []uint64
	n        uint64
	sum      uint64
	min, max uint64
}

func bucketOf(v uint64) int {
	if v > maxValue {
		v = maxValue
	}
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return subBuckets + shift*subBuckets + int(v>>uint(shift)) - subBuckets
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < subBuckets {
		return uint64(i), uint64(i)
	}
	shift := uint((i - subBuckets) / subBuckets)
	m := uint64(subBuckets + (i-subBuckets)%subBuckets)
	return m << shift, (m+1)<<shift - 1
}

// Add records one duration (negative counts as 0).
func (h *Histogram) Add(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
		h.min = v
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += v
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds another histogram's counts.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
		h.min = o.min
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the q-quantile (0..1): the middle of the bucket holding
// the value of rank ceil(q*n), kept within the exact min and max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// Summary is the numbers a report shows for one histogram.
type Summary struct {
	Count uint64        `json:"count"`
	Min   time.Duration `json:"min_ns"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Summary returns count, min, mean, p50/p90/p99 and max.
func (h *Histogram) Summary() Summary {
	if h.n == 0 {
		return Summary{}
	}
	return Summary{
		Count: h.n,
		Min:   time.Duration(h.min),
		Mean:  time.Duration(h.sum / h.n),
		P50:   h.Quantile(0.50),
		P90:   h.Quantile(0.90),
		P99:   h.Quantile(0.99),
		Max:   time.Duration(h.max),
	}
}
