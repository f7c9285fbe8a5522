package exchange

import (
	"hash/maphash"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/internal/u64map"
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

// segID identifies a segment: its flow as sent, where it was sent from,
// and its sequence number. It holds no pointers and no padding, so a ring
// of them costs the garbage collector nothing and hashes as plain memory.
type segID struct {
	src, dst     [16]byte
	sport, dport uint16
	seq          uint32
	at           topology.Key
	dir          uint32 // event.Direction
}

func segIDOf(s *seg) segID {
	return segID{
		src: s.out.src.Addr().As16(), dst: s.out.dst.Addr().As16(),
		sport: s.out.src.Port(), dport: s.out.dst.Port(), seq: s.seq,
		at: s.from.Endpoint.Key(), dir: uint32(s.from.Dir),
	}
}

// sent is the latest transmission of a segment, as the ring keeps it.
type sent struct {
	id       segID
	hash     uint64
	sentID   uint64 // its journey
	at       uint64 // and first-hop time
	firstID  uint64
	firstAt  uint64
	n        uint32 // transmissions so far
	verdict  journey.Verdict
	dropped  bool // where and why are in Linker.drops
	replaced bool // a later transmission (or a colliding segment) took its place
}

// dropNote is where and why a remembered transmission was dropped; rare,
// so kept beside the ring rather than in every slot.
type dropNote struct{ where, why string }

// Linker recognises retransmitted TCP segments. It remembers each segment
// sent, in the order sent, in a ring that grows up to Config.MaxSegments;
// an index from the segment's hash finds its slot. Not safe for concurrent
// use.
type Linker struct {
	window uint64
	max    int
	seed   maphash.Seed
	hash   func(seed maphash.Seed, id segID) uint64 // segHash when made
	index  u64map.Map[uint64]                       // segment hash -> ring position of its latest transmission, plus one
	ring   []sent                                   // len a power of two; position p is ring[p&(len-1)]
	head   uint64                                   // oldest position held
	tail   uint64                                   // next position to fill
	live   int                                      // positions not replaced
	drops  map[uint64]dropNote                      // by ring position
	now    uint64
}

const minRing = 256

// segHash hashes a segment for the index (a variable: a test makes every
// segment collide).
var segHash = maphash.Comparable[segID]

// NewLinker returns a linker bounded by cfg (zero fields take defaults).
func NewLinker(cfg Config) *Linker {
	cfg = cfg.withDefaults()
	return &Linker{
		window: uint64(cfg.RetransmitWindow), max: cfg.MaxSegments,
		seed: maphash.MakeSeed(), hash: segHash,
		ring: make([]sent, minRing), drops: make(map[uint64]dropNote),
	}
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
	id := segIDOf(s)
	h := l.hash(l.seed, id)
	at := s.sent()
	pos1 := l.index.Get(h)
	held, pos := pos1 != 0, pos1-1
	seen := held
	var prev *sent
	if seen {
		if prev = l.slot(pos); prev.id != id {
			// Another segment with the same hash: it gives way (it is
			// forgotten early, never linked to this one).
			prev, seen = nil, false
		}
	}
	switch {
	case !seen:
		l.remember(h, held, pos, sent{id: id, sentID: s.j.ID, at: at, firstID: s.j.ID, firstAt: at, n: 1, verdict: s.j.Verdict}, s.j)
		return Retransmit{}, false
	case at < prev.at:
		// Finished after a later copy (held longer): that copy is already
		// out, unlinked. Remember the earlier one as the first.
		prev.firstID, prev.firstAt = s.j.ID, at
		return Retransmit{}, false
	}
	r := Retransmit{
		Retransmit: journey.Retransmit{Of: prev.sentID, After: time.Duration(at - prev.at), OfVerdict: prev.verdict},
		First:      prev.firstID, FirstSent: prev.firstAt, Nth: int(prev.n),
	}
	if prev.dropped {
		d := l.drops[pos]
		r.OfDropWhere, r.OfDropReason = d.where, d.why
	}
	l.remember(h, true, pos, sent{id: id, sentID: s.j.ID, at: at, firstID: prev.firstID, firstAt: prev.firstAt, n: prev.n + 1, verdict: s.j.Verdict}, s.j)
	return r, true
}

func (l *Linker) slot(pos uint64) *sent { return &l.ring[pos&uint64(len(l.ring)-1)] }

// remember puts v at the ring's tail as the segment's latest transmission;
// the slot the index held for h before (held, at old) is replaced.
func (l *Linker) remember(h uint64, held bool, old uint64, v sent, j *journey.Journey) {
	if held {
		l.slot(old).replaced = true
		l.live--
	}
	if l.tail-l.head == uint64(len(l.ring)) {
		if len(l.ring) < l.max {
			l.grow()
		} else {
			l.forget() // full of replaced slots: the oldest goes
		}
	}
	pos := l.tail
	l.tail++
	if d := j.Drop; d != nil && !d.AfterDelivery {
		v.dropped = true
		l.drops[pos] = dropNote{where: d.Where(j), why: d.Name()}
	}
	v.hash = h
	*l.slot(pos) = v
	l.index.Set(h, pos+1)
	l.live++
}

// grow doubles the ring, keeping positions.
func (l *Linker) grow() {
	ring := make([]sent, 2*len(l.ring))
	for p := l.head; p < l.tail; p++ {
		ring[p&uint64(len(ring)-1)] = *l.slot(p)
	}
	l.ring = ring
}

// forget drops the oldest slot.
func (l *Linker) forget() {
	s := l.slot(l.head)
	if !s.replaced {
		l.index.Delete(s.hash)
		l.live--
	}
	if s.dropped {
		delete(l.drops, l.head)
	}
	*s = sent{}
	l.head++
}

// evict forgets segments past the window or the cap, oldest first.
func (l *Linker) evict() {
	for l.head < l.tail {
		s := l.slot(l.head)
		if !s.replaced && l.live <= l.max && s.at+l.window >= l.now {
			break
		}
		l.forget()
	}
}

// Remembered is the number of segments held now.
func (l *Linker) Remembered() int { return l.live }
