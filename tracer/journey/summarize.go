package journey

// What a finished journey tells: each hop's parent (branches of a flooded
// packet), the verdict, the deltas and the NAT rewrites.

import (
	"net/netip"
	"sort"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

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
func (a *Assembler) kind(h *Hop) Verdict { return hopKind(h, a.role(&h.Endpoint)) }

// hopKind is terminalKind for hop h at an interface of role r. A packet
// inside an overlay's tunnel left the host where it was seen leaving, and
// goes on into the overlay's vxlan0 where it was seen arriving, whatever
// the interface it crossed.
func hopKind(h *Hop, r topology.Role) Verdict {
	if h.Tunnel != nil {
		if h.Dir == event.Egress {
			return VerdictLeftHost
		}
		return VerdictIncomplete
	}
	return terminalKind(r, h.Dir)
}

// role is the endpoint's role, placing an unresolved interface outside the
// host's namespace in a container's (RoleNetns).
func (a *Assembler) role(ep *topology.Endpoint) topology.Role {
	r := ep.Role
	if r == topology.RoleUnknown && a.cfg.HostNetnsIno != 0 && ep.NetnsIno != a.cfg.HostNetnsIno {
		r = topology.RoleNetns
	}
	return r
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
