package tracefile_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

func benchHops(snaplen int) []*event.Hop {
	var hops []*event.Hop
	for _, ev := range tracefiletest.Events(tracefiletest.Options{Packets: 25000, Snaplen: snaplen}) {
		if ev.Hop != nil {
			hops = append(hops, ev.Hop)
		}
	}
	return hops
}

// BenchmarkWrite reports hops/s and bytes/hop for the synthetic scenario
// (TCP between two containers, four hooks per packet), without packet bytes.
func BenchmarkWrite(b *testing.B) {
	for _, snaplen := range []int{0, 128} {
		b.Run(map[int]string{0: "snaplen=0", 128: "snaplen=128"}[snaplen], func(b *testing.B) {
			hops := benchHops(snaplen)
			hdr := testHeader(uint32(snaplen))
			var buf bytes.Buffer
			b.ResetTimer()
			n := 0
			for b.Loop() {
				buf.Reset()
				w, err := tracefile.Create(&buf, hdr)
				if err != nil {
					b.Fatal(err)
				}
				for _, h := range hops {
					if err := w.WriteHop(h); err != nil {
						b.Fatal(err)
					}
				}
				w.Close()
				n += len(hops)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "hops/s")
			b.ReportMetric(float64(buf.Len())/float64(len(hops)), "bytes/hop")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkRead reports hops/s for reading back the same file.
func BenchmarkRead(b *testing.B) {
	for _, snaplen := range []int{0, 128} {
		b.Run(map[int]string{0: "snaplen=0", 128: "snaplen=128"}[snaplen], func(b *testing.B) {
			hops := benchHops(snaplen)
			var buf bytes.Buffer
			w, _ := tracefile.Create(&buf, testHeader(uint32(snaplen)))
			for _, h := range hops {
				w.WriteHop(h)
			}
			w.Close()
			data := buf.Bytes()
			b.ResetTimer()
			n := 0
			for b.Loop() {
				r, err := tracefile.Open(bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, err := r.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "hops/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
