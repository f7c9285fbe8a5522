package latency

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/hoptrace/hoptrace/tracer/exchange"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// exchangeKey is what exchanges are counted by: who asked whom on which
// port.
type exchangeKey struct {
	client, server string
	port           uint16
	proto          string
}

type exchangeStats struct {
	order       int
	count       uint64 // requests answered (handshakes apart)
	network     Histogram
	server      Histogram
	handshake   Histogram
	retransmits uint64
}

// retransmitStats are the retransmissions seen on one path.
type retransmitStats struct {
	from, to string
	order    int
	delay    Histogram
}

// AddExchange counts a completed exchange (tracer/exchange) under its
// client, server, server port and protocol: its network time when known
// (request and response together) and its server time; a handshake apart.
func (a *Aggregator) AddExchange(e *exchange.Exchange) {
	k := exchangeKey{client: e.Client, server: e.Server, port: e.Port(), proto: e.ProtoName()}
	st := a.exchanges[k]
	if st == nil {
		if len(a.exchanges) >= a.cfg.MaxPaths {
			a.overflow++
			return
		}
		if a.exchanges == nil {
			a.exchanges = map[exchangeKey]*exchangeStats{}
		}
		st = &exchangeStats{order: len(a.exchanges)}
		a.exchanges[k] = st
	}
	st.retransmits += uint64(e.Retransmits)
	if e.Handshake {
		st.handshake.Add(e.ServerTime())
		return
	}
	st.count++
	st.server.Add(e.ServerTime())
	if n, ok := e.NetworkTime(); ok {
		st.network.Add(n)
	}
}

// AddRetransmit counts a journey that retransmits an earlier one, on its
// path (first hop to where it was delivered, or to where it was last seen),
// with the time since the transmission before it.
func (a *Aggregator) AddRetransmit(j *journey.Journey, r *exchange.Retransmit) {
	if len(j.Hops) == 0 {
		return
	}
	from, to := j.Hops[0].Label(), j.Hops[len(j.Hops)-1].Label()
	if j.Verdict != journey.VerdictIncomplete && j.Verdict != journey.VerdictDropped {
		for _, leaf := range j.Leaves() {
			if j.Hops[leaf].Terminal() && (j.Drop == nil || j.Drop.After != leaf || j.Drop.AfterDelivery) {
				to = j.Hops[leaf].Label()
				break
			}
		}
	}
	key := from + " -> " + to
	st := a.retransmits[key]
	if st == nil {
		if len(a.retransmits) >= a.cfg.MaxPaths {
			a.overflow++
			return
		}
		if a.retransmits == nil {
			a.retransmits = map[string]*retransmitStats{}
		}
		st = &retransmitStats{from: from, to: to, order: len(a.retransmits)}
		a.retransmits[key] = st
	}
	st.delay.Add(r.After)
}

// ExchangeReport is the exchanges between one client and one server port.
type ExchangeReport struct {
	Client string `json:"client"`
	Server string `json:"server"`
	Port   uint16 `json:"port"`
	Proto  string `json:"proto"` // "tcp" or "udp"
	// Count is the requests answered; Network covers those whose
	// response was seen reaching the client (NetworkCount of them).
	Count        uint64      `json:"count"`
	NetworkCount uint64      `json:"network_count"`
	Network      Percentiles `json:"network_ns"`
	ServerTime   Percentiles `json:"server_ns"`
	// Handshakes are TCP handshakes seen, Handshake their server time
	// (SYN in to SYN-ACK out).
	Handshakes uint64       `json:"handshakes,omitempty"`
	Handshake  *Percentiles `json:"handshake_ns,omitempty"`
	// Retransmits counts TCP retransmissions in these connections.
	Retransmits uint64 `json:"retransmits"`
}

// Percentiles are a histogram's p50, p90, p99 and max, in ns in JSON.
type Percentiles struct {
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

func percentiles(h *Histogram) Percentiles {
	s := h.Summary()
	return Percentiles{P50: s.P50, P90: s.P90, P99: s.P99, Max: s.Max}
}

// RetransmitReport is the retransmissions seen on one path and the time
// they cost: each one's delay after the transmission it repeats.
type RetransmitReport struct {
	Path  string  `json:"path"`
	From  string  `json:"from"`
	To    string  `json:"to"`
	Count uint64  `json:"count"`
	Delay Summary `json:"delay"`
	// TotalNS is the delays summed.
	TotalNS int64 `json:"total_ns"`
}

// exchangeReports lists the exchanges, busiest first.
func (a *Aggregator) exchangeReports() []ExchangeReport {
	keys := make([]exchangeKey, 0, len(a.exchanges))
	for k := range a.exchanges {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(x, y int) bool {
		sx, sy := a.exchanges[keys[x]], a.exchanges[keys[y]]
		if sx.count != sy.count {
			return sx.count > sy.count
		}
		return sx.order < sy.order
	})
	out := make([]ExchangeReport, 0, len(keys))
	for _, k := range keys {
		st := a.exchanges[k]
		r := ExchangeReport{
			Client: k.client, Server: k.server, Port: k.port, Proto: k.proto,
			Count: st.count, NetworkCount: st.network.Count(),
			Network: percentiles(&st.network), ServerTime: percentiles(&st.server),
			Handshakes: st.handshake.Count(), Retransmits: st.retransmits,
		}
		if r.Handshakes > 0 {
			p := percentiles(&st.handshake)
			r.Handshake = &p
		}
		out = append(out, r)
	}
	return out
}

// retransmitReports lists the retransmissions per path, most first.
func (a *Aggregator) retransmitReports() []RetransmitReport {
	all := make([]*retransmitStats, 0, len(a.retransmits))
	for _, st := range a.retransmits {
		all = append(all, st)
	}
	sort.Slice(all, func(x, y int) bool {
		if all[x].delay.Count() != all[y].delay.Count() {
			return all[x].delay.Count() > all[y].delay.Count()
		}
		return all[x].order < all[y].order
	})
	out := make([]RetransmitReport, 0, len(all))
	for _, st := range all {
		out = append(out, RetransmitReport{
			Path: st.from + " -> " + st.to, From: st.from, To: st.to,
			Count: st.delay.Count(), Delay: st.delay.Summary(), TotalNS: int64(st.delay.sum),
		})
	}
	return out
}

// writeExchanges prints the exchange, handshake and retransmission tables
// of r, each only when it has rows.
func writeExchanges(w io.Writer, r Report) {
	if len(r.Exchanges) > 0 {
		fmt.Fprintln(w, "\nexchanges (network: client to server and back; server: request in to response out, at the server)")
		fmt.Fprintln(w, "client -> server:port\tproto\tcount\tnet p50\tnet p90\tnet p99\tnet max\tserver p50\tserver p90\tserver p99\tserver max\tretransmits\t")
		for _, e := range r.Exchanges {
			if e.Count == 0 {
				continue
			}
			n, s := e.Network, e.ServerTime
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", exchangeName(&e), e.Proto, e.Count,
				d(n.P50), d(n.P90), d(n.P99), d(n.Max), d(s.P50), d(s.P90), d(s.P99), d(s.Max), e.Retransmits)
		}
		first := true
		for _, e := range r.Exchanges {
			if e.Handshake == nil {
				continue
			}
			if first {
				fmt.Fprintln(w, "\nTCP handshakes (SYN in to SYN-ACK out, at the server)")
				fmt.Fprintln(w, "client -> server:port\tcount\tp50\tp90\tp99\tmax\t")
				first = false
			}
			h := e.Handshake
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t\n", exchangeName(&e), e.Handshakes, d(h.P50), d(h.P90), d(h.P99), d(h.Max))
		}
	}
	if len(r.Retransmits) > 0 {
		fmt.Fprintln(w, "\nTCP retransmissions (delay: after the transmission each one repeats)")
		fmt.Fprintln(w, "path\tcount\ttotal\tdelay p50\tdelay max\t")
		for _, rt := range r.Retransmits {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t\n", rt.Path, rt.Count, d(time.Duration(rt.TotalNS)), d(rt.Delay.P50), d(rt.Delay.Max))
		}
	}
}

func exchangeName(e *ExchangeReport) string {
	return e.Client + " -> " + e.Server + ":" + strconv.Itoa(int(e.Port))
}
