package journey_test

import (
	"runtime"
	"testing"

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
