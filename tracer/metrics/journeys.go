package metrics

import (
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// Journeys counts finished journeys into the metrics serve exposes, for a
// capture that assembles journeys in user space (--metrics-addr of trace,
// record and latency). It is a pipeline sink and a prometheus.Collector.
// A path ends at the last hop of each branch not dropped; series stay
// as long as the run.
type Journeys struct {
	c    *Collector
	loss func() Lost

	mu  sync.Mutex
	ser *series
}

// NewJourneys returns a sink; loss (may be nil) reads the capture's loss
// counters at each scrape.
func NewJourneys(version string, loss func() Lost) *Journeys {
	return &Journeys{c: NewCollector(nil, version), loss: loss, ser: newSeries()}
}

// observe counts a value of ns nanoseconds.
func (h *Hist) observe(ns uint64) {
	i := 0
	for i < NumBounds && ns > BoundsNS[i] {
		i++
	}
	h.Buckets[i]++
	h.SumNS += ns
}

func observe[K comparable](m map[K]*Hist, k K, ns uint64) {
	if m[k] == nil {
		m[k] = &Hist{}
	}
	m[k].observe(ns)
}

// Journey implements pipeline.Sink.
func (s *Journeys) Journey(j *journey.Journey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	hops := j.Hops
	if len(hops) > 0 {
		branched := make([]bool, len(hops))
		for i := 1; i < len(hops); i++ {
			h := &hops[i]
			if h.Parent < 0 || h.Parent >= len(hops) {
				continue
			}
			branched[h.Parent] = true
			p := &hops[h.Parent]
			from := hookLabel(ifaceLabel(p.Endpoint), p.Dir == event.Egress)
			to := hookLabel(ifaceLabel(h.Endpoint), h.Dir == event.Egress)
			observe(s.ser.hops, [2]string{from, to}, uint64(max(h.Delta, 0)))
		}
		first := &hops[0]
		src := endLabel(first.Endpoint)
		for i := range hops {
			if branched[i] || j.Drop != nil && j.Drop.After == i && !j.Drop.AfterDelivery {
				continue // not a branch's end, or dropped there
			}
			last := &hops[i]
			dst := endLabel(last.Endpoint)
			s.ser.packets[[2]string{src, dst}]++
			if i > 0 && last.TimeNS >= first.TimeNS {
				observe(s.ser.paths, pathLabels{src, dst, network(first.Endpoint, last.Endpoint)}, last.TimeNS-first.TimeNS)
			}
		}
	}
	if d := j.Drop; d != nil {
		var last topology.Endpoint
		if d.After >= 0 && d.After < len(hops) {
			last = hops[d.After].Endpoint
		}
		where := ifaceLabel(last)
		if d.HasDev && d.Resolved {
			where = ifaceLabel(d.Endpoint)
		}
		s.ser.drops[[3]string{d.ReasonName, where, dropContainer(last, d.Endpoint)}]++
	}
	return nil
}

// Summary implements pipeline.Sink.
func (s *Journeys) Summary(render.Summary) error { return nil }

// KeepsJourneys is false: Journey counts what it needs and keeps only label
// strings (pipeline.JourneyKeeper).
func (s *Journeys) KeepsJourneys() bool { return false }

// Describe implements prometheus.Collector.
func (s *Journeys) Describe(ch chan<- *prometheus.Desc) { s.c.Describe(ch) }

// Collect implements prometheus.Collector.
func (s *Journeys) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(s.c.build, prometheus.GaugeValue, 1, s.c.version, runtime.Version())
	var lost Lost
	if s.loss != nil {
		lost = s.loss()
	}
	s.mu.Lock()
	out := s.c.emit(s.ser, lost, nil)
	s.mu.Unlock()
	for _, m := range out {
		ch <- m
	}
}
