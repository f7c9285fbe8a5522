package journey_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
)

// Packet identity under equal content: two flows whose packets have the same
// fingerprint (same length and IP ID: IPv6 without flow labels, stacks that
// zero the IP ID, a 16-bit ID collision between busy flows) must never share
// a journey, whatever the kernel gave to tell packets apart.

// keying is what the kernel gives the assembler to tell packets apart.
type keying struct {
	name string
	skb  bool // hops carry the skb address (kernel >= 6.3)
	ids  bool // hops carry the kernel's packet ID
}

var keyings = []keying{
	{"skb keys and packet IDs", true, true}, // kernel >= 6.3
	{"skb keys only", true, false},
	{"content-keyed packet IDs", false, true}, // kernel < 6.3: the ID is looked up by fingerprint
	{"no keys", false, false},
}

// skbOf is the skb of packet n of flow f, from a small pool as the kernel
// reuses freed skbs.
func skbOf(f, n int) uint64 { return 0xffff8880_00000000 + uint64(n%32)<<12 + uint64(f)<<8 }

// ids returns the skb key and packet ID the kernel would give packet n of
// flow f. Without skb keys the kernel finds a packet by its content, so the
// n-th packets of two flows with equal content get one ID.
func (k keying) keys(f, n int) (skb, id uint64) {
	if k.skb {
		skb = skbOf(f, n)
		if k.ids {
			id = uint64(n)<<4 | uint64(f) + 1
		}
	} else if k.ids {
		id = uint64(n) + 1
	}
	return skb, id
}

// walk is packet n of flow f along path, keyed as k.
func (k keying) walk(path []jt.Step, t, step uint64, f, n int, fp uint64, p event.Packet) []event.Hop {
	skb, id := k.keys(f, n)
	hs := jt.Walk(path, t, step, skb, fp, p)
	for i := range hs {
		hs[i].PacketID = id
	}
	return hs
}

// drop is the drop of packet n of flow f at t. Before 6.3 the drop still
// carries the skb address (the tracepoint has it) though no hop does, and
// the content-keyed ID.
func (k keying) drop(t uint64, f, n int, fp uint64, p event.Packet) *event.Drop {
	skb, id := k.keys(f, n)
	if !k.skb && k.ids {
		skb = skbOf(f, n)
	}
	return &event.Drop{TimeNS: t, SkbKey: skb, PacketID: id, Fingerprint: fp, Reason: 6, ReasonName: "NETFILTER_DROP",
		Ifindex: jt.VethWeb.Ifindex, NetnsIno: jt.VethWeb.NetnsIno, Pkt: p}
}

// owners names the flow of each hop by its source address and port (NAT
// included); pure fails the test when a journey holds hops of two flows or
// has not the hops it should.
type owners map[netip.AddrPort]string

func (o owners) of(p *event.Packet) string {
	if s, ok := o[netip.AddrPortFrom(p.Src, p.SrcPort)]; ok {
		return s
	}
	return "?" + p.Src.String()
}

func (o owners) pure(t *testing.T, js []*journey.Journey, journeys, hopsEach int) map[string][]*journey.Journey {
	t.Helper()
	by := map[string][]*journey.Journey{}
	bad := 0
	for _, j := range js {
		who := ""
		mixed := false
		for i := range j.Hops {
			w := o.of(&j.Hops[i].Pkt)
			if who != "" && w != who {
				mixed = true
			}
			if who == "" {
				who = w
			}
		}
		if mixed || len(j.Hops) != hopsEach {
			if bad++; bad <= 3 {
				t.Errorf("journey %d: %d hops, want %d, of one flow: %s", j.ID, len(j.Hops), hopsEach, flows(o, j))
			}
			continue
		}
		by[who] = append(by[who], j)
	}
	if bad > 3 {
		t.Errorf("... %d journeys wrong in all", bad)
	}
	if len(js) != journeys {
		t.Errorf("got %d journeys, want %d", len(js), journeys)
	}
	return by
}

func flows(o owners, j *journey.Journey) string {
	s := ""
	for i := range j.Hops {
		h := &j.Hops[i]
		s += fmt.Sprintf(" %s/%s[%s]", h.Label(), h.Dir, o.of(&h.Pkt))
	}
	return s
}

// The reported case: client and db send equal datagrams to web, 2ms apart
// each; with a 25ms grace a dozen journeys of each are open at any time.
func TestEqualContentFromTwoSendersStaysApart(t *testing.T) {
	a := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	b := jt.UDP(jt.DBIP, 40000, jt.WebIP, 9999)
	who := owners{netip.AddrPortFrom(jt.ClientIP, 40000): "client", netip.AddrPortFrom(jt.DBIP, 40000): "db"}
	for _, k := range keyings {
		for _, off := range []struct {
			name string
			d    uint64
		}{{"1ms apart", ms}, {"interleaved", 3 * us}, {"db first", 0}} {
			t.Run(k.name+"/"+off.name, func(t *testing.T) {
				const n = 30
				var hs []event.Hop
				for i := 0; i < n; i++ {
					ta := t0 + uint64(i)*2*ms
					hs = append(hs, k.walk(jt.DBToWeb, ta+off.d, 10*us, 1, i, 0xe9, b)...)
					hs = append(hs, k.walk(jt.ClientToWeb, ta, 10*us, 0, i, 0xe9, a)...)
				}
				sortByTime(hs)
				js, _ := run(t, journey.Config{}, hops(hs))
				by := who.pure(t, js, 2*n, 4)
				if len(by["client"]) != n || len(by["db"]) != n {
					t.Errorf("client %d db %d journeys, want %d each", len(by["client"]), len(by["db"]), n)
				}
				for _, j := range js {
					if j.Verdict != journey.VerdictContainer || j.Transit != 30*time.Microsecond {
						t.Errorf("journey %d: verdict %v transit %v", j.ID, j.Verdict, j.Transit)
						break
					}
				}
			})
		}
	}
}

// A drop joins the journey of its own flow, not the oldest open journey
// with its fingerprint.
func TestDropJoinsItsOwnFlow(t *testing.T) {
	a := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	b := jt.UDP(jt.DBIP, 40000, jt.WebIP, 9999)
	who := owners{netip.AddrPortFrom(jt.ClientIP, 40000): "client", netip.AddrPortFrom(jt.DBIP, 40000): "db"}
	for _, k := range keyings {
		t.Run(k.name, func(t *testing.T) {
			in := hops(k.walk(jt.ClientToWeb, t0, 10*us, 0, 0, 0xe9, a))
			in = append(in, hops(k.walk(jt.DBToWeb[:2], t0+ms, 10*us, 1, 0, 0xe9, b))...)
			in = append(in, feed{drop: k.drop(t0+ms+15*us, 1, 0, 0xe9, b)})
			js, st := run(t, journey.Config{}, in)
			if len(js) != 2 {
				t.Fatalf("got %d journeys, want 2", len(js))
			}
			for _, j := range js {
				w := who.of(&j.Hops[0].Pkt)
				if dropped := j.Drop != nil; dropped != (w == "db") {
					t.Errorf("journey of %s: drop %+v", w, j.Drop)
				}
			}
			if st.UnmatchedDrops != 0 {
				t.Errorf("unmatched drops %d", st.UnmatchedDrops)
			}
		})
	}
}

// On kernels with the skb key a drop carries the exact packet ID: one that
// no open journey holds is not joined by content to an equal packet.
func TestDropWithUnknownPacketIDIsUnmatched(t *testing.T) {
	p := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	in := hops(withIDs(jt.Walk(jt.ClientToWeb, t0, 10*us, 0x1000, 0xe9, p), 7, 7, 7, 7))
	in = append(in, feed{drop: &event.Drop{TimeNS: t0 + 40*us, SkbKey: 0x2000, PacketID: 8, Fingerprint: 0xe9, ReasonName: "NETFILTER_DROP", Pkt: p}})
	js, st := run(t, journey.Config{}, in)
	j := one(t, js)
	if j.Drop != nil || st.UnmatchedDrops != 1 {
		t.Errorf("drop %+v unmatched %d: want the drop unmatched", j.Drop, st.UnmatchedDrops)
	}
}

// On kernels with the skb key, a packet with a new ID where a packet starts
// (leaving a container) is a new packet, even when it equals one in flight
// whose first hop is late (another CPU).
func TestNewPacketIDAtSenderStartsJourney(t *testing.T) {
	p := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	first := withIDs(jt.Walk(jt.ClientToWeb, t0, 10*us, 0x1000, 0xe9, p), 1, 1, 1, 1)
	second := withIDs(jt.Walk(jt.ClientToWeb, t0+12*us, 10*us, 0x2000, 0xe9, p), 2, 2, 2, 2)
	in := hops([]event.Hop{first[1], second[0], first[0], first[2], second[1], first[3], second[2], second[3]})
	js, _ := run(t, journey.Config{}, in)
	if len(js) != 2 {
		t.Fatalf("got %d journeys, want 2", len(js))
	}
	for _, j := range js {
		for i := range j.Hops {
			if j.Hops[i].PacketID != j.Hops[0].PacketID || len(j.Hops) != 4 {
				t.Fatalf("journey %d mixes packets: %s", j.ID, path(j))
			}
		}
	}
}

// MASQUERADE: two containers send equal datagrams out; each journey keeps
// its own hops, the rewritten one included (the source port survives NAT).
func TestMasqueradeKeepsSendersApart(t *testing.T) {
	a, a2 := jt.UDP(jt.ClientIP, 40000, jt.Outside, 53), jt.UDP(jt.HostIP, 40000, jt.Outside, 53)
	b, b2 := jt.UDP(jt.DBIP, 40001, jt.Outside, 53), jt.UDP(jt.HostIP, 40001, jt.Outside, 53)
	who := owners{
		netip.AddrPortFrom(jt.ClientIP, 40000): "client", netip.AddrPortFrom(jt.HostIP, 40000): "client",
		netip.AddrPortFrom(jt.DBIP, 40001): "db", netip.AddrPortFrom(jt.HostIP, 40001): "db",
	}
	for _, k := range keyings {
		for _, off := range []uint64{3 * us, 0, ms} {
			t.Run(fmt.Sprintf("%s/%v", k.name, time.Duration(off)), func(t *testing.T) {
				const n = 10
				var hs []event.Hop
				for i := 0; i < n; i++ {
					ta := t0 + uint64(i)*2*ms
					ha := k.walk(jt.ClientToOutside, ta, 8*us, 0, i, 0x5a, a)
					ha[3].Pkt = a2
					hb := k.walk(jt.DBToOutside, ta+off, 8*us, 1, i, 0x5a, b)
					hb[3].Pkt = b2
					hs = append(hs, hb...)
					hs = append(hs, ha...)
				}
				sortByTime(hs)
				js, _ := run(t, journey.Config{}, hops(hs))
				by := who.pure(t, js, 2*n, 4)
				for _, j := range append(by["client"], by["db"]...) {
					if j.Verdict != journey.VerdictLeftHost || len(j.Rewrites) != 1 || j.Rewrites[0].Kind != journey.SNAT {
						t.Errorf("journey %d: verdict %v rewrites %+v", j.ID, j.Verdict, j.Rewrites)
						break
					}
				}
			})
		}
	}
}

// A published port: two outside clients send equal segments to the host's
// port 8080, DNAT sends both to web:80; each journey keeps its own hops, also
// when the second is routed faster than the first.
func TestPublishedPortKeepsSendersApart(t *testing.T) {
	outside2 := netip.MustParseAddr("10.9.0.2")
	a, a2 := jt.TCP(jt.Outside, 50000, jt.HostIP, 8080, event.TCPSyn, 1), jt.TCP(jt.Outside, 50000, jt.WebIP, 80, event.TCPSyn, 1)
	b, b2 := jt.TCP(outside2, 50000, jt.HostIP, 8080, event.TCPSyn, 1), jt.TCP(outside2, 50000, jt.WebIP, 80, event.TCPSyn, 1)
	who := owners{netip.AddrPortFrom(jt.Outside, 50000): "outside", netip.AddrPortFrom(outside2, 50000): "outside2"}
	for _, k := range keyings {
		for _, off := range []uint64{1 * us, 0, ms} {
			t.Run(fmt.Sprintf("%s/%v", k.name, time.Duration(off)), func(t *testing.T) {
				const n = 10
				var hs []event.Hop
				for i := 0; i < n; i++ {
					ta := t0 + uint64(i)*2*ms
					ha := k.walk(jt.OutsideToWeb, ta, 7*us, 0, i, 0xd7, a2)
					ha[0].Pkt = a
					hb := k.walk(jt.OutsideToWeb, ta+off, 3*us, 1, i, 0xd7, b2)
					hb[0].Pkt = b
					hs = append(hs, hb...)
					hs = append(hs, ha...)
				}
				sortByTime(hs)
				js, _ := run(t, journey.Config{}, hops(hs))
				by := who.pure(t, js, 2*n, 4)
				for _, j := range append(by["outside"], by["outside2"]...) {
					if j.Verdict != journey.VerdictContainer || len(j.Rewrites) != 1 || j.Rewrites[0].Kind != journey.DNAT {
						t.Errorf("journey %d: verdict %v rewrites %+v", j.ID, j.Verdict, j.Rewrites)
						break
					}
				}
			})
		}
	}
}

// flood is a broadcast sent from eth0 through veth, flooded by docker0 to
// two other ports (clones, with new skbs and IDs, after t+cl) and passed up
// to the host. others holds the (veth, eth0) of each of the other ports.
func flood(k keying, f, n int, t, cl uint64, fp uint64, p event.Packet, eth0, veth topology.Key, others [2][2]topology.Key) []event.Hop {
	skb, id := k.keys(f, n)
	clone := func(c int) (uint64, uint64) {
		if !k.skb {
			return 0, id
		}
		s := skb + uint64(c+1)*0x10
		if k.ids {
			return s, id + uint64(c+1)<<32
		}
		return s, 0
	}
	s1, i1 := clone(0)
	s2, i2 := clone(1)
	hs := []event.Hop{
		jt.Hop(t, eth0, event.Egress, skb, fp, p),
		jt.Hop(t+2*us, veth, event.Ingress, skb, fp, p),
		jt.Hop(t+cl, others[0][0], event.Egress, s1, fp, p),
		jt.Hop(t+cl+1*us, others[1][0], event.Egress, s2, fp, p),
		jt.Hop(t+cl+2*us, jt.Docker0, event.Ingress, skb, fp, p),
		jt.Hop(t+cl+4*us, others[0][1], event.Ingress, s1, fp, p),
		jt.Hop(t+cl+5*us, others[1][1], event.Ingress, s2, fp, p),
	}
	ids := []uint64{id, id, i1, i2, id, i1, i2}
	for i := range hs {
		hs[i].PacketID = ids[i]
	}
	return hs
}

// Flood clones join by content, and only the clones of their own packet:
// client and db broadcast equal datagrams at the same time, and db's bridge
// floods faster than client's.
func TestFloodClonesJoinTheirOwnPacket(t *testing.T) {
	bcast := netip.MustParseAddr("172.17.255.255")
	a := jt.UDP(jt.ClientIP, 5353, bcast, 5353)
	b := jt.UDP(jt.DBIP, 5353, bcast, 5353)
	who := owners{netip.AddrPortFrom(jt.ClientIP, 5353): "client", netip.AddrPortFrom(jt.DBIP, 5353): "db"}
	for _, k := range keyings {
		t.Run(k.name, func(t *testing.T) {
			var hs []event.Hop
			for i := 0; i < 5; i++ {
				ta := t0 + uint64(i)*2*ms
				hs = append(hs, flood(k, 0, i, ta, 4*us, 0xbc, a, jt.ClientEth0, jt.VethClient,
					[2][2]topology.Key{{jt.VethWeb, jt.WebEth0}, {jt.VethDB, jt.DBEth0}})...)
				hs = append(hs, flood(k, 1, i, ta+1*us, 2*us, 0xbc, b, jt.DBEth0, jt.VethDB,
					[2][2]topology.Key{{jt.VethClient, jt.ClientEth0}, {jt.VethWeb, jt.WebEth0}})...)
			}
			sortByTime(hs)
			js, _ := run(t, journey.Config{}, hops(hs))
			by := who.pure(t, js, 10, 7)
			for _, j := range append(by["client"], by["db"]...) {
				if j.Fanout != 3 || j.Verdict != journey.VerdictContainer {
					t.Errorf("journey %d: fanout %d verdict %v: %s", j.ID, j.Fanout, j.Verdict, path(j))
					break
				}
			}
		})
	}
}
