package exchange

import (
	"net/netip"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// tuple is a TCP or UDP address pair as one side of the conversation sees
// it (NAT may show the other side different ones).
type tuple struct {
	src, dst netip.AddrPort
}

func (t tuple) reverse() tuple { return tuple{src: t.dst, dst: t.src} }

func (t tuple) compare(o tuple) int {
	if c := t.src.Compare(o.src); c != 0 {
		return c
	}
	return t.dst.Compare(o.dst)
}

// seg is what linking and pairing need of one journey's packet.
type seg struct {
	j        *journey.Journey
	proto    uint8 // event.ProtoTCP or event.ProtoUDP
	flags    uint8
	seq, ack uint32
	// data: a TCP segment with payload (see carriesData); UDP: always.
	data bool
	// from is the first hop, where the sender put the packet on its way;
	// to the hop where it was delivered, nil when it was not.
	from, to *journey.Hop
	// out is the tuple as sent (at from), in as delivered (at to).
	out, in tuple
}

// sent is when the packet left its sender (its first hop).
func (s *seg) sent() uint64 { return s.from.TimeNS }

// has reports whether all of the TCP flags f are set.
func (s *seg) has(f uint8) bool { return s.flags&f == f }

// occupies reports whether a TCP segment takes sequence space: a later one
// with the same sequence number repeats it.
func (s *seg) occupies() bool { return s.data || s.flags&(event.TCPSyn|event.TCPFin) != 0 }

// classify reads a journey as a TCP or UDP packet, all but where it was
// delivered (see locate); ok is false for anything else (ARP, ICMP, later
// fragments without ports).
func classify(j *journey.Journey, s *seg) bool {
	p := j.Packet()
	if p == nil || !p.Src.IsValid() || !p.Dst.IsValid() {
		return false
	}
	var proto uint8
	switch {
	case p.Layers.Has(event.LayerTCP):
		proto = event.ProtoTCP
	case p.Layers.Has(event.LayerUDP):
		proto = event.ProtoUDP
	default:
		return false
	}
	if p.SrcPort == 0 && p.DstPort == 0 {
		return false
	}
	*s = seg{j: j, proto: proto, flags: p.TCPFlags, seq: p.Seq, ack: p.Ack, data: true, from: &j.Hops[0]}
	s.out = tupleOf(&s.from.Pkt)
	if proto == event.ProtoTCP {
		s.data = carriesData(s.from)
	}
	return true
}

// locate finds where the packet was delivered (to, in): pairing needs it,
// linking does not.
func (s *seg) locate() {
	if s.to = arrival(s.j); s.to != nil {
		s.in = tupleOf(&s.to.Pkt)
	}
}

func tupleOf(p *event.Packet) tuple {
	return tuple{src: netip.AddrPortFrom(p.Src, p.SrcPort), dst: netip.AddrPortFrom(p.Dst, p.DstPort)}
}

// maxTCPOptions is the most a TCP header carries beyond its 20 bytes.
const maxTCPOptions = 40

// carriesData decides whether a TCP segment has payload from its flags and
// length (hop lengths are skb->len, link header included). PSH marks the
// end of a write and is never set without data; past the largest possible
// header there is data; a short segment without PSH is a bare ACK (or one
// of the rare data segments of at most 40 bytes that end no write).
func carriesData(h *journey.Hop) bool {
	p := &h.Pkt
	if p.TCPFlags&event.TCPPsh != 0 || h.GSOSegs > 1 {
		return true
	}
	hdr := uint32(20) // TCP without options
	if p.Layers.Has(event.LayerEth) {
		hdr += 14
	}
	if p.Layers.Has(event.LayerVLAN) {
		hdr += 4
	}
	if p.Layers.Has(event.LayerIPv6) {
		hdr += 40
	} else {
		hdr += 20
	}
	return h.Len > hdr+maxTCPOptions
}

// arrival is the hop where a journey's packet was delivered: the terminal
// end of a branch that was not dropped, preferring a container or
// namespace (a flooded packet reaches several); nil when it was delivered
// nowhere.
func arrival(j *journey.Journey) *journey.Hop {
	switch j.Verdict {
	case journey.VerdictContainer, journey.VerdictHost, journey.VerdictLeftHost:
	default:
		return nil
	}
	var best *journey.Hop
	for i := range j.Hops {
		h := &j.Hops[i]
		if !h.Terminal() || !leaf(j, i) {
			continue
		}
		if d := j.Drop; d != nil && !d.AfterDelivery && d.After == i {
			continue
		}
		if best == nil || (!inContainer(best) && inContainer(h)) {
			best = h
		}
	}
	return best
}

// leaf reports whether no hop continues from hop i.
func leaf(j *journey.Journey, i int) bool {
	for k := i + 1; k < len(j.Hops); k++ {
		if j.Hops[k].Parent == i {
			return false
		}
	}
	return true
}

func inContainer(h *journey.Hop) bool {
	switch h.Endpoint.Role {
	case topology.RoleContainer, topology.RoleNetns:
		return true
	case topology.RoleHostVeth:
		return h.Endpoint.Container != nil
	}
	return false
}

// nameAt names the side of a conversation at hop h (its first hop when
// sending, where it was delivered when receiving): its container, its
// namespace, else its address (the host, or beyond it).
func nameAt(h *journey.Hop, addr netip.Addr, sending bool) string {
	if h != nil {
		e := &h.Endpoint
		switch {
		case e.Container != nil && e.Role == topology.RoleContainer:
			return e.Container.Name
		case e.Container != nil && e.Role == topology.RoleHostVeth && (h.Dir == event.Ingress) == sending:
			// A host veth's ingress is its container sending.
			return e.Container.Name
		case e.NetnsName != "" && (e.Role == topology.RoleNetns || e.Role == topology.RoleContainer):
			return e.NetnsName
		}
	}
	return addr.String()
}

// seqBefore reports whether TCP sequence number a comes before b.
func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }
