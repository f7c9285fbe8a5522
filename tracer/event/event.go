// Package event holds the pure Go form of what the kernel side reports: a Hop
// (a packet seen at one TC hook) and a Drop (a packet freed with a drop reason).
//
// The tracer decodes the bpf2go-generated wire structs into these types; the
// journey assembler, the recording format and the printers only ever see these,
// so none of them imports a kernel or Docker package.
package event

import (
	"fmt"
	"net/netip"
)

// Direction is the TC hook direction at the interface the hop was seen on.
type Direction uint8

const (
	// Ingress: the packet arrived at the interface (for the host end of a veth,
	// that means it left the container).
	Ingress Direction = 0
	// Egress: the packet is leaving through the interface.
	Egress Direction = 1
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return fmt.Sprintf("dir(%d)", uint8(d))
}

// Hop is one packet observed at one TC hook.
type Hop struct {
	// TimeNS is the kernel monotonic clock (bpf_ktime_get_ns) at the hook.
	TimeNS uint64
	// Ifindex and NetnsIno identify the interface the hook is attached to;
	// NetnsIno is the inode number of that interface's network namespace.
	Ifindex  uint32
	NetnsIno uint32
	Dir      Direction
	// Len is skb->len: with offloads this may be a GSO/GRO super-packet.
	Len uint32
	// GSOSegs and GSOSize are the skb's GSO segment count and size (0 when not GSO).
	GSOSegs uint16
	GSOSize uint16
	// SkbKey is the kernel struct sk_buff address, or 0 when the kernel
	// cannot cast the TC context (kernel < 6.3). It identifies a packet only
	// together with Fingerprint and time: freed skbs are reused quickly.
	SkbKey uint64
	// PacketID is assigned in the kernel at the first hook that sees a
	// packet and carried to its later hops and its Drop: equal for the hops
	// of one packet, different for two packets even with identical bytes in
	// a reused skb (a packet passing a hook it already passed is a new
	// packet). 0 when unknown. Join journeys by PacketID when it is set.
	PacketID uint64
	// Fingerprint is a hash of packet content that does not change across
	// bridge hops or NAT (IP ID, L4 sequence numbers, lengths, ...).
	Fingerprint uint64
	// Pkt is the decoded header summary; at an underlay hook, of the packet
	// inside the tunnel.
	Pkt Packet
	// Tunnel is set at an overlay's underlay hook: the packet crossed it
	// encapsulated in VXLAN.
	Tunnel Tunnel
	// Data is the first snaplen bytes of the packet (nil when snaplen is 0);
	// at an underlay hook they begin with the outer headers. Read only: the
	// hops of a packet read from a recording may share it.
	Data []byte
}

// Tunnel is what the outer headers of a VXLAN-encapsulated packet say.
type Tunnel struct {
	// VNI is the VXLAN network identifier: which overlay network.
	VNI uint32
	// Peer is the other node: the outer destination of a packet leaving
	// the host, the outer source of one arriving. Invalid: not tunneled.
	Peer netip.Addr
}

// Valid reports whether the hop was seen encapsulated.
func (t Tunnel) Valid() bool { return t.Peer.IsValid() }

// Layer flags say which parts of Packet were decoded.
type Layer uint16

const (
	LayerEth Layer = 1 << iota
	LayerVLAN
	LayerARP
	LayerIPv4
	LayerIPv6
	LayerTCP
	LayerUDP
	LayerICMP   // ICMPv4
	LayerICMPv6 // ICMPv6
	LayerFragment
)

// Has reports whether all of the given layers were decoded.
func (l Layer) Has(x Layer) bool { return l&x == x }

// TCP flag bits as they appear in the TCP header.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEce uint8 = 0x40
	TCPCwr uint8 = 0x80
)

// IP protocol numbers used by the decoder.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// EtherTypes used by the decoder.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeARP  uint16 = 0x0806
	EtherTypeVLAN uint16 = 0x8100
	EtherTypeIPv6 uint16 = 0x86dd
)

// Packet is the header summary decoded in the kernel.
type Packet struct {
	Layers Layer

	// Ethernet.
	SrcMAC, DstMAC [6]byte
	EtherType      uint16 // after any VLAN tag
	VLAN           uint16 // VLAN ID when LayerVLAN is set

	// IPv4/IPv6, or for ARP the sender (Src) and target (Dst) protocol addresses.
	Src, Dst netip.Addr
	Proto    uint8  // IP protocol / IPv6 next header
	IPID     uint32 // IPv4 identification or IPv6 flow label
	TTL      uint8  // TTL or hop limit

	// TCP/UDP.
	SrcPort, DstPort uint16
	TCPFlags         uint8
	Seq, Ack         uint32

	// ICMP/ICMPv6.
	ICMPType, ICMPCode uint8
	ICMPID, ICMPSeq    uint16

	// ARP.
	ARPOp                      uint16
	ARPSenderMAC, ARPTargetMAC [6]byte
}

// Drop is a packet, seen earlier at a hook, freed by the kernel with a reason.
type Drop struct {
	TimeNS uint64
	SkbKey uint64
	// PacketID is the PacketID of the dropped packet's hops.
	PacketID uint64
	// Fingerprint of the dropped packet, computed as for a Hop, so a drop
	// joins a journey on kernels without an skb key too.
	Fingerprint uint64
	// Reason is the kernel's enum skb_drop_reason value; ReasonName is its
	// name from the running kernel's BTF without the SKB_DROP_REASON_ prefix
	// (for example "NETFILTER_DROP").
	Reason     uint32
	ReasonName string
	// Ifindex and NetnsIno of skb->dev at the time of the drop (0 if none).
	Ifindex  uint32
	NetnsIno uint32
	// Location is the kernel text address that freed the skb (may be 0).
	Location uint64
	// Pkt is the decoded header summary of the dropped packet, when known.
	Pkt Packet
}

// Loss counts events the kernel could not deliver because the ring buffer
// was full, and packets it lost track of.
type Loss struct {
	// Hops and Drops lost, summed over CPUs.
	Hops  uint64
	Drops uint64
	// Evicted counts packets the kernel forgot between two hooks: its
	// table of packets in flight was full. Such a packet's journey is
	// split in two and a drop after the split goes unreported. Counted
	// where it shows: at the ingress of a veth whose peer is traced, a
	// packet the kernel does not know (see tracer.Options.InFlightPerCPU).
	Evicted uint64
}

// Total is all events lost (Evicted counts packets, not events).
func (l Loss) Total() uint64 { return l.Hops + l.Drops }
