package exchange

import (
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// Retransmit is the link to the previous transmission (set as the
// journey's Retransmit by the Stage), and to the first.
type Retransmit struct {
	journey.Retransmit
	// First is the journey of the first transmission, FirstSent its time
	// (kernel monotonic ns); Nth counts this one (1: the first repeat).
	First     uint64
	FirstSent uint64
	Nth       int
}

// segKey identifies a segment: its flow as sent, where it was sent from,
// and its sequence number.
type segKey struct {
	out tuple
	at  topology.Key
	dir event.Direction
	seq uint32
}

// sent is the latest transmission of a segment.
type sent struct {
	id, at           uint64 // its journey and first-hop time
	firstID, firstAt uint64
	n                int // transmissions so far
	verdict          journey.Verdict
	dropWhere, why   string
	gen              uint64 // which fifo entry is current
}

type fifoEntry struct {
	key segKey
	gen uint64
	at  uint64
}

// Linker recognises retransmitted TCP segments. Not safe for concurrent use.
type Linker struct {
	window uint64
	max    int
	segs   map[segKey]sent
	fifo   []fifoEntry // in the order segments were remembered
	head   int
	gen    uint64
	now    uint64
}

// NewLinker returns a linker bounded by cfg (zero fields take defaults).
func NewLinker(cfg Config) *Linker {
	cfg = cfg.withDefaults()
	return &Linker{window: uint64(cfg.RetransmitWindow), max: cfg.MaxSegments, segs: make(map[segKey]sent)}
}

// Link remembers j's segment and, when it repeats one seen before, returns
// the link to the previous transmission. Journeys must come in the order
// the pipeline finishes them.
func (l *Linker) Link(j *journey.Journey) (Retransmit, bool) {
	var s seg
	if !classify(j, &s) {
		return Retransmit{}, false
	}
	return l.link(&s)
}

func (l *Linker) link(s *seg) (Retransmit, bool) {
	l.now = max(l.now, s.j.End)
	l.evict()
	if s.proto != event.ProtoTCP || !s.occupies() {
		return Retransmit{}, false
	}
	k := segKey{out: s.out, at: s.from.Endpoint.Key(), dir: s.from.Dir, seq: s.seq}
	at := s.sent()
	prev, seen := l.segs[k]
	switch {
	case !seen:
		l.remember(k, sent{id: s.j.ID, at: at, firstID: s.j.ID, firstAt: at, n: 1, verdict: s.j.Verdict}, s.j)
		return Retransmit{}, false
	case at < prev.at:
		// Finished after a later copy (held longer): that copy is already
		// out, unlinked. Remember the earlier one as the first.
		prev.firstID, prev.firstAt = s.j.ID, at
		l.segs[k] = prev
		return Retransmit{}, false
	}
	r := Retransmit{
		Retransmit: journey.Retransmit{Of: prev.id, After: time.Duration(at - prev.at),
			OfVerdict: prev.verdict, OfDropWhere: prev.dropWhere, OfDropReason: prev.why},
		First: prev.firstID, FirstSent: prev.firstAt, Nth: prev.n,
	}
	l.remember(k, sent{id: s.j.ID, at: at, firstID: prev.firstID, firstAt: prev.firstAt, n: prev.n + 1, verdict: s.j.Verdict}, s.j)
	return r, true
}

func (l *Linker) remember(k segKey, v sent, j *journey.Journey) {
	if d := j.Drop; d != nil && !d.AfterDelivery {
		v.dropWhere, v.why = d.Where(j), d.Name()
	}
	l.gen++
	v.gen = l.gen
	l.segs[k] = v
	l.fifo = append(l.fifo, fifoEntry{key: k, gen: l.gen, at: v.at})
}

// evict forgets segments past the window or the cap, oldest first.
func (l *Linker) evict() {
	for l.head < len(l.fifo) {
		e := &l.fifo[l.head]
		cur, ok := l.segs[e.key]
		if ok && cur.gen != e.gen {
			// Superseded by a later transmission.
			l.fifo[l.head] = fifoEntry{}
			l.head++
			continue
		}
		if ok && len(l.segs) <= l.max && e.at+l.window >= l.now {
			break
		}
		if ok {
			delete(l.segs, e.key)
		}
		l.fifo[l.head] = fifoEntry{}
		l.head++
	}
	if l.head > 1024 && l.head*2 > len(l.fifo) {
		n := copy(l.fifo, l.fifo[l.head:])
		clear(l.fifo[n:])
		l.fifo, l.head = l.fifo[:n], 0
	}
}

// Remembered is the number of segments held now.
func (l *Linker) Remembered() int { return len(l.segs) }
