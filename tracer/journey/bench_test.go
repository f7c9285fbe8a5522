package journey_test

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
)

// benchStream is packets of a container-to-container flow, 4 hops each,
// overlapping in time as under load, 1us apart.
func benchStream(n int, skb bool) []event.Hop {
	var out []event.Hop
	for i := 0; i < n; i++ {
		p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, event.TCPAck, uint32(i)*1448)
		key := uint64(0)
		if skb {
			key = 0xffff0000 + uint64(i%256) // reused skbs
		}
		out = append(out, jt.Walk(jt.ClientToWeb, uint64(i)*us, 3*us, key, uint64(i)+1, p)...)
	}
	// Interleave by time as the ring buffer would deliver them.
	sortByTime(out)
	return out
}

func sortByTime(hs []event.Hop) {
	for i := 1; i < len(hs); i++ {
		for k := i; k > 0 && hs[k].TimeNS < hs[k-1].TimeNS; k-- {
			hs[k], hs[k-1] = hs[k-1], hs[k]
		}
	}
}

// One op is one hop; journeys/s counts finished journeys.
func benchmarkAssembler(b *testing.B, skb bool) {
	const packets = 4096
	stream := benchStream(packets, skb)
	span := stream[len(stream)-1].TimeNS + 1
	a := journey.New(journey.Config{}, jt.Namer())
	b.ReportAllocs()
	b.ResetTimer()
	m0 := mallocs()
	done := 0
	for i := 0; i < b.N; i++ {
		k := i % len(stream)
		h := stream[k]
		h.TimeNS += uint64(i/len(stream)) * span
		h.Fingerprint += uint64(i/len(stream)) * packets
		done += len(a.AddHop(h))
	}
	done += len(a.Flush())
	b.ReportMetric(float64(mallocs()-m0)/float64(b.N), "allocs/hop")
	b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "journeys/s")
	b.ReportMetric(float64(b.N)/float64(done), "hops/journey")
}

// mallocs is the process's heap allocation count: allocs/op rounds down to
// whole numbers, and a hop costs less than one.
func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

func BenchmarkAssemblerSkbKey(b *testing.B)     { benchmarkAssembler(b, true) }
func BenchmarkAssemblerContentKey(b *testing.B) { benchmarkAssembler(b, false) }

// ARP floods: one journey, 7 hops, 3 branches.
func BenchmarkAssemblerFanout(b *testing.B) {
	a := journey.New(journey.Config{}, jt.Namer())
	b.ReportAllocs()
	m0 := mallocs()
	done := 0
	hops := 0
	for i := 0; i < b.N; i++ {
		t := uint64(i) * 20 * us
		for _, h := range arpFlood(t, [4]uint64{0x100, 0x200, 0x300, 0x100}, uint64(i)+1) {
			done += len(a.AddHop(h))
			hops++
		}
	}
	done += len(a.Flush())
	b.ReportMetric(float64(mallocs()-m0)/float64(hops), "allocs/hop")
	b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "journeys/s")
}

// Realistic streams: the cases above measure the best one (unique
// fingerprints, one flow). These replay many concurrent flows, equal
// content across flows (datagrams of one size with a zeroed IP ID or IPv6
// without flow labels share a fingerprint), NAT and flood clones, keyed as
// a kernel with the skb key gives them (skb: 6.3 and later) or as one
// without (content: before 6.3, packet IDs keyed by content).

const (
	benchPackets = 4096
	benchFlows   = 64
	benchFPs     = 4 // distinct fingerprints when they collide
)

// benchCase builds one cycle of a stream: packet i of benchPackets, sent at
// t, as hops keyed by skb (and with their own packet ID) or not.
type benchCase struct {
	name    string
	collide bool // fingerprints shared across flows
	packet  func(i int, t uint64, fp uint64, skb bool) []event.Hop
}

// keyHops gives a packet's hops the skb key and packet ID of its copy c (0
// the original, 1.. flood clones), or the content-keyed ID without skb keys.
func keyHops(hs []event.Hop, i, c int, skb bool) []event.Hop {
	for k := range hs {
		if skb {
			hs[k].SkbKey = 0xffff888000000000 + uint64(i%256)<<8 + uint64(c)
			hs[k].PacketID = uint64(i)<<2 + uint64(c) + 1
		} else {
			hs[k].SkbKey = 0
			hs[k].PacketID = hs[k].Fingerprint
		}
	}
	return hs
}

// sender is flow f's container: even flows from client, odd from db.
func sender(f int) (eth0, veth topology.Key, ip netip.Addr) {
	if f%2 == 0 {
		return jt.ClientEth0, jt.VethClient, jt.ClientIP
	}
	return jt.DBEth0, jt.VethDB, jt.DBIP
}

// toWeb is the path from a container on docker0 to web.
func toWeb(eth0, veth topology.Key) []jt.Step {
	return []jt.Step{{Key: eth0, Dir: event.Egress}, {Key: veth, Dir: event.Ingress}, {Key: jt.VethWeb, Dir: event.Egress}, {Key: jt.WebEth0, Dir: event.Ingress}}
}

// toOutside is the path from a container on docker0 out through eth0.
func toOutside(eth0, veth topology.Key) []jt.Step {
	return []jt.Step{{Key: eth0, Dir: event.Egress}, {Key: veth, Dir: event.Ingress}, {Key: jt.Docker0, Dir: event.Ingress}, {Key: jt.HostEth0, Dir: event.Egress}}
}

var benchCases = []benchCase{
	{"flows", false, func(i int, t, fp uint64, skb bool) []event.Hop {
		f := i % benchFlows
		eth0, veth, ip := sender(f)
		p := jt.TCP(ip, uint16(40000+f), jt.WebIP, 8080, event.TCPAck, uint32(i)*1448)
		path := toWeb(eth0, veth)
		return keyHops(jt.Walk(path, t, 3*us, 0, fp, p), i, 0, skb)
	}},
	{"collide", true, func(i int, t, fp uint64, skb bool) []event.Hop {
		f := i % benchFlows
		eth0, veth, ip := sender(f)
		p := jt.UDP(ip, uint16(40000+f), jt.WebIP, 9999)
		path := toWeb(eth0, veth)
		return keyHops(jt.Walk(path, t, 3*us, 0, fp, p), i, 0, skb)
	}},
	// MASQUERADE out of even packets, DNAT of a published port into odd ones.
	{"nat", true, func(i int, t, fp uint64, skb bool) []event.Hop {
		f := i % benchFlows
		if i%2 == 0 {
			eth0, veth, ip := sender(f / 2)
			path := toOutside(eth0, veth)
			hs := jt.Walk(path, t, 3*us, 0, fp, jt.UDP(ip, uint16(40000+f), jt.Outside, 53))
			hs[3].Pkt = jt.UDP(jt.HostIP, uint16(40000+f), jt.Outside, 53)
			return keyHops(hs, i, 0, skb)
		}
		hs := jt.Walk(jt.OutsideToWeb, t, 3*us, 0, fp, jt.UDP(jt.Outside, uint16(50000+f), jt.WebIP, 80))
		hs[0].Pkt = jt.UDP(jt.Outside, uint16(50000+f), jt.HostIP, 8080)
		return keyHops(hs, i, 0, skb)
	}},
	// Broadcasts flooded by docker0: two clones with their own skbs.
	{"flood", true, func(i int, t, fp uint64, skb bool) []event.Hop {
		f := i % benchFlows
		eth0, veth, ip := sender(f)
		p := jt.UDP(ip, uint16(5000+f), netip.MustParseAddr("172.17.255.255"), 5353)
		other, otherEth0 := jt.VethDB, jt.DBEth0
		if f%2 == 1 {
			other, otherEth0 = jt.VethClient, jt.ClientEth0
		}
		orig := keyHops([]event.Hop{
			jt.Hop(t, eth0, event.Egress, 0, fp, p),
			jt.Hop(t+2*us, veth, event.Ingress, 0, fp, p),
			jt.Hop(t+6*us, jt.Docker0, event.Ingress, 0, fp, p),
		}, i, 0, skb)
		c1 := keyHops([]event.Hop{jt.Hop(t+4*us, jt.VethWeb, event.Egress, 0, fp, p), jt.Hop(t+8*us, jt.WebEth0, event.Ingress, 0, fp, p)}, i, 1, skb)
		c2 := keyHops([]event.Hop{jt.Hop(t+5*us, other, event.Egress, 0, fp, p), jt.Hop(t+9*us, otherEth0, event.Ingress, 0, fp, p)}, i, 2, skb)
		return append(append(orig, c1...), c2...)
	}},
}

// BenchmarkAssemblerRealistic replays each case at 1 packet/us (journeys
// stay open for their 25ms grace, so tens of thousands are in flight). One
// op is one hop. mixed/journey is the share of journeys holding hops of more
// than one packet (each packet's TTL is set to its own tag, which the
// assembler ignores): it should be 0.
func BenchmarkAssemblerRealistic(b *testing.B) {
	for _, c := range benchCases {
		for _, skb := range []bool{true, false} {
			keying := "content"
			if skb {
				keying = "skb"
			}
			b.Run(c.name+"/"+keying, func(b *testing.B) {
				var stream []event.Hop
				for i := 0; i < benchPackets; i++ {
					fp := uint64(i) + 1
					if c.collide {
						fp = 0xc0 + uint64(i/2%benchFPs) // across senders too
					}
					hs := c.packet(i, t0+uint64(i)*us, fp, skb)
					for k := range hs {
						hs[k].Pkt.TTL = uint8(i%250) + 1
					}
					stream = append(stream, hs...)
				}
				sortByTime(stream)
				replay(b, stream, !c.collide)
			})
		}
	}
}

// replay feeds b.N hops of stream, shifted in time, packet ID and (unless
// the fingerprints collide on purpose) fingerprint on every pass.
func replay(b *testing.B, stream []event.Hop, shiftFP bool) {
	span := stream[len(stream)-1].TimeNS - stream[0].TimeNS + us
	a := journey.New(journey.Config{}, jt.Namer())
	b.ReportAllocs()
	b.ResetTimer()
	m0 := mallocs()
	done, mixed := 0, 0
	count := func(js []*journey.Journey) {
		for _, j := range js {
			for k := range j.Hops {
				if j.Hops[k].Pkt.TTL != j.Hops[0].Pkt.TTL {
					mixed++
					break
				}
			}
		}
		done += len(js)
	}
	for i := 0; i < b.N; i++ {
		round := uint64(i / len(stream))
		h := stream[i%len(stream)]
		h.TimeNS += round * span
		if h.PacketID != 0 && h.SkbKey != 0 {
			h.PacketID += round << 32
		}
		if shiftFP {
			h.Fingerprint += round * benchPackets
		}
		count(a.AddHop(h))
	}
	b.StopTimer()
	count(a.Flush())
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/hop")
	b.ReportMetric(float64(mallocs()-m0)/float64(b.N), "allocs/hop")
	b.ReportMetric(float64(b.N)/float64(done), "hops/journey")
	b.ReportMetric(float64(mixed)/float64(done), "mixed/journey")
}
