// Package journey joins the hops and drops of one packet into a Journey: the
// interfaces it passed, in order, with names, timing and its fate.
//
// It is pure Go: it sees only event.Hop, event.Drop and a topology.Namer, so
// live tracing, replay of a recording and the latency statistics all run the
// same code and, for the same input, produce the same journeys.
//
// All time is kernel monotonic nanoseconds taken from the events themselves;
// the assembler never reads a clock. Live callers drive Expire with the
// current monotonic time (minus a small lag for events still in the ring
// buffer); replay drives it with event time, so both give the same output.
package journey

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// Config bounds how long and how many journeys are kept open.
type Config struct {
	// Timeout is how long a journey that has not reached a terminal hop
	// stays open after its last event; then it is finished as it stands
	// (usually VerdictIncomplete). It is also the longest gap between two
	// hops of one packet. Default 200ms.
	Timeout time.Duration
	// Grace is how long a journey that reached a terminal hop (a container,
	// the host, an outside interface, a drop) waits for more hops: the other
	// clones of a flooded packet, the container side after a host veth, the
	// route on after a bridge passed it up. Default 25ms: on real hardware
	// the next hop follows within microseconds, but a loaded or emulated
	// host was seen to take 6ms between a veth and its peer, and a journey
	// finished too early is split in two.
	Grace time.Duration
	// MaxInFlight caps open journeys; past it the one closest to its deadline
	// is finished early and counted in Stats.Evictions. Default 65536.
	MaxInFlight int
	// HostNetnsIno is the host's network namespace inode, when known. It
	// lets an interface the Namer does not know be placed in or out of the
	// host, which decides whether its ingress ends a journey.
	HostNetnsIno uint32
	// EmitUnmatchedDrops emits a drop that joins no journey as a journey of
	// its own (no hops, VerdictDropped). Either way it is counted in
	// Stats.UnmatchedDrops.
	EmitUnmatchedDrops bool
}

// Defaults for zero Config fields.
const (
	DefaultTimeout     = 200 * time.Millisecond
	DefaultGrace       = 25 * time.Millisecond
	DefaultMaxInFlight = 65536
)

// Verdict is a journey's fate.
type Verdict uint8

const (
	// VerdictIncomplete: the journey timed out (or input ended) before it
	// reached a place where packets end, e.g. the receiving veth was not traced.
	VerdictIncomplete Verdict = iota
	// VerdictContainer: delivered to a container (its eth0 ingress, or the
	// host veth egress toward it when the container side is not traced).
	VerdictContainer
	// VerdictHost: passed up to the host by a bridge (or arrived at a host
	// interface) and seen nowhere after.
	VerdictHost
	// VerdictLeftHost: left the host through another interface (egress of a
	// host interface such as eth0, typically after MASQUERADE).
	VerdictLeftHost
	// VerdictDropped: the kernel freed it with a drop reason; see Journey.Drop.
	VerdictDropped
)

func (v Verdict) String() string {
	switch v {
	case VerdictIncomplete:
		return "incomplete"
	case VerdictContainer:
		return "delivered"
	case VerdictHost:
		return "host"
	case VerdictLeftHost:
		return "left-host"
	case VerdictDropped:
		return "dropped"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Hop is one place a journey passed.
type Hop struct {
	// Endpoint is the interface, resolved through the Namer when the hop was
	// added (so a later rename or a removed container does not change history).
	// When unresolved, Name is "if<ifindex>@ns<netns inode>" and Role is
	// topology.RoleUnknown.
	Endpoint topology.Endpoint
	Resolved bool
	// Dir is the hook direction at that interface; Action says it in the
	// packet's terms.
	Dir    event.Direction
	TimeNS uint64
	// Parent is the index in Journey.Hops of the hop this one continues from,
	// or -1 for the first hop. Journeys of flooded packets branch: several hops
	// share a parent.
	Parent int
	// Delta is the time since the parent hop.
	Delta time.Duration
	// Len is skb->len; with GSO (GSOSegs > 0) one hop carries GSOSegs
	// segments of up to GSOSize bytes, not one frame.
	Len     uint32
	GSOSegs uint16
	GSOSize uint16
	SkbKey  uint64
	// PacketID is the kernel's per-packet join key (0 when unknown).
	PacketID uint64
	Pkt      event.Packet
	// Tunnel is set where the packet crossed the host's wire inside an
	// overlay's VXLAN tunnel (Pkt is then the packet inside it); nil
	// elsewhere, which keeps every other hop small.
	Tunnel *Tunnel
	// Data is the event's packet bytes, kept as given (not copied).
	Data []byte
}

// Tunnel is what a hop inside VXLAN learnt from the outer headers, and the
// name of the node at the other end when the overlay lists it.
type Tunnel struct {
	event.Tunnel
	Node string
}

// Label is the hop's endpoint label, e.g. "web:eth0", "veth3c4d", "docker0".
func (h *Hop) Label() string { return h.Endpoint.Label() }

// Terminal reports whether a packet can end its way through the host here:
// arriving in a container or namespace, being passed up to the host, or
// leaving through a host interface. A packet that ends anywhere else was lost
// from view.
func (h *Hop) Terminal() bool { return hopKind(h, h.Endpoint.Role) != VerdictIncomplete }

// Action says what the hop means in the packet's terms: "left client",
// "entered bridge docker0", "left bridge toward web", "arrived in web", ...
func (h *Hop) Action() string { return string(h.AppendAction(nil)) }

// AppendAction appends Action to b, for printers that build lines without
// allocating.
func (h *Hop) AppendAction(b []byte) []byte {
	e := &h.Endpoint
	who := e.Name
	if e.Container != nil {
		who = e.Container.Name
	} else if e.NetnsName != "" {
		who = e.NetnsName
	}
	in := h.Dir == event.Ingress
	if t := h.Tunnel; t != nil {
		// An overlay's packet on the wire, inside VXLAN.
		if in {
			b = append(b, "arrived from "...)
		} else {
			b = append(b, "left host toward "...)
		}
		if t.Node != "" {
			b = append(append(b, t.Node...), ' ')
		}
		b = t.Peer.AppendTo(b)
		b = append(b, " (VNI "...)
		b = strconv.AppendUint(b, uint64(t.VNI), 10)
		return append(append(b, ") at "...), e.Name...)
	}
	switch e.Role {
	case topology.RoleContainer, topology.RoleNetns:
		if in {
			return append(append(b, "arrived in "...), who...)
		}
		return append(append(b, "left "...), who...)
	case topology.RoleHostVeth:
		br := e.Bridge
		if br == "" {
			br = "bridge"
		}
		switch {
		case in && e.Container != nil:
			return append(append(append(append(b, "left "...), who...), ", entered "...), br...)
		case in:
			return append(append(b, "entered "...), br...)
		case e.Container != nil:
			return append(append(append(append(b, "left "...), br...), " toward "...), who...)
		}
		return append(append(b, "left "...), br...)
	case topology.RoleBridge:
		if in {
			return append(append(b, "passed up to host by "...), e.Name...)
		}
		return append(append(b, "sent down by host into "...), e.Name...)
	case topology.RoleHost:
		if e.Driver == topology.DriverOverlay {
			// An overlay's vxlan0: the underlay hop, where traced, says
			// which node and VNI.
			if in {
				return append(append(b, "out of the VXLAN tunnel at "...), e.Name...)
			}
			return append(append(b, "into the VXLAN tunnel at "...), e.Name...)
		}
		if e.Driver != "" {
			// The parent of a macvlan/ipvlan network: the driver carries
			// its containers' packets through it.
			return append(append(append(append(b, "through "...), e.Driver...), " on "...), e.Name...)
		}
		if in {
			return append(append(b, "entered host at "...), e.Name...)
		}
		return append(append(b, "left host at "...), e.Name...)
	}
	return append(b, h.Dir.String()...)
}

// Drop is where and why a journey was dropped.
type Drop struct {
	// Endpoint is skb->dev at the drop when HasDev; Resolved is false when
	// the Namer did not know it.
	Endpoint topology.Endpoint
	Resolved bool
	HasDev   bool
	// After is the index of the hop the packet was last seen at, -1 if none.
	After int
	// AfterDelivery is true when that hop was the packet arriving in a
	// container or namespace: it got there, and that host's own stack freed
	// it (no socket listening, an unread queue purged at close, a ping reply
	// a raw socket took a copy of). The journey's verdict is then the
	// delivery; the drop says what the receiver did with it.
	AfterDelivery bool
	TimeNS        uint64
	Reason        uint32
	ReasonName    string
	Location      uint64
}

// Where is the label of the place the packet was dropped: the last hop it
// was seen at, else skb->dev. (skb->dev alone can mislead: in bridge
// forwarding it is already the port the packet was about to leave by.)
func (d *Drop) Where(j *Journey) string {
	if d.After >= 0 && d.After < len(j.Hops) {
		return j.Hops[d.After].Label()
	}
	if d.HasDev {
		return d.Endpoint.Label()
	}
	return "?"
}

// Dev is the label of skb->dev at the drop, "" when the kernel gave none.
func (d *Drop) Dev() string {
	if !d.HasDev {
		return ""
	}
	return d.Endpoint.Label()
}

// Reason name, or "reason(N)" when the kernel gave no name.
func (d *Drop) Name() string {
	if d.ReasonName != "" {
		return d.ReasonName
	}
	return fmt.Sprintf("reason(%d)", d.Reason)
}

// Flow is the address tuple of an IP packet (ports are 0 without TCP/UDP).
type Flow struct {
	Src, Dst netip.AddrPort
}

func (f Flow) String() string { return f.Src.String() + " > " + f.Dst.String() }

// RewriteKind says which side of the tuple NAT changed.
type RewriteKind uint8

const (
	SNAT RewriteKind = 1 << iota // source changed (MASQUERADE, or un-DNAT of a reply)
	DNAT                         // destination changed (published port, or un-SNAT of a reply)
)

func (k RewriteKind) String() string {
	switch k {
	case SNAT:
		return "SNAT"
	case DNAT:
		return "DNAT"
	case SNAT | DNAT:
		return "SNAT+DNAT"
	}
	return "none"
}

// Rewrite is an address change between a hop and its parent.
type Rewrite struct {
	// Hop is the index of the first hop showing the new tuple.
	Hop  int
	Kind RewriteKind
	From Flow
	To   Flow
}

// Journey is one packet's way through the host.
type Journey struct {
	// ID numbers journeys in the order they were started, from 1.
	ID uint64
	// Hops in time order (ties: order of arrival).
	Hops    []Hop
	Verdict Verdict
	// Drop is set when the kernel dropped the packet (any branch of it).
	Drop *Drop
	// Start and End are the times of the first and the last event (hop or drop).
	Start, End uint64
	// Transit is End - Start.
	Transit time.Duration
	// Rewrites are the NAT changes seen along the way, in hop order.
	Rewrites []Rewrite
	// Fanout is how many branches the journey ended in: 1 for unicast, more
	// when a bridge flooded the packet (ARP, broadcast, unknown unicast).
	Fanout int
	// Evicted is true when MaxInFlight forced the journey out early.
	Evicted bool
	// TimedOut is true when it was finished by Timeout rather than by reaching
	// a terminal hop (the journey may still have a verdict from its last hop).
	TimedOut    bool
	Fingerprint uint64
	// Retransmit is set when the packet repeats an earlier journey's TCP
	// segment (see Retransmit); nil otherwise.
	Retransmit *Retransmit
}

// First returns the journey's first hop, or nil when it has none (a lone drop).
func (j *Journey) First() *Hop {
	if len(j.Hops) == 0 {
		return nil
	}
	return &j.Hops[0]
}

// Packet returns the decoded headers as first seen (before any NAT).
func (j *Journey) Packet() *event.Packet {
	if len(j.Hops) == 0 {
		return nil
	}
	return &j.Hops[0].Pkt
}

// Leaves returns the indexes of hops no other hop continues from: the ends of
// the journey's branches, in hop order.
func (j *Journey) Leaves() []int {
	var out []int
	for i := range j.Hops {
		leaf := true
		for k := i + 1; k < len(j.Hops); k++ {
			if j.Hops[k].Parent == i {
				leaf = false
				break
			}
		}
		if leaf {
			out = append(out, i)
		}
	}
	return out
}

// Stats are running counters over everything the assembler saw.
type Stats struct {
	Journeys uint64 // journeys finished (returned)
	Hops     uint64 // hops added
	Drops    uint64 // drops added
	// DropsByReason counts drops (matched or not) by reason name.
	DropsByReason map[string]uint64
	// UnmatchedDrops joined no open journey.
	UnmatchedDrops uint64
	// Evictions are journeys finished early because MaxInFlight was reached.
	Evictions uint64
	// TimedOut are journeys finished by Timeout without a terminal hop.
	TimedOut uint64
	// ByVerdict counts finished journeys per verdict (indexed by Verdict).
	ByVerdict [VerdictDropped + 1]uint64
	// InFlight is the number of journeys open now; MaxInFlight the peak.
	InFlight    int
	MaxInFlight int
}
