package pipeline

import (
	"context"
	"io"
	"runtime"
	"testing"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/exchange"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

// loopSource feeds the same events n times, shifted in time, as a capture
// would: a snapshot first, then hops and drops with a tick now and then.
type loopSource struct {
	names  journey.Names
	events []tracefiletest.Event
	n      int
}

func (l *loopSource) Names() journey.Names { return l.names }

func (l *loopSource) Run(ctx context.Context, in Input) error {
	in.Topology(tracefiletest.Snapshot())
	var shift uint64
	var seqShift uint32
	last := l.events[len(l.events)-1]
	span := uint64(1)
	if last.Hop != nil {
		span = last.Hop.TimeNS - tracefiletest.StartMono + 1_000_000
	}
	// One hop and one drop reused, as the capture reuses its record.
	var h event.Hop
	var d event.Drop
	for i := 0; i < l.n; i++ {
		for _, ev := range l.events {
			if ev.Hop != nil {
				h = *ev.Hop
				h.TimeNS += shift
				h.SkbKey += shift // another packet each round
				h.PacketID += shift
				// and other TCP data: the same sequence numbers each
				// round would be retransmissions.
				h.Pkt.Seq += seqShift
				h.Pkt.Ack += seqShift
				in.Hop(&h)
			} else {
				d = *ev.Drop
				d.TimeNS += shift
				d.Pkt.Seq += seqShift
				d.Pkt.Ack += seqShift
				in.Drop(&d)
			}
		}
		shift += span
		seqShift += 1 << 20
		in.Tick(tracefiletest.StartMono + shift)
	}
	return nil
}

// benchHops runs b.N rounds of a 200-packet exchange (800 hops, drops
// every 7th packet) through the pipeline to the sinks and reports ns and
// allocations per hop.
func benchHops(b *testing.B, cfg Config, sinks ...Sink) {
	events := tracefiletest.Events(tracefiletest.Options{Packets: 200, DropEvery: 7})
	hops := 0
	for _, ev := range events {
		if ev.Hop != nil {
			hops++
		}
	}
	src := &loopSource{names: finalNames{topology.NewIndex(tracefiletest.Snapshot())}, events: events, n: b.N}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	if _, err := Run(context.Background(), src, cfg, sinks...); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	n := float64(b.N * hops)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/hop")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/n, "allocs/hop")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/n, "B/hop")
}

// BenchmarkRecord is `hoptrace record` without --print: events written,
// no journeys assembled.
func BenchmarkRecord(b *testing.B) {
	w, err := tracefile.Create(io.Discard, tracefile.Header{HoptraceVersion: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	benchHops(b, Config{NoJourneys: true}, NewRecorder(w))
}

// BenchmarkRecordPrint is `record --print -o json`: written and assembled
// and printed.
func BenchmarkRecordPrintJSON(b *testing.B) {
	w, err := tracefile.Create(io.Discard, tracefile.Header{HoptraceVersion: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	benchHops(b, Config{Journey: journey.Config{HostNetnsIno: tracefiletest.Snapshot().HostNetnsIno}}, NewRecorder(w), render.NewJSON(io.Discard, render.Options{}))
}

// BenchmarkTraceJSON is `trace -o json`: the printer behind the exchange
// stage that links retransmissions, as trace has it.
func BenchmarkTraceJSON(b *testing.B) {
	benchHops(b, Config{Journey: journey.Config{HostNetnsIno: tracefiletest.Snapshot().HostNetnsIno}}, exchange.NewStage(render.NewJSON(io.Discard, render.Options{}), exchange.Options{}))
}

// BenchmarkTraceText is `trace` printing text lines.
func BenchmarkTraceText(b *testing.B) {
	benchHops(b, Config{Journey: journey.Config{HostNetnsIno: tracefiletest.Snapshot().HostNetnsIno}}, exchange.NewStage(render.NewText(io.Discard, render.Options{}), exchange.Options{}))
}
