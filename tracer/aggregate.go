package tracer

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/metrics"
)

// aggregateMaps are the maps the hooks fill with Options.Aggregate.
var aggregateMaps = []string{"hop_hist", "path_hist", "drop_counts"}

// timeBurst is how long a CPU may save up its budget of TimedPerCPU for.
const timeBurst = 4 * time.Millisecond

// timedBurst is how many new packets in a row a CPU that times perSecond a
// second may time one by one: at least 2, so that a budget that grows by
// less than a packet between two packets does not lose what it grew.
func timedBurst(perSecond int) uint32 {
	return uint32(max(2, int64(perSecond)*int64(timeBurst)/int64(time.Second)))
}

// setAggregate switches the kernel-side aggregation on in spec, with the
// histogram bounds of package metrics.
func setAggregate(spec *ebpf.CollectionSpec, opts Options) error {
	if !opts.Aggregate {
		// Unused: one slot, not 90 KB a CPU.
		spec.Maps["hist_cache"].MaxEntries = 1
		return nil
	}
	rate := min(max(0, opts.TimedPerCPU), 1e9)
	for name, v := range map[string]any{
		"aggregate_only": true,
		"hist_bounds_ns": metrics.BoundsNS,
		"timed_per_sec":  uint64(rate),
		"timed_burst":    timedBurst(rate),
		"time_one_in":    uint32(max(1, opts.TimeOneIn)),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

func aggHook(id hoptraceHookId) metrics.Hook {
	return metrics.Hook{
		Key:    topology.Key{NetnsIno: id.NetnsIno, Ifindex: id.IfindexDir >> 1},
		Egress: id.IfindexDir&1 != 0,
	}
}

// Aggregates reads what the hooks counted since load (Options.Aggregate),
// summed over CPUs. Entries of hooks no longer attached (their container
// went) are deleted from the kernel's maps and left out, so series of
// removed containers expire and the maps do not fill up.
func (t *Tracer) Aggregates() (metrics.Aggregates, error) {
	agg := metrics.Aggregates{
		Hops:  map[metrics.Pair]metrics.Hist{},
		Paths: map[metrics.Pair]metrics.Hist{},
		Drops: map[metrics.DropKey]uint64{},
	}
	if !t.opts.Aggregate {
		return agg, nil
	}
	t.mu.Lock()
	live := make(map[topology.Key]bool, len(t.attached))
	for k := range t.attached {
		live[topology.Key{NetnsIno: k.netns, Ifindex: uint32(k.ifindex)}] = true
	}
	t.mu.Unlock()

	var errs []error
	for _, m := range []struct {
		name string
		out  map[metrics.Pair]metrics.Hist
	}{{"hop_hist", agg.Hops}, {"path_hist", agg.Paths}} {
		errs = append(errs, readHists(t.coll.Maps[m.name], m.out, live))
	}
	errs = append(errs, readHistCache(t.coll.Maps["hist_cache"], agg.Hops, agg.Paths, live))
	errs = append(errs, t.readDrops(agg.Drops, live))
	return agg, errors.Join(errs...)
}

// addHist adds a kernel histogram to h.
func addHist(h *metrics.Hist, v *hoptraceHist) {
	for i := range h.Buckets {
		h.Buckets[i] += v.Buckets[i]
	}
	h.SumNS += v.SumNs
	h.Packets += v.Packets
}

func readHists(m *ebpf.Map, out map[metrics.Pair]metrics.Hist, live map[topology.Key]bool) error {
	var (
		k     hoptraceHookPair
		vals  []hoptraceHist
		stale []hoptraceHookPair
	)
	it := m.Iterate()
	for it.Next(&k, &vals) {
		p := metrics.Pair{From: aggHook(k.From), To: aggHook(k.To)}
		if !live[p.From.Key] || !live[p.To.Key] {
			stale = append(stale, k)
			continue
		}
		h := out[p]
		for i := range vals {
			addHist(&h, &vals[i])
		}
		out[p] = h
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", m, err)
	}
	return deleteKeys(m, stale)
}

// readHistCache adds the per-CPU histogram slots of hist_cache (the first
// half hops, the second paths) to what the hash maps held. A slot keeps its
// key while the key's hooks are attached, so a key's total only grows. An
// index where no CPU's slot holds a live key but some hold a gone one is
// emptied for new keys; a CPU that takes a free slot there between this
// read and the write loses those few microseconds of counts.
func readHistCache(m *ebpf.Map, hops, paths map[metrics.Pair]metrics.Hist, live map[topology.Key]bool) error {
	var (
		idx   uint32
		vals  []hoptraceHistSlot
		stale []uint32
	)
	half := m.MaxEntries() / 2
	it := m.Iterate()
	for it.Next(&idx, &vals) {
		out := hops
		if idx >= half {
			out = paths
		}
		gone, used := false, false
		for i := range vals {
			k := vals[i].Key
			if k == (hoptraceHookPair{}) {
				continue
			}
			p := metrics.Pair{From: aggHook(k.From), To: aggHook(k.To)}
			if !live[p.From.Key] || !live[p.To.Key] {
				gone = true
				continue
			}
			used = true
			h := out[p]
			addHist(&h, &vals[i].H)
			out[p] = h
		}
		if gone && !used {
			stale = append(stale, idx)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", m, err)
	}
	if len(stale) == 0 {
		return nil
	}
	free := make([]hoptraceHistSlot, len(vals))
	for _, idx := range stale {
		if err := m.Update(idx, free, ebpf.UpdateExist); err != nil {
			return fmt.Errorf("empty %s slot %d: %w", m, idx, err)
		}
	}
	return nil
}

func (t *Tracer) readDrops(out map[metrics.DropKey]uint64, live map[topology.Key]bool) error {
	m := t.coll.Maps["drop_counts"]
	var (
		k     hoptraceDropKey
		vals  []uint64
		stale []hoptraceDropKey
	)
	it := m.Iterate()
	for it.Next(&k, &vals) {
		dk := metrics.DropKey{Reason: t.ReasonName(k.Reason), At: aggHook(k.At).Key, Last: aggHook(k.Last)}
		if !live[dk.Last.Key] {
			stale = append(stale, k)
			continue
		}
		var n uint64
		for _, v := range vals {
			n += v
		}
		out[dk] += n
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", m, err)
	}
	return deleteKeys(m, stale)
}

func deleteKeys[K any](m *ebpf.Map, keys []K) error {
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete from %s: %w", m, err)
		}
	}
	return nil
}

// AggregateLoss is the kernel's loss counters for metrics: Options.Aggregate
// updates lost to a full map besides the events and joins of Loss.
func (t *Tracer) AggregateLoss() (metrics.Lost, error) {
	l, err := t.Loss()
	if err != nil {
		return metrics.Lost{}, err
	}
	agg, err := sumPerCPU(t.coll.Maps["lost"], uint32(hoptraceLostIdxLOST_AGGREGATE))
	if err != nil {
		return metrics.Lost{}, err
	}
	return metrics.Lost{Hops: l.Hops, Drops: l.Drops, Joins: l.Evicted, Aggregate: agg}, nil
}
