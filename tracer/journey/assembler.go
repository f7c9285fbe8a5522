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
// direction yet. Otherwise it may join by content (see find): only where the
// kernel cannot follow the skb when it gives skb keys, and only a journey of
// the same flow, with the same fingerprint and the same addresses and ports
// or ones NAT rewrote after host routing. A packet seen again where its
// journey already was (an identical datagram, a retransmission, a reused
// skb) starts a new journey.
type Assembler struct {
	cfg   Config
	namer topology.Namer

	nextID  uint64
	heap    []*open          // open journeys, soonest deadline first
	byPID   map[uint64]*open // open journey per kernel packet ID
	bySkb   map[uint64]*open // newest open journey that holds this skb key
	content contentIndex     // open journeys by fingerprint and flow
	stats   Stats
}

// open is a journey still taking hops.
type open struct {
	j        *Journey // points at jv: one allocation per journey
	jv       Journey
	last     uint64 // latest event time
	deadline uint64
	terminal bool // reached a hop where packets end, or a drop
	heapIdx  int
	sorted   bool   // hops were added in time order
	keyed    bool   // holds a hop with a packet ID the kernel keyed by skb
	hooks    uint64 // hookBit of every hop: most passed checks end here
	links    []link // places in the content index (linkBuf, unless NAT added more)
	linkBuf  [4]link
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
		byPID:   make(map[uint64]*open),
		bySkb:   make(map[uint64]*open),
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
	if h.SkbKey != 0 {
		a.bySkb[h.SkbKey] = o
		if h.PacketID != 0 {
			a.byPID[h.PacketID] = o
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
// a new journey. role is the hop's interface role (see Assembler.role), t
// its tuple and fk its flow key.
func (a *Assembler) find(h *event.Hop, role topology.Role, t *tuple, fk joinKey) *open {
	// The kernel's packet ID is exact when it was keyed by the skb. Keyed by
	// content (no skb key) it mixes up equal packets in flight, even of two
	// flows; the content join below does better. A clone gets a new ID at
	// its first hook: it falls through to the content join too.
	keyed := h.SkbKey != 0
	if keyed && h.PacketID != 0 {
		if o := a.byPID[h.PacketID]; o != nil && !o.passed(h) {
			return o
		}
	} else if keyed {
		if o := a.bySkb[h.SkbKey]; o != nil && o.j.Fingerprint == h.Fingerprint {
			if o.passed(h) {
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
	if keyed && !cloneAt(role, h.Dir) {
		// The kernel follows the skb here: a new one is a new packet.
		return nil
	}
	free := func(o *open) bool {
		// A journey that holds this skb already is another packet: the
		// kernel would have given this hop its ID.
		return o.j.Fingerprint == h.Fingerprint && !o.passed(h) && !(keyed && holdsSkb(o.j, h.SkbKey))
	}
	same := func(o *open) bool { return free(o) && o.hasTuple(t) }
	if o := a.content.newest(fk, same, 0); o != nil {
		return o
	}
	if !routedOut(role, h.Dir) {
		return nil
	}
	// Host routing ran before this hook: NAT may have rewritten one side.
	return a.natCandidate(h.Fingerprint, t, free)
}

// natCandidate returns the journey whose packet, last seen entering host
// routing, plausibly left it with tuple t: the same fingerprint and one side
// of the tuple kept (looked up by that side), the other rewritten. The one
// that kept most of the rewritten side wins, the oldest on a tie.
func (a *Assembler) natCandidate(fp uint64, t *tuple, free func(*open) bool) *open {
	score := func(o *open) int {
		if !free(o) {
			return -1
		}
		return o.natScore(t)
	}
	o, top := a.content.best(dstKey(fp, t), score, nil, -1) // SNAT, MASQUERADE: the destination kept
	o, _ = a.content.best(srcKey(fp, t), score, o, top)     // DNAT: the source kept
	return o
}

// natScore is the best tuple.nat score from a hop where o's packet entered
// host routing to t, -1 when t is no plausible rewrite of any.
func (o *open) natScore(t *tuple) int {
	top := -1
	for i := range o.j.Hops {
		p := &o.j.Hops[i]
		if routedIn(p.Endpoint.Role, p.Dir) {
			top = max(top, tupleOf(&p.Pkt).nat(t))
		}
	}
	return top
}

// index puts o in the content index under the hop's fingerprint and tuple,
// and by each side of the tuple where host routing (and NAT) follows.
func (a *Assembler) index(o *open, h *event.Hop, role topology.Role, t *tuple, fk joinKey) {
	if h.Fingerprint == 0 {
		return
	}
	a.content.add(o, fk)
	if routedIn(role, h.Dir) {
		a.content.add(o, srcKey(h.Fingerprint, t))
		a.content.add(o, dstKey(h.Fingerprint, t))
	}
}

// Where content joins may happen. The kernel carries one skb from a
// container's eth0 to its veth peer and back, and through a bridge between
// ports; a packet leaving a container or arriving from outside is new. A
// packet shows up in a skb of its own though it is not new only where a
// bridge floods copies (its ports' egress, its own ingress) or after host
// routing (a copy the stack made). NAT rewrites addresses and ports only
// in host routing (Docker's rules sit in the nat table's PREROUTING, OUTPUT
// and POSTROUTING): between a hook where a packet enters it (a bridge
// passing it up, a host interface's ingress) and one where it leaves (a
// bridge's or host interface's egress), and only one side of the tuple at a
// time: MASQUERADE the source, a published port the destination. Bridged
// traffic is not rewritten (Docker's rules skip docker0-to-docker0), so
// flows that differ only in an address never meet on a bridge. The
// exceptions (a hairpin reply un-NATed by br_netfilter on the bridge, a
// container reaching its own published port, rewritten on both sides) keep
// their skb, so are one journey on 6.3 and later, and show as two before:
// a split rather than a join of two flows.

// cloneAt reports whether a packet's copy can first be seen at a hook of
// this role and direction. An interface nobody named may be anywhere.
func cloneAt(r topology.Role, d event.Direction) bool {
	switch r {
	case topology.RoleHostVeth, topology.RoleHost:
		return d == event.Egress
	case topology.RoleBridge, topology.RoleUnknown:
		return true
	}
	return false
}

// routedIn reports whether host routing follows a hook: NAT may rewrite
// the packet after it.
func routedIn(r topology.Role, d event.Direction) bool {
	return d == event.Ingress && (r == topology.RoleBridge || r == topology.RoleHost)
}

// routedOut reports whether host routing precedes a hook: NAT may have
// rewritten the packet before it.
func routedOut(r topology.Role, d event.Direction) bool {
	return d == event.Egress && (r == topology.RoleBridge || r == topology.RoleHost)
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
	exact := d.PacketID != 0 && d.SkbKey != 0
	if exact {
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
	// The drop's decoded packet must agree with the journey's: its tuple as
	// one of the hops showed it, or rewritten after host routing (dropped
	// between PREROUTING and the egress hook). A packet ID keyed by skb is
	// exact: a journey whose hops carry such IDs and did not match it is
	// another packet. (Before 6.3 a drop still carries the skb address, but
	// its ID is keyed by content and the hops have no skb keys.)
	free := func(o *open) bool {
		return o.j.Fingerprint == d.Fingerprint && o.j.Drop == nil && !(exact && o.keyed)
	}
	t := tupleOf(&d.Pkt)
	same := func(o *open) bool { return free(o) && o.hasTuple(&t) }
	if o := a.content.newest(flowKey(d.Fingerprint, &t), same, lookahead); o != nil {
		return o
	}
	return a.natCandidate(d.Fingerprint, &t, free)
}

// hookBit is a hook's bit in open.hooks.
func hookBit(ifindex, netns uint32, dir event.Direction) uint64 {
	h := (uint64(ifindex)<<1 | uint64(dir)) ^ uint64(netns)*0x9e3779b97f4a7c15
	return 1 << (h * 0x9e3779b97f4a7c15 >> 58)
}

// passed reports whether the journey was already seen at the hop's
// interface in the hop's direction.
func (o *open) passed(h *event.Hop) bool {
	if o.hooks&hookBit(h.Ifindex, h.NetnsIno, h.Dir) == 0 {
		return false
	}
	j := o.j
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
func (a *Assembler) kind(h *Hop) Verdict { return terminalKind(a.role(&h.Endpoint), h.Dir) }

// role is the endpoint's role, placing an unresolved interface outside the
// host's namespace in a container's (RoleNetns).
func (a *Assembler) role(ep *topology.Endpoint) topology.Role {
	r := ep.Role
	if r == topology.RoleUnknown && a.cfg.HostNetnsIno != 0 && ep.NetnsIno != a.cfg.HostNetnsIno {
		r = topology.RoleNetns
	}
	return r
}

func (a *Assembler) start(fp uint64, t uint64) *open {
	a.nextID++
	o := &open{jv: Journey{ID: a.nextID, Fingerprint: fp, Start: t, End: t, Hops: make([]Hop, 0, 4)}, last: t, sorted: true}
	o.j = &o.jv
	o.links = o.linkBuf[:0]
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
	a.content.remove(o)
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
