package journey

// How a hop or a drop finds the open journey of its packet: by the kernel's
// packet ID, else by content within one flow (see the Assembler's doc).

import (
	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

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
		if o := a.byPID.Get(h.PacketID); o != nil && !o.passed(h) {
			return o
		}
	} else if keyed {
		if o := a.bySkb.Get(h.SkbKey); o != nil && o.j.Fingerprint == h.Fingerprint {
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
		if o := a.byPID.Get(d.PacketID); o != nil {
			return o
		}
	}
	if d.SkbKey != 0 {
		if o := a.bySkb.Get(d.SkbKey); o != nil && (d.Fingerprint == 0 || o.j.Fingerprint == d.Fingerprint) {
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
