package pcapng

import (
	"encoding/binary"
	"net/netip"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// Synthesize builds the headers of a packet recorded without its bytes, from
// what the kernel decoded: Ethernet (with its VLAN tag), then IPv4 or IPv6 and
// TCP, UDP, ICMP or ICMPv6, or ARP. Lengths in the headers follow length
// (skb->len, the whole frame) so tools see the real sizes; what was not
// recorded is filled in plainly: no IP or TCP options, TCP window 65535,
// zero L4 checksums, no payload. The returned slice holds the headers only;
// a capture's original length says how long the packet really was.
func Synthesize(p *event.Packet, length uint32) []byte {
	b := make([]byte, 0, 14+4+40+28)
	b = append(b, p.DstMAC[:]...)
	b = append(b, p.SrcMAC[:]...)
	etherType := p.EtherType
	if etherType == 0 {
		switch {
		case p.Layers.Has(event.LayerIPv4):
			etherType = event.EtherTypeIPv4
		case p.Layers.Has(event.LayerIPv6):
			etherType = event.EtherTypeIPv6
		case p.Layers.Has(event.LayerARP):
			etherType = event.EtherTypeARP
		}
	}
	if p.Layers.Has(event.LayerVLAN) {
		b = binary.BigEndian.AppendUint16(b, event.EtherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, p.VLAN&0x0fff)
	}
	b = binary.BigEndian.AppendUint16(b, etherType)
	l3len := int(length) - len(b)

	switch {
	case p.Layers.Has(event.LayerARP) || etherType == event.EtherTypeARP:
		b = binary.BigEndian.AppendUint16(b, 1) // Ethernet
		b = binary.BigEndian.AppendUint16(b, event.EtherTypeIPv4)
		b = append(b, 6, 4)
		b = binary.BigEndian.AppendUint16(b, p.ARPOp)
		b = append(b, p.ARPSenderMAC[:]...)
		b = appendAddr4(b, p.Src)
		b = append(b, p.ARPTargetMAC[:]...)
		b = appendAddr4(b, p.Dst)
		return b
	case p.Layers.Has(event.LayerIPv4):
		start := len(b)
		b = append(b, 0x45, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(clamp(l3len, 20, 0xffff)))
		b = binary.BigEndian.AppendUint16(b, uint16(p.IPID))
		b = binary.BigEndian.AppendUint16(b, 0) // flags and fragment offset: not recorded
		b = append(b, p.TTL, p.Proto, 0, 0)
		b = appendAddr4(b, p.Src)
		b = appendAddr4(b, p.Dst)
		binary.BigEndian.PutUint16(b[start+10:], ipChecksum(b[start:]))
		return appendL4(b, p, l3len-20)
	case p.Layers.Has(event.LayerIPv6):
		b = binary.BigEndian.AppendUint32(b, 6<<28|p.IPID&0xfffff)
		b = binary.BigEndian.AppendUint16(b, uint16(clamp(l3len-40, 0, 0xffff)))
		b = append(b, p.Proto, p.TTL)
		s, d := p.Src.As16(), p.Dst.As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		return appendL4(b, p, l3len-40)
	}
	return b
}

func appendL4(b []byte, p *event.Packet, l4len int) []byte {
	switch {
	case p.Layers.Has(event.LayerFragment):
		return b // a later fragment has no L4 header
	case p.Layers.Has(event.LayerTCP):
		b = binary.BigEndian.AppendUint16(b, p.SrcPort)
		b = binary.BigEndian.AppendUint16(b, p.DstPort)
		b = binary.BigEndian.AppendUint32(b, p.Seq)
		b = binary.BigEndian.AppendUint32(b, p.Ack)
		b = append(b, 5<<4, p.TCPFlags)
		b = binary.BigEndian.AppendUint16(b, 0xffff) // window: not recorded
		b = append(b, 0, 0, 0, 0)                    // checksum, urgent pointer
	case p.Layers.Has(event.LayerUDP):
		b = binary.BigEndian.AppendUint16(b, p.SrcPort)
		b = binary.BigEndian.AppendUint16(b, p.DstPort)
		b = binary.BigEndian.AppendUint16(b, uint16(clamp(l4len, 8, 0xffff)))
		b = append(b, 0, 0) // checksum 0: none (IPv4); not recorded
	case p.Layers.Has(event.LayerICMP) || p.Layers.Has(event.LayerICMPv6):
		b = append(b, p.ICMPType, p.ICMPCode, 0, 0)
		b = binary.BigEndian.AppendUint16(b, p.ICMPID)
		b = binary.BigEndian.AppendUint16(b, p.ICMPSeq)
	}
	return b
}

func appendAddr4(b []byte, a netip.Addr) []byte {
	a = a.Unmap()
	if !a.Is4() {
		return append(b, 0, 0, 0, 0)
	}
	v := a.As4()
	return append(b, v[:]...)
}

func clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
