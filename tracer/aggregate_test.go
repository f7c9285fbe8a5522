package tracer

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/metrics"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// TestAggregate checks the kernel-side aggregation of serve: datagrams from
// a to b make one path histogram (first to last hook) and three hop
// histograms with exactly as many counts as datagrams sent, whose sums add
// up to the path's; nothing goes to the ring; a FORWARD drop is counted by
// reason at the hook that saw the packet last; and entries of detached
// interfaces go.
//
// With taken, every slot of the per-CPU histogram cache is first held by a
// key of hooks that do not exist, so the counts go to the hash maps: the
// totals must be the same, and the first read must free those slots.
func TestAggregate(t *testing.T) {
	allModes(t, func(t *testing.T, opts Options) {
		t.Run("cache", func(t *testing.T) { testAggregate(t, opts, false) })
		t.Run("cache-taken", func(t *testing.T) { testAggregate(t, opts, true) })
	})
}

// takeHistCache fills every slot of hist_cache, on every CPU, with a key of
// hooks nobody attached.
func takeHistCache(t *testing.T, tr *Tracer) {
	m := tr.coll.Maps["hist_cache"]
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for idx := uint32(0); idx < m.MaxEntries(); idx++ {
		vals := make([]hoptraceHistSlot, ncpu)
		for c := range vals {
			vals[c].Key = hoptraceHookPair{
				From: hoptraceHookId{NetnsIno: 1, IfindexDir: idx},
				To:   hoptraceHookId{NetnsIno: 1, IfindexDir: uint32(c)},
			}
			vals[c].H.Buckets[0] = 7
		}
		if err := m.Update(idx, vals, ebpf.UpdateExist); err != nil {
			t.Fatal(err)
		}
	}
}

// cacheSlots counts the slots of hist_cache in use, over all CPUs: in the
// hop half and the path half. Unless the test took the cache with keys of
// its own, each key must sit in its slot (cacheIdx).
func cacheSlots(t *testing.T, tr *Tracer, taken bool) (hops, paths int) {
	m := tr.coll.Maps["hist_cache"]
	var idx uint32
	var vals []hoptraceHistSlot
	it := m.Iterate()
	for it.Next(&idx, &vals) {
		for _, v := range vals {
			if v.Key == (hoptraceHookPair{}) {
				continue
			}
			if half := m.MaxEntries() / 2; idx != cacheIdx(v.Key, idx/half*half) && !taken {
				t.Errorf("key %+v in slot %d, cacheIdx says %d", v.Key, idx, cacheIdx(v.Key, idx/half*half))
			}
			if idx < m.MaxEntries()/2 {
				hops++
			} else {
				paths++
			}
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return hops, paths
}

func testAggregate(t *testing.T, opts Options, taken bool) {
	{
		topo := testenv.NewTopology(t, 2)
		a, b := topo.Hosts[0], topo.Hosts[1]
		rx := b.UDPConn(t, 0)
		port := rx.LocalAddr().(*net.UDPAddr).Port
		opts.Aggregate = true
		opts.Filter = mustCompile(t, fmt.Sprintf("udp and dst port %d", port))
		tr := load(t, opts)
		if taken {
			takeHistCache(t, tr)
		}
		attachAll(t, tr, topo)

		const n = 5
		udpTo(t, a, rx.LocalAddr(), []byte("count me"), n, 20*time.Millisecond)
		_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		for i := 0; i < n; i++ {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				t.Fatalf("datagram %d: %v", i, err)
			}
		}
		want := path(topo, a, b)
		hooks := make([]metrics.Hook, len(want))
		for i, h := range want {
			hooks[i] = metrics.Hook{Key: topology.Key{NetnsIno: h.netns, Ifindex: h.ifindex}, Egress: h.dir != 0}
		}
		agg, err := tr.Aggregates()
		if err != nil {
			t.Fatal(err)
		}
		if len(agg.Paths) != 1 {
			t.Fatalf("paths %v, want one", agg.Paths)
		}
		p, ok := agg.Paths[metrics.Pair{From: hooks[0], To: hooks[3]}]
		if !ok || p.Count() != n || p.Packets != n {
			t.Fatalf("path %v -> %v: %+v (count %d), want %d packets timed and counted; all: %+v", hooks[0], hooks[3], p, p.Count(), n, agg.Paths)
		}
		if len(agg.Hops) != 3 {
			t.Errorf("hops %+v, want 3 pairs", agg.Hops)
		}
		var hopSum uint64
		for i := 0; i < 3; i++ {
			h, ok := agg.Hops[metrics.Pair{From: hooks[i], To: hooks[i+1]}]
			if !ok || h.Count() != n {
				t.Errorf("hop %v -> %v: count %d, want %d", hooks[i], hooks[i+1], h.Count(), n)
			}
			hopSum += h.SumNS
		}
		if hopSum != p.SumNS || p.SumNS == 0 {
			t.Errorf("hop latencies add up to %dns, the path's to %dns", hopSum, p.SumNS)
		}
		for _, all := range []map[metrics.Pair]metrics.Hist{agg.Paths, agg.Hops} {
			for pair, h := range all {
				checkBuckets(t, pair, h)
			}
		}
		if tr.Unread() != 0 {
			t.Errorf("%d bytes in the ring buffer with Aggregate", tr.Unread())
		}
		var hashed int
		for _, name := range []string{"hop_hist", "path_hist"} {
			hashed += mapLen(t, tr.coll.Maps[name])
		}
		cachedHops, cachedPaths := cacheSlots(t, tr, taken)
		switch {
		case taken && (hashed != 4 || cachedHops+cachedPaths != 0):
			t.Errorf("cache taken: %d hash entries, want 4 (3 hops, 1 path); %d+%d cache slots in use after the read, want the stale ones freed",
				hashed, cachedHops, cachedPaths)
		case !taken && (hashed != collided(t, tr) || cachedHops+cachedPaths+hashed < 4):
			t.Errorf("%d hash entries, want only keys whose cache slot another key holds; %d hop and %d path cache slots in use, want at least 3 and 1 with the hash entries",
				hashed, cachedHops, cachedPaths)
		}

		if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil && tr.Features().Drops {
			rule := []string{"FORWARD", "-s", a.IP.String(), "-d", b.IP.String(), "-p", "udp",
				"--dport", strconv.Itoa(port), "-j", "DROP"}
			iptables(t, append([]string{"-I", rule[0], "1"}, rule[1:]...)...)
			const m = 3
			udpTo(t, a, rx.LocalAddr(), []byte("drop me"), m, 20*time.Millisecond)
			time.Sleep(50 * time.Millisecond)
			iptables(t, append([]string{"-D"}, rule...)...)
			if agg, err = tr.Aggregates(); err != nil {
				t.Fatal(err)
			}
			var dropped uint64
			for k, v := range agg.Drops {
				if k.Reason != "NETFILTER_DROP" || k.Last != hooks[1] {
					t.Errorf("drop %+v (%d), want NETFILTER_DROP after %v", k, v, hooks[1])
					continue
				}
				dropped += v
			}
			if dropped != m {
				t.Errorf("%d drops counted, want %d: %+v", dropped, m, agg.Drops)
			}
		} else {
			t.Log("drops not tested: no br_netfilter or no tp_btf/kfree_skb")
		}

		// b goes: its entries are no longer read, and leave the maps.
		for _, i := range []Iface{{Name: b.HostVeth}, {Name: b.Iface, Netns: b.Path}} {
			if err := tr.Detach(i); err != nil {
				t.Fatal(err)
			}
		}
		if agg, err = tr.Aggregates(); err != nil {
			t.Fatal(err)
		}
		if len(agg.Paths) != 0 || len(agg.Hops) != 1 {
			t.Errorf("after b's detach: paths %+v, hops %+v; want none and a's first hop", agg.Paths, agg.Hops)
		}
		if keys := mapLen(t, tr.coll.Maps["path_hist"]); keys != 0 {
			t.Errorf("%d path entries left in the kernel after b's detach", keys)
		}
		if _, paths := cacheSlots(t, tr, taken); paths != 0 {
			t.Errorf("%d path cache slots still held after b's detach", paths)
		}
	}
}

// TestAggregateTimesASample: past TimedPerCPU a CPU times a sample of its
// packets, while the packet count stays exact, and every hop histogram
// holds the same packets as the path's. The one-in-N past the budget never
// comes here, so the timed packets are the budget: a burst against one a
// second times a few; a steady 1000 a second against 200 a second times
// about that many, whatever the kernel's HZ.
func TestAggregateTimesASample(t *testing.T) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		rate int           // TimedPerCPU
		gap  time.Duration // between datagrams
		done func(sent uint64, d time.Duration, most uint64) bool
	}{
		{"burst", 1, 0, func(sent uint64, _ time.Duration, most uint64) bool { return sent >= 40 && sent >= 4*most }},
		{"rate", 200, time.Millisecond, func(_ uint64, d time.Duration, _ uint64) bool { return d >= 500*time.Millisecond }},
	} {
		t.Run(c.name, func(t *testing.T) {
			// At most the burst, per CPU, and what a second's rate
			// adds over the time the sends spanned (and a jiffy).
			most := func(d time.Duration) uint64 {
				added := uint64(c.rate) * uint64(d+10*time.Millisecond) / uint64(time.Second)
				return uint64(ncpu) * (uint64(timedBurst(c.rate)) + added + 1)
			}
			sent, d, agg, hooks := sampleRun(t, c.rate, c.gap, func(sent uint64, d time.Duration) bool {
				return c.done(sent, d, most(d))
			})
			p := agg.Paths[metrics.Pair{From: hooks[0], To: hooks[3]}]
			// At least a CPU's first packet, which its full budget
			// times; where sends are steady, half of what one CPU's
			// budget grows by, or all of them where they were slower.
			least := uint64(1)
			if c.gap > 0 {
				least = min(sent, max(1, uint64(c.rate)*uint64(d)/uint64(time.Second)/2))
			}
			t.Logf("%d datagrams in %v: %d counted, %d timed (%d to %d)", sent, d.Round(time.Millisecond), p.Packets, p.Count(), least, most(d))
			if p.Packets != sent {
				t.Fatalf("path counted %d packets, want %d", p.Packets, sent)
			}
			if p.Count() < least || p.Count() > most(d) {
				t.Errorf("path timed %d packets, want %d to %d", p.Count(), least, most(d))
			}
			var hopSum uint64
			for i := 0; i < 3; i++ {
				h := agg.Hops[metrics.Pair{From: hooks[i], To: hooks[i+1]}]
				if h.Count() != p.Count() {
					t.Errorf("hop %v -> %v timed %d packets, the path %d", hooks[i], hooks[i+1], h.Count(), p.Count())
				}
				hopSum += h.SumNS
			}
			if hopSum != p.SumNS {
				t.Errorf("timed hops add up to %dns, the path to %dns", hopSum, p.SumNS)
			}
		})
	}
}

// sampleRun sends datagrams gap apart between two namespaces, traced with
// Aggregate timing rate a second per CPU, until done, and returns what it
// sent, for how long, the aggregates once they count every datagram, and
// the path's hooks.
func sampleRun(t *testing.T, rate int, gap time.Duration, done func(sent uint64, d time.Duration) bool) (uint64, time.Duration, metrics.Aggregates, []metrics.Hook) {
	t.Helper()
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	rx := b.UDPConn(t, 0)
	port := rx.LocalAddr().(*net.UDPAddr).Port
	tr := load(t, Options{
		Aggregate:   true,
		TimedPerCPU: rate,
		TimeOneIn:   1 << 20,
		Filter:      mustCompile(t, fmt.Sprintf("udp and dst port %d", port)),
	})
	attachAll(t, tr, topo)
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	conn := a.UDPConn(t, 0)
	start := time.Now()
	var sent uint64
	for !done(sent, time.Since(start)) {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("%d datagrams in %v: too slow", sent, time.Since(start))
		}
		if _, err := conn.WriteTo([]byte("sample me"), rx.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		sent++
		time.Sleep(gap)
	}
	d := time.Since(start)

	want := path(topo, a, b)
	hooks := make([]metrics.Hook, len(want))
	for i, h := range want {
		hooks[i] = metrics.Hook{Key: topology.Key{NetnsIno: h.netns, Ifindex: h.ifindex}, Egress: h.dir != 0}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		agg, err := tr.Aggregates()
		if err != nil {
			t.Fatal(err)
		}
		p := agg.Paths[metrics.Pair{From: hooks[0], To: hooks[3]}]
		if p.Packets >= sent || time.Now().After(deadline) {
			return sent, d, agg, hooks
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkBuckets checks that a histogram's values lie in their buckets: the
// sum of its values is at least what the buckets' lower bounds add up to,
// and at most what their upper bounds do.
func checkBuckets(t *testing.T, pair metrics.Pair, h metrics.Hist) {
	t.Helper()
	var low, high uint64
	unbounded := false
	for i, n := range h.Buckets {
		if i > 0 {
			low += n * metrics.BoundsNS[i-1]
		}
		if i < metrics.NumBounds {
			high += n * metrics.BoundsNS[i]
		} else if n > 0 {
			unbounded = true
		}
	}
	if h.SumNS < low || (!unbounded && h.SumNS > high) {
		t.Errorf("%v: %d values summing to %dns in buckets %v, which hold %d to %dns",
			pair, h.Count(), h.SumNS, h.Buckets, low, high)
	}
}

// cacheIdx is a key's slot in hist_cache: hist_cache_idx in
// bpf/hoptrace.c.
func cacheIdx(k hoptraceHookPair, half uint32) uint32 {
	a := uint64(k.From.NetnsIno) | uint64(k.From.IfindexDir)<<32
	b := uint64(k.To.NetnsIno) | uint64(k.To.IfindexDir)<<32
	h := (a ^ (b * 0xff51afd7ed558ccd)) * 0x9e3779b97f4a7c15
	return uint32(h>>56) | half
}

// collided counts the keys of hop_hist and path_hist whose slot in
// hist_cache another key holds on some CPU: the keys that rightly went to
// the hash maps (a few of the test's keys share a slot now and then).
func collided(t *testing.T, tr *Tracer) int {
	t.Helper()
	cache := tr.coll.Maps["hist_cache"]
	half := cache.MaxEntries() / 2
	n := 0
	for i, name := range []string{"hop_hist", "path_hist"} {
		var k hoptraceHookPair
		var v []hoptraceHist
		it := tr.coll.Maps[name].Iterate()
		for it.Next(&k, &v) {
			var slots []hoptraceHistSlot
			if err := cache.Lookup(cacheIdx(k, uint32(i)*half), &slots); err != nil {
				t.Fatal(err)
			}
			for _, s := range slots {
				if s.Key != (hoptraceHookPair{}) && s.Key != k {
					n++
					break
				}
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// mapLen counts the keys of a per-CPU hash map.
func mapLen(t *testing.T, m *ebpf.Map) int {
	var n int
	var k hoptraceHookPair
	var v []hoptraceHist
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
