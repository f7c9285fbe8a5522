package latency

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// Config bounds the aggregator's memory.
type Config struct {
	// MaxPaths caps distinct paths; journeys on further paths are counted
	// in Report.Overflow. Default 256.
	MaxPaths int
	// MaxHopsPerPath caps distinct hop pairs kept per path. Default 32.
	MaxHopsPerPath int
}

// Aggregator collects journeys. Not safe for concurrent use.
type Aggregator struct {
	cfg      Config
	paths    map[string]*path
	journeys uint64
	skipped  uint64
	overflow uint64
	// Exchanges and retransmissions (exchanges.go), made on first use.
	exchanges   map[exchangeKey]*exchangeStats
	retransmits map[string]*retransmitStats
}

type path struct {
	from, to string
	order    int // first seen, for a stable report order among equals
	total    Histogram
	hops     map[string]*hopPair
	nhops    int
}

type hopPair struct {
	from, to string
	pos      int // position along the path when first seen
	h        Histogram
}

// New returns an aggregator; zero Config fields take the defaults.
func New(cfg Config) *Aggregator {
	if cfg.MaxPaths <= 0 {
		cfg.MaxPaths = 256
	}
	if cfg.MaxHopsPerPath <= 0 {
		cfg.MaxHopsPerPath = 32
	}
	return &Aggregator{cfg: cfg, paths: make(map[string]*path)}
}

// Add counts a journey: for each branch that reached a destination, the
// end-to-end time from the first hop to the branch's last hop on the path
// "first -> last", and every hop-to-hop delta along it. Dropped and
// incomplete branches have no end-to-end latency and are skipped.
func (a *Aggregator) Add(j *journey.Journey) {
	a.journeys++
	if len(j.Hops) < 2 || j.Verdict == journey.VerdictIncomplete || j.Verdict == journey.VerdictDropped {
		a.skipped++
		return
	}
	first := &j.Hops[0]
	for _, leaf := range j.Leaves() {
		if leaf == 0 || (j.Drop != nil && j.Drop.After == leaf) || !j.Hops[leaf].Terminal() {
			continue
		}
		last := &j.Hops[leaf]
		key := first.Label() + " -> " + last.Label()
		p := a.paths[key]
		if p == nil {
			if len(a.paths) >= a.cfg.MaxPaths {
				a.overflow++
				continue
			}
			p = &path{from: first.Label(), to: last.Label(), order: len(a.paths), hops: make(map[string]*hopPair)}
			a.paths[key] = p
		}
		p.total.Add(time.Duration(last.TimeNS - first.TimeNS))

		// Walk the branch back to the first hop, then record forward.
		var chain [16]int
		n := 0
		for i := leaf; i > 0 && n < len(chain); i = j.Hops[i].Parent {
			chain[n] = i
			n++
		}
		for k := n - 1; k >= 0; k-- {
			h := &j.Hops[chain[k]]
			prev := &j.Hops[h.Parent]
			hk := prev.Label() + " -> " + h.Label()
			hp := p.hops[hk]
			if hp == nil {
				if len(p.hops) >= a.cfg.MaxHopsPerPath {
					continue
				}
				hp = &hopPair{from: prev.Label(), to: h.Label(), pos: n - 1 - k}
				p.hops[hk] = hp
			}
			hp.h.Add(h.Delta)
		}
	}
}

// Report is the aggregate, paths busiest first.
type Report struct {
	Journeys uint64 `json:"journeys"`
	// Skipped journeys had no end-to-end latency (dropped, incomplete, one hop).
	Skipped uint64 `json:"skipped"`
	// Overflow counts branches on paths past MaxPaths (and exchanges and
	// retransmissions past as many keys).
	Overflow uint64       `json:"overflow"`
	Paths    []PathReport `json:"paths"`
	// Exchanges are requests paired with responses (tracer/exchange), per
	// client, server, port and protocol, busiest first.
	Exchanges []ExchangeReport `json:"exchanges"`
	// Retransmits are TCP retransmissions per path, most first.
	Retransmits []RetransmitReport `json:"retransmits"`
}

// PathReport is one path's end-to-end and per-hop numbers.
type PathReport struct {
	Path  string      `json:"path"`
	From  string      `json:"from"`
	To    string      `json:"to"`
	Total Summary     `json:"total"`
	Hops  []HopReport `json:"hops"`
}

// HopReport is one hop pair's numbers.
type HopReport struct {
	From string `json:"from"`
	To   string `json:"to"`
	Summary
}

// Report returns the numbers so far.
func (a *Aggregator) Report() Report {
	r := Report{Journeys: a.journeys, Skipped: a.skipped, Overflow: a.overflow, Paths: []PathReport{},
		Exchanges: a.exchangeReports(), Retransmits: a.retransmitReports()}
	ps := make([]*path, 0, len(a.paths))
	for _, p := range a.paths {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(x, y int) bool {
		if ps[x].total.Count() != ps[y].total.Count() {
			return ps[x].total.Count() > ps[y].total.Count()
		}
		return ps[x].order < ps[y].order
	})
	for _, p := range ps {
		pr := PathReport{Path: p.from + " -> " + p.to, From: p.from, To: p.to, Total: p.total.Summary(), Hops: []HopReport{}}
		hs := make([]*hopPair, 0, len(p.hops))
		for _, h := range p.hops {
			hs = append(hs, h)
		}
		sort.Slice(hs, func(x, y int) bool {
			if hs[x].pos != hs[y].pos {
				return hs[x].pos < hs[y].pos
			}
			if hs[x].from != hs[y].from {
				return hs[x].from < hs[y].from
			}
			return hs[x].to < hs[y].to
		})
		for _, h := range hs {
			pr.Hops = append(pr.Hops, HopReport{From: h.from, To: h.to, Summary: h.h.Summary()})
		}
		r.Paths = append(r.Paths, pr)
	}
	return r
}

// WriteText prints the report as a table per path.
func WriteText(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "journeys %d, without end-to-end latency %d", r.Journeys, r.Skipped)
	if r.Overflow > 0 {
		fmt.Fprintf(tw, ", %d on paths past the cap", r.Overflow)
	}
	fmt.Fprintln(tw)
	for _, p := range r.Paths {
		fmt.Fprintf(tw, "\n%s\n", p.Path)
		fmt.Fprintln(tw, "hop\tcount\tmin\tp50\tp90\tp99\tmax\t")
		for _, h := range p.Hops {
			row(tw, h.From+" -> "+h.To, h.Summary)
		}
		row(tw, "end to end", p.Total)
	}
	writeExchanges(tw, r)
	return tw.Flush()
}

func row(w io.Writer, name string, s Summary) {
	fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", name, s.Count, d(s.Min), d(s.P50), d(s.P90), d(s.P99), d(s.Max))
}

func d(x time.Duration) string { return render.FormatDuration(x) }

// SchemaVersion is the "schema" of the JSON report (docs/latency-json.md):
// it grows when a field changes meaning or goes; added fields keep it.
const SchemaVersion = 1

// WriteJSON prints the report as one JSON object (durations in ns) and a newline.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		Type   string `json:"type"`
		Schema int    `json:"schema"`
		Report
	}{"latency", SchemaVersion, r})
}
