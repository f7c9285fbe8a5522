package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// Collector is a prometheus.Collector that reads the kernel's aggregates
// when scraped (through read) and names them with the snapshot read gives.
type Collector struct {
	read    func() (*State, error)
	version string

	path, hop, packets, drops       *prometheus.Desc
	eventsLost, joinsLost           *prometheus.Desc
	hooks, containers, build, error *prometheus.Desc
}

// NewCollector returns a collector over read, which is called once per
// scrape; version goes into hoptrace_build_info.
func NewCollector(read func() (*State, error), version string) *Collector {
	d := prometheus.NewDesc
	return &Collector{
		read:    read,
		version: version,
		path: d("hoptrace_path_latency_seconds",
			"Time from a packet's first to its last traced hook, by source and destination container and network.",
			[]string{"src", "dst", "network"}, nil),
		hop: d("hoptrace_hop_latency_seconds",
			"Time between consecutive traced hooks of a packet, by hook (interface label and direction).",
			[]string{"from", "to"}, nil),
		packets: d("hoptrace_packets_total",
			"Packets that reached their last traced hook, by source and destination.",
			[]string{"src", "dst"}, nil),
		drops: d("hoptrace_drops_total",
			"Traced packets the kernel dropped, by drop reason, interface and container.",
			[]string{"reason", "where", "container"}, nil),
		eventsLost: d("hoptrace_events_lost_total",
			"Events or aggregate updates the kernel could not record (kind: hop, drop, aggregate).",
			[]string{"kind"}, nil),
		joinsLost: d("hoptrace_joins_lost_total",
			"Packets forgotten between two traced hooks (their entry was evicted), so a hop was not measured.",
			nil, nil),
		hooks: d("hoptrace_hooks_attached",
			"Interfaces hooked now.", nil, nil),
		containers: d("hoptrace_containers_watched",
			"Containers the resolver knows now.", nil, nil),
		build: d("hoptrace_build_info",
			"hoptrace's version and the Go version it was built with.",
			[]string{"version", "goversion"}, nil),
		error: d("hoptrace_scrape_error",
			"Reading the kernel's aggregates failed.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.path, c.hop, c.packets, c.drops, c.eventsLost, c.joinsLost, c.hooks, c.containers, c.build} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, c.version, runtime.Version())
	st, err := c.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.error, err)
		return
	}
	for _, m := range c.Metrics(st) {
		ch <- m
	}
}

// Metrics are the metrics of one state, without build info.
func (c *Collector) Metrics(st *State) []prometheus.Metric {
	snap := st.Snapshot
	if snap == nil {
		snap = &topology.Snapshot{}
	}
	n := namer{ix: topology.NewIndex(snap)}
	ser := newSeries()
	for p, h := range st.Agg.Paths {
		src, se, ok1 := n.end(p.From)
		dst, de, ok2 := n.end(p.To)
		if !ok1 || !ok2 {
			continue
		}
		ser.packets[[2]string{src, dst}] += h.Packets
		if p.From == p.To {
			continue // one hook: no latency to speak of
		}
		addTo(ser.paths, pathLabels{src, dst, network(se, de)}, &h)
	}
	for p, h := range st.Agg.Hops {
		from, _, ok1 := n.hook(p.From)
		to, _, ok2 := n.hook(p.To)
		if ok1 && ok2 {
			addTo(ser.hops, [2]string{from, to}, &h)
		}
	}
	for k, v := range st.Agg.Drops {
		last, le, ok := n.iface(k.Last.Key)
		if !ok {
			continue // the packet's interfaces are gone
		}
		where, ae, ok := n.iface(k.At)
		if !ok {
			where, ae = last, le
		}
		ser.drops[[3]string{k.Reason, where, dropContainer(le, ae)}] += v
	}
	out := c.emit(ser, st.Lost, nil)
	return append(out,
		prometheus.MustNewConstMetric(c.hooks, prometheus.GaugeValue, float64(st.HooksAttached)),
		prometheus.MustNewConstMetric(c.containers, prometheus.GaugeValue, float64(len(snap.Containers))),
	)
}

// dropContainer is the container a drop is put on: that of the last hook
// that saw the packet, else that of the device it was on.
func dropContainer(last, at topology.Endpoint) string {
	switch {
	case last.Container != nil:
		return last.Container.Name
	case at.Container != nil:
		return at.Container.Name
	}
	return ""
}

type pathLabels struct{ src, dst, network string }

// series are the values of the metrics by their label values.
type series struct {
	paths   map[pathLabels]*Hist
	hops    map[[2]string]*Hist  // from, to
	packets map[[2]string]uint64 // src, dst
	drops   map[[3]string]uint64 // reason, where, container
}

func newSeries() *series {
	return &series{
		paths:   map[pathLabels]*Hist{},
		hops:    map[[2]string]*Hist{},
		packets: map[[2]string]uint64{},
		drops:   map[[3]string]uint64{},
	}
}

// emit appends the metrics of ser and lost to out.
func (c *Collector) emit(ser *series, lost Lost, out []prometheus.Metric) []prometheus.Metric {
	for k, h := range ser.paths {
		out = append(out, c.histogram(c.path, h, k.src, k.dst, k.network))
	}
	for k, v := range ser.packets {
		out = append(out, prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v), k[0], k[1]))
	}
	for k, h := range ser.hops {
		out = append(out, c.histogram(c.hop, h, k[0], k[1]))
	}
	for k, v := range ser.drops {
		out = append(out, prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(v), k[0], k[1], k[2]))
	}
	for kind, v := range map[string]uint64{"hop": lost.Hops, "drop": lost.Drops, "aggregate": lost.Aggregate} {
		out = append(out, prometheus.MustNewConstMetric(c.eventsLost, prometheus.CounterValue, float64(v), kind))
	}
	return append(out, prometheus.MustNewConstMetric(c.joinsLost, prometheus.CounterValue, float64(lost.Joins)))
}

func addTo[K comparable](m map[K]*Hist, k K, h *Hist) {
	if m[k] == nil {
		m[k] = &Hist{}
	}
	m[k].Add(h)
}

// histogram is a classic Prometheus histogram of h, in seconds.
func (c *Collector) histogram(d *prometheus.Desc, h *Hist, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, NumBounds)
	var cum uint64
	for i, b := range BoundsNS {
		cum += h.Buckets[i]
		buckets[float64(b)/1e9] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count(), float64(h.SumNS)/1e9, buckets, labels...)
}
