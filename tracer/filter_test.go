package tracer

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/filter"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

func TestFilterFieldsMatchC(t *testing.T) {
	for k, f := range map[hoptraceFilterField]filter.Field{
		hoptraceFilterFieldF_SRC_ADDR: filter.FieldSrcAddr, hoptraceFilterFieldF_DST_ADDR: filter.FieldDstAddr,
		hoptraceFilterFieldF_ANY_ADDR: filter.FieldAnyAddr, hoptraceFilterFieldF_SRC_PORT: filter.FieldSrcPort,
		hoptraceFilterFieldF_DST_PORT: filter.FieldDstPort, hoptraceFilterFieldF_ANY_PORT: filter.FieldAnyPort,
		hoptraceFilterFieldF_PROTO: filter.FieldProto, hoptraceFilterFieldF_ETHERTYPE: filter.FieldEtherType,
	} {
		if uint32(k) != uint32(f) {
			t.Errorf("field %d in C is %d in Go", k, f)
		}
	}
}

func mustCompile(t testing.TB, expr string) *filter.Program {
	t.Helper()
	p, err := filter.Compile(expr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFilterInKernel runs traffic among three namespaces under a filter:
// what matches makes hops at every hook, what does not makes none.
func TestFilterInKernel(t *testing.T) {
	allModes(t, func(t *testing.T, opts Options) {
		topo := testenv.NewTopology(t, 3)
		a, b, c := topo.Hosts[0], topo.Hosts[1], topo.Hosts[2]
		rx1, rx2 := b.UDPConn(t, 5001), b.UDPConn(t, 5002)
		for _, tc := range []struct {
			expr string
			// what must show up besides the datagram to 5001
			dgram5002, pingAB bool
		}{
			{"udp and dst port 5001", false, false},
			{"not icmp", true, false},
			{"host " + b.IP.String(), true, true},
		} {
			t.Run(tc.expr, func(t *testing.T) {
				opts := opts
				opts.Filter = mustCompile(t, tc.expr)
				tr := load(t, opts)
				attachAll(t, tr, topo)
				col := collect(t, tr)
				const pingID = 0x4646
				if n := a.Ping(t, b.IP, 1, pingID); n != 1 {
					t.Fatalf("ping b: %d answered", n)
				}
				if n := a.Ping(t, c.IP, 1, pingID); n != 1 {
					t.Fatalf("ping c: %d answered", n)
				}
				udpTo(t, a, rx2.LocalAddr(), []byte("to 5002"), 1, 0)
				udpTo(t, a, rx1.LocalAddr(), []byte("to 5001"), 1, 0)
				is5001 := func(h *event.Hop) bool { return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == 5001 }
				col.wait(t, "datagram to 5001", func(hops []event.Hop, _ []event.Drop) bool {
					return len(filterHops(hops, is5001)) >= 4
				})
				time.Sleep(100 * time.Millisecond) // anything the filter let through shows now
				hops, _ := col.wait(t, "all", func([]event.Hop, []event.Drop) bool { return true })
				checkJourney(t, "datagram to 5001", filterHops(hops, is5001), path(topo, a, b))
				for _, h := range hops {
					if !opts.Filter.Match(&h.Pkt) {
						t.Errorf("hop at %s does not match %q: %+v", hookOf(h), tc.expr, h.Pkt)
					}
				}
				is5002 := func(h *event.Hop) bool { return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == 5002 }
				if n := len(filterHops(hops, is5002)); (n == 4) != tc.dgram5002 || (n != 0 && n != 4) {
					t.Errorf("datagram to 5002: %d hops, want it: %v", n, tc.dgram5002)
				}
				isEcho := func(to netip.Addr) func(*event.Hop) bool {
					return func(h *event.Hop) bool {
						return h.Pkt.Layers.Has(event.LayerICMP) && h.Pkt.ICMPType == 8 && h.Pkt.ICMPID == pingID && h.Pkt.Dst == to
					}
				}
				if req := filterHops(hops, isEcho(b.IP)); tc.pingAB {
					checkJourney(t, "echo request to b", req, path(topo, a, b))
				} else if len(req) > 0 {
					t.Errorf("echo request to b: %d hops, want none", len(req))
				}
				if n := len(filterHops(hops, isEcho(c.IP))); n > 0 {
					t.Errorf("echo request to c: %d hops, want none", n)
				}
			})
		}
	})
}

// udpTestFrame is an Ethernet/IPv4/UDP frame for BPF_PROG_TEST_RUN.
func udpTestFrame(ipID, dport uint16) []byte {
	f := make([]byte, 14+20+8+32)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	f[14], f[14+8], f[14+9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(f[16:], uint16(len(f)-14))
	binary.BigEndian.PutUint16(f[18:], ipID)
	copy(f[26:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(f[34:], 40000)
	binary.BigEndian.PutUint16(f[36:], dport)
	binary.BigEndian.PutUint16(f[38:], uint16(len(f)-34))
	return f
}

// TestFilterDecisionSticks: the filter decides at a packet's first hook and
// later hooks of the same packet follow, even when its headers changed in
// between (as NAT changes them). A rejected packet leaves nothing behind,
// so the filter looks at it again at each hook: rewritten to match, it is
// traced from there. Content keys join the two test runs: the fingerprint
// leaves ports out, so the "rewritten" frame is the same packet.
func TestFilterDecisionSticks(t *testing.T) {
	tr := load(t, Options{ForceLegacy: true, noSkbKey: true, Filter: mustCompile(t, "udp and dst port 5001")})
	// BPF_PROG_TEST_RUN frees its skb with kfree_skb, which would end the
	// packet's entry between the runs: stop the drop tracepoint.
	if tr.drop != nil {
		if err := tr.drop.Close(); err != nil {
			t.Fatal(err)
		}
		tr.drop = nil
	}
	col := collect(t, tr)
	in, out := tr.coll.Programs["hop_ingress_legacy"], tr.coll.Programs["hop_egress_legacy"]
	run := func(p interface {
		Test([]byte) (uint32, []byte, error)
	}, frame []byte) {
		t.Helper()
		if _, _, err := p.Test(frame); err != nil {
			t.Fatal(err)
		}
	}
	// Matches first, rewritten to 5002 later: both hops, one packet.
	run(in, udpTestFrame(0x1111, 5001))
	run(out, udpTestFrame(0x1111, 5002))
	// Does not match first, rewritten to 5001 later: a hop from there.
	run(in, udpTestFrame(0x2222, 5002))
	if n := tableLen(t, tr); n != 1 {
		t.Errorf("%d packets in the table after a rejection, want 1 (0x1111)", n)
	}
	run(out, udpTestFrame(0x2222, 5001))
	// A marker that matches, to know the reader caught up.
	run(in, udpTestFrame(0x3333, 5001))
	hops, _ := col.wait(t, "marker", func(hops []event.Hop, _ []event.Drop) bool {
		return len(filterHops(hops, func(h *event.Hop) bool { return h.Pkt.IPID == 0x3333 })) == 1
	})
	first := filterHops(hops, func(h *event.Hop) bool { return h.Pkt.IPID == 0x1111 })
	if len(first) != 2 || first[0].PacketID != first[1].PacketID || first[1].Pkt.DstPort != 5002 {
		t.Errorf("matching packet rewritten after its first hook: %+v", first)
	}
	if later := filterHops(hops, func(h *event.Hop) bool { return h.Pkt.IPID == 0x2222 }); len(later) != 1 ||
		later[0].Dir != event.Egress || later[0].PacketID == 0 {
		t.Errorf("packet rejected at its first hook, matching at the next: hops %+v, want the second", later)
	}
}

// BenchmarkHookCostFilter is BenchmarkHookCost with no filter, a filter the
// test frame (TCP to port 80) does not match, and one it matches. A
// rejected packet costs the decode and the table lookups: no event, no
// table entry.
func BenchmarkHookCostFilter(b *testing.B) {
	for _, bc := range []struct {
		name, expr string
		interpret  bool
	}{
		{"none", "", false}, {"nomatch", "udp and dst port 5001", false}, {"match", "tcp and dst port 80", false},
		// The interpreter the filter's own code replaced (filtercode.go).
		{"nomatch-interpreted", "udp and dst port 5001", true}, {"match-interpreted", "tcp and dst port 80", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var f *filter.Program
			if bc.expr != "" {
				f = mustCompile(b, bc.expr)
			}
			hookCost(b, Options{RingBufferBytes: 16 << 20, Filter: f, interpretFilter: bc.interpret})
		})
	}
}
