package tracer

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

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
func TestAggregate(t *testing.T) {
	allModes(t, func(t *testing.T, opts Options) {
		topo := testenv.NewTopology(t, 2)
		a, b := topo.Hosts[0], topo.Hosts[1]
		rx := b.UDPConn(t, 0)
		port := rx.LocalAddr().(*net.UDPAddr).Port
		opts.Aggregate = true
		opts.Filter = mustCompile(t, fmt.Sprintf("udp and dst port %d", port))
		tr := load(t, opts)
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
		if !ok || p.Count() != n {
			t.Fatalf("path %v -> %v: %+v (count %d), want %d packets; all: %+v", hooks[0], hooks[3], p, p.Count(), n, agg.Paths)
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
		if tr.Unread() != 0 {
			t.Errorf("%d bytes in the ring buffer with Aggregate", tr.Unread())
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
		var keys int
		it := tr.coll.Maps["path_hist"].Iterate()
		var k hoptraceHookPair
		var v []hoptraceHist
		for it.Next(&k, &v) {
			keys++
		}
		if keys != 0 {
			t.Errorf("%d path entries left in the kernel after b's detach", keys)
		}
	})
}
