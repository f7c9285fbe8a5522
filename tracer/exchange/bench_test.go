package exchange_test

import (
	"testing"

	"github.com/hoptrace/hoptrace/tracer/exchange"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// BenchmarkStage: the stage's cost per journey (linking and pairing) in a
// steady state: 64 keep-alive connections, each request answered and
// ACKed, a retransmission now and then. A warm-up on other connections
// first fills the stage's tables to their cap, as on a busy host.
func BenchmarkStage(b *testing.B) {
	s := &sim{t: b}
	t := at(0)
	conversation := func(firstPort uint16, rounds uint32) {
		for r := range rounds {
			for c := range uint16(64) {
				port, seq := firstPort+c, 1+r*100
				s.send(t, jt.ClientToWeb, jt.TCP(jt.ClientIP, port, jt.WebIP, 8080, psh, seq), dataLen)
				if (r+uint32(c))%7 == 3 {
					s.send(t+200*ms, jt.ClientToWeb, jt.TCP(jt.ClientIP, port, jt.WebIP, 8080, psh, seq), dataLen)
				}
				s.send(t+1*ms, jt.WebToClient, jt.TCP(jt.WebIP, 8080, jt.ClientIP, port, psh, seq), dataLen)
				s.send(t+2*ms, jt.ClientToWeb, jt.TCP(jt.ClientIP, port, jt.WebIP, 8080, ack, seq+100), ackLen)
				t += 20 * us
			}
		}
	}
	conversation(43000, 20) // the warm-up
	t += 1000 * ms
	conversation(42000, 20)
	res := s.run(exchange.Config{})
	var warm, js []*journey.Journey
	for _, id := range res.order {
		j := res.journeys[id]
		if p := j.Packet(); p.SrcPort >= 43000 || p.DstPort >= 43000 {
			warm = append(warm, j)
		} else {
			js = append(js, j)
		}
	}
	var n int
	cfg := exchange.Config{MaxSegments: 1024}
	newStage := func() *exchange.Stage {
		st := exchange.NewStage(discard{}, exchange.Options{Config: cfg, Exchanges: func(*exchange.Exchange) error { n++; return nil }})
		for _, j := range warm {
			if err := st.Journey(j); err != nil {
				b.Fatal(err)
			}
		}
		return st
	}
	st := newStage()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(js)
		if k == 0 && i > 0 {
			b.StopTimer()
			st = newStage()
			b.StartTimer()
		}
		if err := st.Journey(js[k]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n == 0 {
		b.Fatal("no exchanges")
	}
}

type discard struct{}

func (discard) Journey(*journey.Journey) error { return nil }
func (discard) Summary(render.Summary) error   { return nil }

// BenchmarkLinkOnly: what trace pays per journey for the retransmission
// links alone, on TCP and UDP journeys.
func BenchmarkLinkOnly(b *testing.B) {
	s := &sim{t: b}
	t := at(0)
	for i := range uint32(2000) {
		port := uint16(42000 + i%64)
		s.send(t, jt.ClientToWeb, jt.TCP(jt.ClientIP, port, jt.WebIP, 8080, psh, 1+i*100), dataLen)
		s.send(t+10*us, jt.ClientToWeb, jt.UDP(jt.ClientIP, port, jt.WebIP, 53), 80)
		t += 20 * us
	}
	res := s.run(exchange.Config{})
	js := make([]*journey.Journey, 0, len(res.order))
	for _, id := range res.order {
		js = append(js, res.journeys[id])
	}
	st := exchange.NewStage(discard{}, exchange.Options{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(js)
		if k == 0 && i > 0 {
			b.StopTimer()
			st = exchange.NewStage(discard{}, exchange.Options{})
			b.StartTimer()
		}
		if err := st.Journey(js[k]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLinkBulk: one bulk TCP flow in a steady state, as `trace` sees
// iperf3: every data segment new, so the linker remembers each one and
// forgets the oldest at its cap (the default 65536) once the warm-up filled
// it.
func BenchmarkLinkBulk(b *testing.B) {
	s := &sim{t: b}
	s.send(at(0), jt.ClientToWeb, jt.TCP(jt.ClientIP, 40000, jt.WebIP, 8080, psh, 1), fullLen)
	res := s.run(exchange.Config{})
	j := res.journeys[res.order[0]]
	st := exchange.NewStage(discard{}, exchange.Options{})
	seg := func(i int) {
		for k := range j.Hops {
			h := &j.Hops[k]
			h.Pkt.Seq = 1 + uint32(i)*1448
			h.TimeNS = at(uint64(i)*us + uint64(k)*hopStep)
		}
		j.Start, j.End = j.Hops[0].TimeNS, j.Hops[len(j.Hops)-1].TimeNS
		if err := st.Journey(j); err != nil {
			b.Fatal(err)
		}
	}
	const warm = 2 * exchange.DefaultMaxSegments
	for i := range warm {
		seg(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		seg(warm + i)
	}
}
