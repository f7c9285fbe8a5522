package journey

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// Assembler joins hops and drops into journeys. It is not safe for
// concurrent use: feed it from one goroutine, in the order events arrived.
//
// Identity: a hop with the kernel's PacketID (and an skb key) joins the open
// journey with that ID. Otherwise it joins the open journey holding its SkbKey when the
// fingerprint matches and the journey has not passed this interface in this
// direction yet; otherwise (no key, a clone with a new key) it joins the
// oldest open journey with its fingerprint that has not passed here. A
// packet seen again where its journey already was (an identical datagram, a
// retransmission, a reused skb) starts a new journey.
type Assembler struct {
	cfg   Config
	namer topology.Namer

	nextID uint64
	heap   []*open          // open journeys, soonest deadline first
	byPID  map[uint64]*open // open journey per kernel packet ID
	bySkb  map[uint64]*open // newest open journey that holds this skb key
	byFP   map[uint64]*open // oldest open journey per fingerprint, chained by fpNext
	stats  Stats
}

// open is a journey still taking hops.
type open struct {
	j        *Journey // points at jv: one allocation per journey
	jv       Journey
	last     uint64 // latest event time
	deadline uint64
	terminal bool // reached a hop where packets end, or a drop
	heapIdx  int
	fpNext   *open
	sorted   bool // hops were added in time order
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
		cfg:   cfg,
		namer: namer,
		byPID: make(map[uint64]*open),
		bySkb: make(map[uint64]*open),
		byFP:  make(map[uint64]*open),
		stats: Stats{DropsByReason: make(map[string]uint64)},
	}
}

// AddHop adds one hop and returns the journeys that finished before its time
// (their grace or timeout passed, or MaxInFlight forced one out). The hop's
// Data is kept, not copied.
func (a *Assembler) AddHop(h event.Hop) []*Journey {
	out := a.expire(h.TimeNS, nil)
	a.stats.Hops++

	ep, resolved := a.resolve(h.NetnsIno, h.Ifindex)
	o := a.find(&h)
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
	if h.SkbKey != 0 {
		a.bySkb[h.SkbKey] = o
		if h.PacketID != 0 {
			a.byPID[h.PacketID] = o
		}
	}
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
	for len(a.heap) > 0 {
		o := a.heap[0]
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
	s.InFlight = len(a.heap)
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

// find returns the open journey a hop continues, or nil when the hop starts
// a new journey.
func (a *Assembler) find(h *event.Hop) *open {
	// The kernel's packet ID is exact when it was keyed by the skb. Keyed by
	// content (no skb key) it mixes up identical packets in flight, so then
	// the FIFO content join below does better. A clone gets a new ID at its
	// first hook: it falls through to the content join too.
	trustID := h.PacketID != 0 && h.SkbKey != 0
	if trustID {
		if o := a.byPID[h.PacketID]; o != nil && !passed(o.j, h) {
			return o
		}
	} else if h.SkbKey != 0 {
		if o := a.bySkb[h.SkbKey]; o != nil && o.j.Fingerprint == h.Fingerprint {
			if passed(o.j, h) {
				// Same skb and content where this packet already was: a
				// reused skb carrying an identical packet.
				return nil
			}
			return o
		}
	}
	if h.Fingerprint == 0 {
		return nil // no content key: nothing safe to join by
	}
	// Oldest first: identical packets on one path do not overtake each other.
	for o := a.byFP[h.Fingerprint]; o != nil; o = o.fpNext {
		if passed(o.j, h) {
			continue
		}
		if trustID && holdsSkb(o.j, h.SkbKey) {
			continue // the kernel said this skb carries a new packet now
		}
		return o
	}
	return nil
}

func holdsSkb(j *Journey, key uint64) bool {
	for i := range j.Hops {
		if j.Hops[i].SkbKey == key {
			return true
		}
	}
	return false
}

// findDrop returns the open journey a drop belongs to, or nil.
func (a *Assembler) findDrop(d *event.Drop) *open {
	if d.PacketID != 0 && d.SkbKey != 0 {
		if o := a.byPID[d.PacketID]; o != nil {
			return o
		}
	}
	if d.SkbKey != 0 {
		if o := a.bySkb[d.SkbKey]; o != nil && (d.Fingerprint == 0 || o.j.Fingerprint == d.Fingerprint) {
			return o
		}
	}
	if d.Fingerprint == 0 {
		return nil
	}
	for o := a.byFP[d.Fingerprint]; o != nil; o = o.fpNext {
		if o.j.Drop == nil {
			return o
		}
	}
	return nil
}

// passed reports whether the journey was already seen at the hop's
// interface in the hop's direction.
func passed(j *Journey, h *event.Hop) bool {
	for i := range j.Hops {
		p := &j.Hops[i]
		if p.Endpoint.Ifindex == h.Ifindex && p.Endpoint.NetnsIno == h.NetnsIno && p.Dir == h.Dir {
			return true
		}
	}
	return false
}

// parentOf picks the hop hop i continues from, among the hops before it in
// time: the latest that can precede it in bridge networking with the same
// skb, else the latest that can precede it at all (a clone), else the latest
// with the same skb, else the one just before.
func parentOf(hops []Hop, i int) int {
	h := &hops[i]
	plausible, sameSkb := -1, -1
	for k := i - 1; k >= 0; k-- {
		p := &hops[k]
		same := h.SkbKey != 0 && p.SkbKey == h.SkbKey
		if canPrecede(p, &h.Endpoint, h.Dir) {
			if same {
				return k
			}
			if plausible < 0 {
				plausible = k
			}
		} else if same && sameSkb < 0 {
			sameSkb = k
		}
	}
	switch {
	case plausible >= 0:
		return plausible
	case sameSkb >= 0:
		return sameSkb
	}
	return i - 1
}

// canPrecede reports whether a packet at prev can next be seen at ep in dir.
func canPrecede(prev *Hop, ep *topology.Endpoint, dir event.Direction) bool {
	p := &prev.Endpoint
	pin := prev.Dir == event.Ingress
	in := dir == event.Ingress
	sameBridge := p.Bridge == "" || ep.Bridge == "" || p.Bridge == ep.Bridge
	switch {
	case ep.Role == topology.RoleContainer && in:
		// Arrives in a container from the host end of its veth.
		return p.Role == topology.RoleHostVeth && !pin && peers(p, ep)
	case ep.Role == topology.RoleHostVeth && in:
		// Leaves the container through its veth.
		return p.Role == topology.RoleContainer && !pin && peers(ep, p)
	case ep.Role == topology.RoleHostVeth && !in:
		// Bridged from another port, or sent down by the host into the bridge.
		return sameBridge && ((p.Role == topology.RoleHostVeth && pin) || (p.Role == topology.RoleBridge && !pin))
	case ep.Role == topology.RoleBridge && in:
		// The bridge passes up what one of its ports received.
		return p.Role == topology.RoleHostVeth && pin && sameBridge
	case ep.Role == topology.RoleBridge && !in, ep.Role == topology.RoleHost && !in:
		// Host routing: from a bridge passed up, or from a host interface.
		return (p.Role == topology.RoleBridge || p.Role == topology.RoleHost) && pin
	}
	return false
}

// peers reports whether host-side veth v is the peer of container interface c.
func peers(v, c *topology.Endpoint) bool {
	if v.PeerIfindex != 0 {
		return v.PeerIfindex == c.Ifindex && (v.PeerNetnsIno == 0 || v.PeerNetnsIno == c.NetnsIno)
	}
	if v.Container != nil && c.Container != nil {
		return v.Container.ID == c.Container.ID
	}
	return true // not known: do not rule it out
}

// terminalKind is the verdict of a journey whose branch ends at a hook of
// this role and direction, or VerdictIncomplete when packets do not end there.
func terminalKind(r topology.Role, d event.Direction) Verdict {
	in := d == event.Ingress
	switch r {
	case topology.RoleContainer, topology.RoleNetns:
		if in {
			return VerdictContainer
		}
	case topology.RoleHostVeth:
		if !in { // handed to the veth toward the container
			return VerdictContainer
		}
	case topology.RoleBridge:
		if in {
			return VerdictHost
		}
	case topology.RoleHost:
		if in {
			return VerdictHost
		}
		return VerdictLeftHost
	}
	return VerdictIncomplete
}

// kind is terminalKind, placing unresolved interfaces by their namespace.
func (a *Assembler) kind(h *Hop) Verdict {
	r := h.Endpoint.Role
	if r == topology.RoleUnknown && a.cfg.HostNetnsIno != 0 && h.Endpoint.NetnsIno != a.cfg.HostNetnsIno {
		r = topology.RoleNetns
	}
	return terminalKind(r, h.Dir)
}

func (a *Assembler) start(fp uint64, t uint64) *open {
	a.nextID++
	o := &open{jv: Journey{ID: a.nextID, Fingerprint: fp, Start: t, End: t, Hops: make([]Hop, 0, 4)}, last: t, sorted: true}
	o.j = &o.jv
	if fp != 0 {
		// Append to the chain's tail so the oldest stays first.
		if head := a.byFP[fp]; head == nil {
			a.byFP[fp] = o
		} else {
			for head.fpNext != nil {
				head = head.fpNext
			}
			head.fpNext = o
		}
	}
	o.heapIdx = len(a.heap)
	a.heap = append(a.heap, o)
	o.deadline = t + uint64(a.cfg.Timeout)
	a.up(o.heapIdx)
	if n := len(a.heap); n > a.stats.MaxInFlight {
		a.stats.MaxInFlight = n
	}
	return o
}

// touch records an event at t and moves the journey's deadline.
func (a *Assembler) touch(o *open, t uint64) {
	if t > o.last {
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
	o.deadline = o.last + uint64(wait)
	a.fix(o.heapIdx)
}

// makeRoom evicts the journey closest to its deadline when the cap is reached.
func (a *Assembler) makeRoom(out []*Journey) []*Journey {
	for len(a.heap) >= a.cfg.MaxInFlight {
		a.stats.Evictions++
		o := a.heap[0]
		out = append(out, a.finish(o, false, true))
	}
	return out
}

func (a *Assembler) expire(now uint64, out []*Journey) []*Journey {
	for len(a.heap) > 0 && a.heap[0].deadline < now {
		o := a.heap[0]
		out = append(out, a.finish(o, !o.terminal, false))
	}
	return out
}

// finish closes an open journey and computes what it tells.
func (a *Assembler) finish(o *open, timedOut, evicted bool) *Journey {
	a.remove(o.heapIdx)
	j := o.j
	if fp := j.Fingerprint; fp != 0 {
		if head := a.byFP[fp]; head == o {
			if o.fpNext == nil {
				delete(a.byFP, fp)
			} else {
				a.byFP[fp] = o.fpNext
			}
		} else {
			for p := head; p != nil; p = p.fpNext {
				if p.fpNext == o {
					p.fpNext = o.fpNext
					break
				}
			}
		}
	}
	for i := range j.Hops {
		if k := j.Hops[i].SkbKey; k != 0 && a.bySkb[k] == o {
			delete(a.bySkb, k)
		}
		if id := j.Hops[i].PacketID; id != 0 && a.byPID[id] == o {
			delete(a.byPID, id)
		}
	}
	if !o.sorted {
		sortHops(j)
	}
	j.TimedOut = timedOut
	j.Evicted = evicted
	a.summarize(j)
	a.count(j)
	return j
}

func (a *Assembler) count(j *Journey) {
	a.stats.Journeys++
	a.stats.ByVerdict[j.Verdict]++
	if j.TimedOut {
		a.stats.TimedOut++
	}
}

// sortHops puts hops in time order, keeping arrival order for ties, and
// renumbers the drop's hop.
func sortHops(j *Journey) {
	n := len(j.Hops)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(x, y int) bool { return j.Hops[order[x]].TimeNS < j.Hops[order[y]].TimeNS })
	newIdx := make([]int, n)
	hops := make([]Hop, n)
	for to, from := range order {
		newIdx[from] = to
		hops[to] = j.Hops[from]
	}
	if j.Drop != nil && j.Drop.After >= 0 {
		j.Drop.After = newIdx[j.Drop.After]
	}
	j.Hops = hops
}

// summarize fills deltas, transit, rewrites, fan-out and the verdict.
func (a *Assembler) summarize(j *Journey) {
	j.Transit = time.Duration(j.End - j.Start)
	var small [16]bool
	hasChild := small[:0]
	if len(j.Hops) > len(small) {
		hasChild = make([]bool, len(j.Hops))
	} else {
		hasChild = small[:len(j.Hops)]
	}
	for i := range j.Hops {
		h := &j.Hops[i]
		if i == 0 {
			continue
		}
		h.Parent = parentOf(j.Hops, i)
		p := &j.Hops[h.Parent]
		hasChild[h.Parent] = true
		if h.TimeNS > p.TimeNS {
			h.Delta = time.Duration(h.TimeNS - p.TimeNS)
		}
		if rw, ok := rewrite(&p.Pkt, &h.Pkt); ok {
			rw.Hop = i
			j.Rewrites = append(j.Rewrites, rw)
		}
	}

	if d := j.Drop; d != nil && d.After >= 0 && d.After < len(j.Hops) {
		h := &j.Hops[d.After]
		d.AfterDelivery = h.Dir == event.Ingress &&
			(h.Endpoint.Role == topology.RoleContainer || h.Endpoint.Role == topology.RoleNetns)
	}
	best := VerdictIncomplete
	leaves := 0
	for i := range j.Hops {
		if hasChild[i] {
			continue
		}
		leaves++
		if j.Drop != nil && j.Drop.After == i && !j.Drop.AfterDelivery {
			continue // this branch ended in the drop
		}
		if k := a.kind(&j.Hops[i]); rank(k) > rank(best) {
			best = k
		}
	}
	j.Fanout = leaves
	if best == VerdictIncomplete && j.Drop != nil {
		best = VerdictDropped
	}
	j.Verdict = best
}

// rank orders verdicts of a journey's branches: the furthest any copy got wins.
func rank(v Verdict) int {
	switch v {
	case VerdictContainer:
		return 3
	case VerdictLeftHost:
		return 2
	case VerdictHost:
		return 1
	}
	return 0
}

// flowOf returns the IP tuple of a packet, false when it is not IP.
func flowOf(p *event.Packet) (Flow, bool) {
	if !p.Src.IsValid() || !p.Dst.IsValid() || p.Layers.Has(event.LayerARP) {
		return Flow{}, false
	}
	return Flow{
		Src: netip.AddrPortFrom(p.Src, p.SrcPort),
		Dst: netip.AddrPortFrom(p.Dst, p.DstPort),
	}, true
}

// rewrite compares a hop's tuple with its parent's.
func rewrite(before, after *event.Packet) (Rewrite, bool) {
	f, ok1 := flowOf(before)
	t, ok2 := flowOf(after)
	if !ok1 || !ok2 {
		return Rewrite{}, false
	}
	var k RewriteKind
	if f.Src != t.Src {
		k |= SNAT
	}
	if f.Dst != t.Dst {
		k |= DNAT
	}
	if k == 0 {
		return Rewrite{}, false
	}
	return Rewrite{Kind: k, From: f, To: t}, true
}

// Min-heap of open journeys by (deadline, ID), so equal input gives equal output.

func (a *Assembler) less(x, y int) bool {
	ox, oy := a.heap[x], a.heap[y]
	if ox.deadline != oy.deadline {
		return ox.deadline < oy.deadline
	}
	return ox.j.ID < oy.j.ID
}

func (a *Assembler) swap(x, y int) {
	a.heap[x], a.heap[y] = a.heap[y], a.heap[x]
	a.heap[x].heapIdx = x
	a.heap[y].heapIdx = y
}

func (a *Assembler) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !a.less(i, p) {
			return
		}
		a.swap(i, p)
		i = p
	}
}

func (a *Assembler) down(i int) bool {
	start := i
	n := len(a.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && a.less(r, l) {
			m = r
		}
		if !a.less(m, i) {
			break
		}
		a.swap(i, m)
		i = m
	}
	return i > start
}

func (a *Assembler) fix(i int) {
	if !a.down(i) {
		a.up(i)
	}
}

func (a *Assembler) remove(i int) {
	last := len(a.heap) - 1
	if i != last {
		a.swap(i, last)
	}
	a.heap[last] = nil
	a.heap = a.heap[:last]
	if i != last {
		a.fix(i)
	}
}
