package journey

import (
	"fmt"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/internal/u64map"
)

// Assembler joins hops and drops into journeys. It is not safe for
// concurrent use: feed it from one goroutine, in the order events arrived.
//
// Identity: a hop with the kernel's PacketID (and an skb key) joins the open
// journey with that ID. Otherwise it joins the open journey holding its SkbKey when the
// fingerprint matches and the journey has not passed this interface in this
// direction yet. Otherwise it may join by content (see find): only where the
// kernel cannot follow the skb when it gives skb keys, and only a journey of
// the same flow, with the same fingerprint and the same addresses and ports
// or ones NAT rewrote after host routing. A packet seen again where its
// journey already was (an identical datagram, a retransmission, a reused
// skb) starts a new journey.
type Assembler struct {
	cfg   Config
	namer topology.Namer

	nextID   uint64
	waiting  deadlineList      // open journeys taking hops (deadlines.go)
	ending   deadlineList      // open journeys past an end, in their grace
	inFlight int               // open journeys
	byPID    u64map.Map[*open] // open journey per kernel packet ID
	bySkb    u64map.Map[*open] // newest open journey that holds this skb key
	content  contentIndex      // open journeys by fingerprint and flow
	stats    Stats

	// Memory to reuse: open structs once their journey finished, and
	// journeys given back by Release. A journey with its hops was most of
	// what a busy trace allocated, and the collector's work scanning them.
	spareOpen     []*open
	spareJourneys []*Journey
}

// Bounds of what the assembler keeps to reuse: journeys in spare (a busy
// trace has a few thousand open, and they finish in bursts; 4096 with 4
// hops is ~7 MB), and hops a spare journey holds room for (a flood's
// journey with many branches is left to the collector).
const (
	maxSpare        = 4096
	maxSpareHopsCap = 16
)

// open is a journey still taking hops.
type open struct {
	j        *Journey
	last     uint64 // latest event time
	deadline uint64
	terminal bool // reached a hop where packets end, or a drop
	inGrace  bool // waits in the ending list (terminal when last placed)

	prev, next *open  // neighbours in its deadline list
	sorted     bool   // hops were added in time order
	keyed      bool   // holds a hop with a packet ID the kernel keyed by skb
	hooks      uint64 // hookBit of every hop: most passed checks end here
	links      []link // places in the content index (linkBuf, unless NAT added more)
	linkBuf    [4]link
}

// New returns an assembler. Zero Config fields take the defaults; namer may
// be nil (every interface then shows unresolved).
func New(cfg Config, namer topology.Namer) *Assembler {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Grace > cfg.Timeout {
		cfg.Grace = cfg.Timeout
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	return &Assembler{
		cfg:     cfg,
		namer:   namer,
		content: make(contentIndex),
		stats:   Stats{DropsByReason: make(map[string]uint64)},
	}
}

// AddHop adds one hop and returns the journeys that finished before its time
// (their grace or timeout passed, or MaxInFlight forced one out). The hop's
// Data is kept, not copied.
func (a *Assembler) AddHop(h event.Hop) []*Journey {
	out := a.expire(h.TimeNS, nil)
	a.stats.Hops++

	ep, resolved := a.resolve(h.NetnsIno, h.Ifindex)
	role := a.role(&ep)
	t := tupleOf(&h.Pkt)
	fk := flowKey(h.Fingerprint, &t)
	o := a.find(&h, role, &t, fk)
	if o == nil {
		out = a.makeRoom(out)
		o = a.start(h.Fingerprint, h.TimeNS)
	}
	j := o.j
	if n := len(j.Hops); n > 0 && h.TimeNS < j.Hops[n-1].TimeNS {
		o.sorted = false
	}
	j.Hops = append(j.Hops, Hop{
		Endpoint: ep,
		Resolved: resolved,
		Dir:      h.Dir,
		TimeNS:   h.TimeNS,
		Parent:   -1, // set when the journey finishes, on hops in time order
		Len:      h.Len,
		GSOSegs:  h.GSOSegs,
		GSOSize:  h.GSOSize,
		SkbKey:   h.SkbKey,
		PacketID: h.PacketID,
		Pkt:      h.Pkt,
		Data:     h.Data,
	})
	if h.Tunnel.Valid() {
		t := &Tunnel{Tunnel: h.Tunnel}
		if nn, ok := a.namer.(topology.NodeNamer); ok {
			t.Node, _ = nn.NodeName(h.Tunnel.Peer)
		}
		j.Hops[len(j.Hops)-1].Tunnel = t
	}
	if h.SkbKey != 0 {
		a.bySkb.Set(h.SkbKey, o)
		if h.PacketID != 0 {
			a.byPID.Set(h.PacketID, o)
			o.keyed = true
		}
	}
	o.hooks |= hookBit(h.Ifindex, h.NetnsIno, h.Dir)
	a.index(o, &h, role, &t, fk)
	if a.kind(&j.Hops[len(j.Hops)-1]) != VerdictIncomplete {
		o.terminal = true
	}
	a.touch(o, h.TimeNS)
	return out
}

// AddDrop joins a drop to the journey of its packet and returns journeys
// that finished before its time.
func (a *Assembler) AddDrop(d event.Drop) []*Journey {
	out := a.expire(d.TimeNS, nil)
	a.stats.Drops++
	dr := &Drop{After: -1, TimeNS: d.TimeNS, Reason: d.Reason, ReasonName: d.ReasonName, Location: d.Location}
	a.stats.DropsByReason[dr.Name()]++
	if d.Ifindex != 0 {
		dr.HasDev = true
		dr.Endpoint, dr.Resolved = a.resolve(d.NetnsIno, d.Ifindex)
	}

	o := a.findDrop(&d)
	if o == nil {
		a.stats.UnmatchedDrops++
		if !a.cfg.EmitUnmatchedDrops {
			return out
		}
		a.nextID++
		j := &Journey{ID: a.nextID, Verdict: VerdictDropped, Drop: dr, Start: d.TimeNS, End: d.TimeNS, Fingerprint: d.Fingerprint}
		a.count(j)
		return append(out, j)
	}
	j := o.j
	if j.Drop == nil {
		dr.After = len(j.Hops) - 1
		if d.SkbKey != 0 {
			for i := len(j.Hops) - 1; i >= 0; i-- {
				if j.Hops[i].SkbKey == d.SkbKey {
					dr.After = i
					break
				}
			}
		}
		j.Drop = dr
	}
	o.terminal = true
	a.touch(o, d.TimeNS)
	return out
}

// Expire finishes journeys whose grace or timeout ends before nowNS (kernel
// monotonic ns). Replay passes event time; live callers pass the current
// monotonic time minus a small lag for events still in the ring buffer.
func (a *Assembler) Expire(nowNS uint64) []*Journey { return a.expire(nowNS, nil) }

// Flush finishes every open journey (end of input), in deadline order.
func (a *Assembler) Flush() []*Journey {
	var out []*Journey
	for o := a.soonest(); o != nil; o = a.soonest() {
		out = append(out, a.finish(o, !o.terminal, false))
	}
	return out
}

// Stats returns a copy of the counters.
func (a *Assembler) Stats() Stats {
	s := a.stats
	s.DropsByReason = make(map[string]uint64, len(a.stats.DropsByReason))
	for k, v := range a.stats.DropsByReason {
		s.DropsByReason[k] = v
	}
	s.InFlight = a.inFlight
	return s
}

func (a *Assembler) resolve(netns, ifindex uint32) (topology.Endpoint, bool) {
	if a.namer != nil {
		if ep, ok := a.namer.Lookup(topology.Key{NetnsIno: netns, Ifindex: ifindex}); ok {
			return ep, true
		}
	}
	// Unresolved interfaces still appear, named by what the kernel told us.
	return topology.Endpoint{
		NetnsIno: netns,
		Ifindex:  ifindex,
		Name:     fmt.Sprintf("if%d@ns%d", ifindex, netns),
	}, false
}

func (a *Assembler) start(fp uint64, t uint64) *open {
	a.nextID++
	var o *open
	if n := len(a.spareOpen); n > 0 {
		o = a.spareOpen[n-1]
		a.spareOpen = a.spareOpen[:n-1]
	} else {
		o = new(open)
	}
	*o = open{j: a.newJourney(), last: t, sorted: true}
	j := o.j
	j.ID, j.Fingerprint, j.Start, j.End = a.nextID, fp, t, t
	o.links = o.linkBuf[:0]
	o.deadline = t + uint64(a.cfg.Timeout)
	a.wait(o)
	if a.inFlight > a.stats.MaxInFlight {
		a.stats.MaxInFlight = a.inFlight
	}
	return o
}

// touch records an event at t and moves the journey's deadline.
func (a *Assembler) touch(o *open, t uint64) {
	later := t > o.last
	if later {
		o.last = t
	}
	j := o.j
	if t < j.Start {
		j.Start = t
	}
	if t > j.End {
		j.End = t
	}
	wait := a.cfg.Timeout
	if o.terminal {
		wait = a.cfg.Grace
	}
	if !later && o.inGrace == o.terminal {
		return // the same deadline in the same list
	}
	a.unwait(o)
	o.deadline = o.last + uint64(wait)
	a.wait(o)
}

// makeRoom evicts the journey closest to its deadline when the cap is reached.
func (a *Assembler) makeRoom(out []*Journey) []*Journey {
	for a.inFlight >= a.cfg.MaxInFlight {
		a.stats.Evictions++
		out = append(out, a.finish(a.soonest(), false, true))
	}
	return out
}

func (a *Assembler) expire(now uint64, out []*Journey) []*Journey {
	for o := a.soonest(); o != nil && o.deadline < now; o = a.soonest() {
		out = append(out, a.finish(o, !o.terminal, false))
	}
	return out
}

// finish closes an open journey and computes what it tells.
func (a *Assembler) finish(o *open, timedOut, evicted bool) *Journey {
	a.unwait(o)
	j := o.j
	a.content.remove(o)
	// A packet's hops mostly share its skb key and ID: each is looked up
	// once per run of hops that repeat it.
	var lastSkb, lastID uint64
	for i := range j.Hops {
		h := &j.Hops[i]
		if k := h.SkbKey; k != 0 && k != lastSkb {
			lastSkb = k
			if a.bySkb.Get(k) == o {
				a.bySkb.Delete(k)
			}
		}
		if id := h.PacketID; id != 0 && id != lastID {
			lastID = id
			if a.byPID.Get(id) == o {
				a.byPID.Delete(id)
			}
		}
	}
	if !o.sorted {
		sortHops(j)
	}
	j.TimedOut = timedOut
	j.Evicted = evicted
	a.summarize(j)
	a.count(j)
	// Nothing refers to o any more: the indexes let go of it above.
	if len(a.spareOpen) < maxSpare {
		*o = open{}
		a.spareOpen = append(a.spareOpen, o)
	}
	return j
}

// newJourney returns an empty journey with room for a few hops: a spare
// one given back by Release, or a new one.
func (a *Assembler) newJourney() *Journey {
	if n := len(a.spareJourneys); n > 0 {
		j := a.spareJourneys[n-1]
		a.spareJourneys = a.spareJourneys[:n-1]
		return j
	}
	return &Journey{Hops: make([]Hop, 0, 4)}
}

// Release gives a finished journey back for the assembler to reuse its
// memory for a later one. Call it only when nothing refers to j, its hops or
// anything else it points to (strings it holds may be kept: they are not
// reused). j must come from this assembler and be released at most once.
func (a *Assembler) Release(j *Journey) {
	if len(a.spareJourneys) >= maxSpare || cap(j.Hops) > maxSpareHopsCap {
		return
	}
	// Cleared, so that a spare journey keeps nothing alive and a reused
	// one shows nothing of its past.
	clear(j.Hops)
	*j = Journey{Hops: j.Hops[:0]}
	a.spareJourneys = append(a.spareJourneys, j)
}

func (a *Assembler) count(j *Journey) {
	a.stats.Journeys++
	a.stats.ByVerdict[j.Verdict]++
	if j.TimedOut {
		a.stats.TimedOut++
	}
}
