package latency_test

import (
	"bytes"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/latency"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestHistogramQuantiles(t *testing.T) {
	var h latency.Histogram
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]time.Duration, 100000)
	for i := range vals {
		// Spread over five decades, as latencies are.
		vals[i] = time.Duration(float64(time.Microsecond) * math.Pow(10, r.Float64()*5))
		h.Add(vals[i])
	}
	sort.Slice(vals, func(a, b int) bool { return vals[a] < vals[b] })
	for _, q := range []float64{0.5, 0.9, 0.99} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		if diff := float64(got-exact) / float64(exact); diff > 0.035 || diff < -0.035 {
			t.Errorf("p%v = %v, exact %v (%.1f%% off)", q*100, got, exact, diff*100)
		}
	}
	s := h.Summary()
	if s.Count != 100000 || s.Min != vals[0] || s.Max != vals[len(vals)-1] {
		t.Errorf("summary %+v", s)
	}
}

func TestHistogramSmallExact(t *testing.T) {
	var h latency.Histogram
	for _, v := range []time.Duration{5, 7, 9, 11, 30} {
		h.Add(v)
	}
	if h.Quantile(0.5) != 9 || h.Quantile(1) != 30 || h.Quantile(0) != 5 {
		t.Errorf("p50 %v p100 %v p0 %v", h.Quantile(0.5), h.Quantile(1), h.Quantile(0))
	}
	var m latency.Histogram
	m.Merge(&h)
	m.Add(time.Hour) // past the cap: counted, max exact
	if m.Count() != 6 || m.Summary().Max != time.Hour {
		t.Errorf("merge %+v", m.Summary())
	}
}

// journeys: 100 client->web packets with growing bridge time, plus every shape.
func journeys() []*journey.Journey {
	var in []jt.Event
	for i := uint64(0); i < 100; i++ {
		p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, event.TCPAck, uint32(i))
		hs := jt.Walk(jt.ClientToWeb, jt.Base+i*uint64(time.Millisecond), 5000, 0x100+i, 1000+i, p)
		hs[2].TimeNS += i * 100 // the bridge hop takes 0..9.9us more
		hs[3].TimeNS += i * 100
		in = append(in, jt.Hops(hs)...)
	}
	for _, e := range jt.Shapes() {
		if e.Hop != nil {
			h := *e.Hop
			h.TimeNS += uint64(time.Second)
			e.Hop = &h
		} else {
			d := *e.Drop
			d.TimeNS += uint64(time.Second)
			e.Drop = &d
		}
		in = append(in, e)
	}
	js, _ := jt.Run(journey.Config{HostNetnsIno: jt.HostNS}, in)
	return js
}

func TestAggregate(t *testing.T) {
	a := latency.New(latency.Config{})
	for _, j := range journeys() {
		a.Add(j)
	}
	r := a.Report()
	// 100 + the shapes' syn, GSO, unnamed-veth and ARP-to-web branches.
	if r.Journeys != 112 || r.Skipped != 2 {
		t.Errorf("journeys %d skipped %d", r.Journeys, r.Skipped)
	}
	top := r.Paths[0]
	if top.Path != "client:eth0 -> web:eth0" || top.Total.Count != 104 {
		t.Fatalf("top path %s count %d", top.Path, top.Total.Count)
	}
	hop := map[string]latency.HopReport{}
	for _, h := range top.Hops {
		hop[h.From+" -> "+h.To] = h
	}
	if len(top.Hops) != 5 || top.Hops[0].From != "client:eth0" { // 3 + the two around the unnamed veth
		t.Fatalf("hops %+v", top.Hops)
	}
	// The bridge hop spreads 5..14.9us; the first stays at 5us but for the shapes.
	if b := hop["veth1a2b -> veth3c4d"]; b.P50 < 9*time.Microsecond || b.P50 > 11*time.Microsecond || b.Max != 14900*time.Nanosecond {
		t.Errorf("bridge hop %+v", b.Summary)
	}
	if c := hop["client:eth0 -> veth1a2b"]; c.P90 < 5*time.Microsecond || c.P90 > 5100*time.Nanosecond || c.Count != 104 {
		t.Errorf("first hop %+v", c.Summary)
	}
	// The ARP flood counts once per destination.
	seen := map[string]bool{}
	for _, p := range r.Paths {
		seen[p.Path] = true
	}
	for _, want := range []string{"client:eth0 -> db:eth0", "client:eth0 -> docker0", "client:eth0 -> eth0", "eth0 -> web:eth0", "client:eth0 -> api:eth0"} {
		if !seen[want] {
			t.Errorf("no path %q", want)
		}
	}
}

func TestPathCap(t *testing.T) {
	a := latency.New(latency.Config{MaxPaths: 2})
	for _, j := range journeys() {
		a.Add(j)
	}
	r := a.Report()
	if len(r.Paths) != 2 || r.Overflow == 0 {
		t.Errorf("paths %d overflow %d", len(r.Paths), r.Overflow)
	}
}

func TestReportGolden(t *testing.T) {
	a := latency.New(latency.Config{})
	for _, j := range journeys() {
		a.Add(j)
	}
	r := a.Report()
	for name, write := range map[string]func(*bytes.Buffer) error{
		"latency.golden":      func(b *bytes.Buffer) error { return latency.WriteText(b, r) },
		"latency.json.golden": func(b *bytes.Buffer) error { return latency.WriteJSON(b, r) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", name)
		if *update {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read golden file (go test -update creates it): %v", err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s differs (go test ./tracer/latency -update rewrites it)\n--- got\n%s\n--- want\n%s", name, b.Bytes(), want)
		}
	}
}

func BenchmarkAdd(b *testing.B) {
	js := journeys()
	a := latency.New(latency.Config{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a.Add(js[i%len(js)])
	}
}
