// Package metrics turns the kernel's aggregates of `hoptrace serve` (latency
// histograms per pair of hooks, packet and drop counters) into Prometheus
// metrics named after containers, bridges and interfaces.
//
// It is pure: the tracer reads the maps into Aggregates, the resolver gives
// a topology.Snapshot, and Collector turns both into metrics at scrape
// time. Series are bounded by what names them: container names, interface
// labels, bridge and network names, never addresses or ports. A series whose
// interfaces are gone from the snapshot is no longer exposed.
package metrics

import "github.com/hoptrace/hoptrace/resolver/topology"

// BoundsNS are the upper bounds of the latency buckets the kernel counts
// into, in ns (1-2-5 steps from 1µs to 1s); a last bucket holds what is
// above them all. The tracer hands them to the kernel at load time.
var BoundsNS = [NumBounds]uint64{
	1e3, 2e3, 5e3,
	1e4, 2e4, 5e4,
	1e5, 2e5, 5e5,
	1e6, 2e6, 5e6,
	1e7, 2e7, 5e7,
	1e8, 2e8, 5e8,
	1e9,
}

// NumBounds is len(BoundsNS); equal to HIST_BOUNDS in bpf/hoptrace.c.
const NumBounds = 19

// Hook is one traced hook: an interface and a direction.
type Hook struct {
	Key    topology.Key
	Egress bool
}

// Pair is two hooks of a packet: consecutive ones (a hop) or its first and
// last traced hooks (a path).
type Pair struct {
	From, To Hook
}

// Hist is a latency histogram: Buckets[i] counts values up to BoundsNS[i]
// (not cumulative), the last bucket those above; SumNS is their sum. The
// kernel may time a sample of a busy CPU's packets and count each of them
// for those it left out (tracer.Options.TimedPerCPU): then the counts are
// an estimate, and Packets, of a path, is the exact number of packets.
type Hist struct {
	Buckets [NumBounds + 1]uint64
	SumNS   uint64
	Packets uint64
}

// Count is the number of values in h.
func (h *Hist) Count() uint64 {
	var n uint64
	for _, b := range h.Buckets {
		n += b
	}
	return n
}

// Add adds o's counts to h.
func (h *Hist) Add(o *Hist) {
	for i := range h.Buckets {
		h.Buckets[i] += o.Buckets[i]
	}
	h.SumNS += o.SumNS
	h.Packets += o.Packets
}

// DropKey is a drop of a traced packet: the kernel's reason name, the
// interface the packet was on when freed (zero when none) and the last hook
// that saw it.
type DropKey struct {
	Reason string
	At     topology.Key
	Last   Hook
}

// Aggregates are the kernel's counters since load, summed over CPUs.
type Aggregates struct {
	Hops  map[Pair]Hist // latency between consecutive hooks
	Paths map[Pair]Hist // latency from a packet's first to its last hook
	Drops map[DropKey]uint64
}

// Lost are the kernel's loss counters.
type Lost struct {
	Hops, Drops uint64 // events lost to a full ring buffer (none in serve)
	Aggregate   uint64 // aggregate updates lost to a full map
	Joins       uint64 // packets whose entry was evicted between hooks
}

// State is everything one scrape shows.
type State struct {
	Agg           Aggregates
	Lost          Lost
	Snapshot      *topology.Snapshot
	HooksAttached int
}
