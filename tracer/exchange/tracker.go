package exchange

import (
	"sort"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// sweepEvery is how often (in journey time) the tracker looks for idle
// connections and exchanges that waited too long.
const sweepEvery = uint64(1e9)

// Tracker pairs requests with responses. Not safe for concurrent use.
type Tracker struct {
	cfg  Config
	emit func(*Exchange) error
	err  error // the first error of emit; later exchanges are not emitted
	tcp  map[tuple]*tcpConn
	udp  map[tuple]*udpFlow
	// now is the latest journey end seen; swept when the last sweep ran.
	now, swept uint64
	// late collects exchanges a sweep lets go, to emit them in time order.
	late []Exchange
	out  Exchange // the one being emitted
}

// NewTracker returns a tracker handing each completed exchange to emit
// (the pointer is valid during the call); emit's first error is kept (Err)
// and stops further emits.
func NewTracker(cfg Config, emit func(*Exchange) error) *Tracker {
	return &Tracker{cfg: cfg.withDefaults(), emit: emit, tcp: map[tuple]*tcpConn{}, udp: map[tuple]*udpFlow{}}
}

// Add takes the next journey in the pipeline's order; r is its link to the
// segment it retransmits (from a Linker that saw it first), or nil.
func (t *Tracker) Add(j *journey.Journey, r *Retransmit) {
	var s seg
	if classify(j, &s) {
		t.add(&s, r)
	} else {
		t.tick(j.End)
	}
}

func (t *Tracker) add(s *seg, r *Retransmit) {
	s.locate()
	t.tick(s.j.End)
	if s.proto == event.ProtoUDP {
		t.udpSeg(s)
	} else {
		t.tcpSeg(s, r)
	}
	if len(t.late) > 0 {
		t.emitLate()
	}
}

// Err is the first error emit returned.
func (t *Tracker) Err() error { return t.err }

// Flush lets go every exchange still waiting for its response to reach
// the client (without a response network time) and forgets everything: the
// end of the input.
func (t *Tracker) Flush() {
	for k, c := range t.tcp {
		t.forget(c)
		delete(t.tcp, k)
	}
	clear(t.udp)
	t.emitLate()
}

// send emits e through a field, so e itself does not escape (the pointer
// emit gets is valid only during the call).
func (t *Tracker) send(e *Exchange) {
	if t.err == nil {
		t.out = *e
		t.err = t.emit(&t.out)
	}
}

// tick advances the tracker's time and sweeps once a second of it.
func (t *Tracker) tick(end uint64) {
	t.now = max(t.now, end)
	if t.now < t.swept+sweepEvery {
		return
	}
	t.swept = t.now
	idle, wait := uint64(t.cfg.Idle), uint64(t.cfg.ResponseWait)
	for k, c := range t.tcp {
		if c.seen+idle < t.now {
			t.forget(c)
			delete(t.tcp, k)
			continue
		}
		c.expire(t, t.now-min(wait, t.now))
	}
	window := uint64(t.cfg.UDPWindow)
	for k, f := range t.udp {
		f.expire(t.now - min(window, t.now))
		if len(f.reqs) == 0 || f.seen+idle < t.now {
			delete(t.udp, k)
		}
	}
	t.emitLate()
}

// forget lets go a connection's waiting exchanges.
func (t *Tracker) forget(c *tcpConn) { c.expire(t, ^uint64(0)) }

// emitLate emits what a sweep let go, in the order the responses left
// (map order is random; the output must not be).
func (t *Tracker) emitLate() {
	sort.Slice(t.late, func(a, b int) bool {
		x, y := &t.late[a], &t.late[b]
		if x.ResponseOut != y.ResponseOut {
			return x.ResponseOut < y.ResponseOut
		}
		return x.ResponseID < y.ResponseID
	})
	for i := range t.late {
		t.send(&t.late[i])
	}
	clear(t.late)
	t.late = t.late[:0]
}

// capped forgets the longest idle eighth of m's entries when m is over max.
func capped[V any](m map[tuple]V, max int, seen func(V) uint64, forget func(V)) {
	if len(m) <= max {
		return
	}
	type aged struct {
		k    tuple
		seen uint64
	}
	all := make([]aged, 0, len(m))
	for k, v := range m {
		all = append(all, aged{k, seen(v)})
	}
	sort.Slice(all, func(a, b int) bool {
		if all[a].seen != all[b].seen {
			return all[a].seen < all[b].seen
		}
		return all[a].k.compare(all[b].k) < 0
	})
	for _, a := range all[:len(all)-max+max/8] {
		forget(m[a.k])
		delete(m, a.k)
	}
}
