package render

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// Proto names the packet's protocol as shown: TCP, UDP, ICMP, ICMPv6, ARP,
// IP (other IP protocol) or the EtherType in hex.
func Proto(p *event.Packet) string {
	switch {
	case p.Layers.Has(event.LayerARP):
		return "ARP"
	case p.Layers.Has(event.LayerTCP):
		return "TCP"
	case p.Layers.Has(event.LayerUDP):
		return "UDP"
	case p.Layers.Has(event.LayerICMP):
		return "ICMP"
	case p.Layers.Has(event.LayerICMPv6):
		return "ICMPv6"
	case p.Layers.Has(event.LayerIPv4), p.Layers.Has(event.LayerIPv6):
		return "IP/" + strconv.Itoa(int(p.Proto))
	}
	return fmt.Sprintf("0x%04x", p.EtherType)
}

// TCPFlags in tcpdump's letters: S F R P U E W, "." for ACK.
func TCPFlags(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint8
		c   byte
	}{{event.TCPSyn, 'S'}, {event.TCPFin, 'F'}, {event.TCPRst, 'R'}, {event.TCPPsh, 'P'}, {event.TCPUrg, 'U'}, {event.TCPEce, 'E'}, {event.TCPCwr, 'W'}, {event.TCPAck, '.'}} {
		if f&x.bit != 0 {
			b.WriteByte(x.c)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

func hostPort(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}

func addr(a netip.Addr) string {
	if !a.IsValid() {
		return "?"
	}
	return a.String()
}

// Describe is the one-line packet summary: "TCP 172.17.0.2:41234 > 172.17.0.3:8080 [S]".
func Describe(p *event.Packet) string {
	switch {
	case p.Layers.Has(event.LayerARP):
		switch p.ARPOp {
		case 1:
			return "ARP who-has " + addr(p.Dst) + " tell " + addr(p.Src)
		case 2:
			return "ARP reply " + addr(p.Src) + " is-at " + net.HardwareAddr(p.ARPSenderMAC[:]).String()
		}
		return fmt.Sprintf("ARP op %d %s > %s", p.ARPOp, addr(p.Src), addr(p.Dst))
	case p.Layers.Has(event.LayerTCP):
		return "TCP " + hostPort(p.Src, p.SrcPort) + " > " + hostPort(p.Dst, p.DstPort) + " [" + TCPFlags(p.TCPFlags) + "]"
	case p.Layers.Has(event.LayerUDP):
		return "UDP " + hostPort(p.Src, p.SrcPort) + " > " + hostPort(p.Dst, p.DstPort)
	case p.Layers.Has(event.LayerICMP), p.Layers.Has(event.LayerICMPv6):
		return Proto(p) + " " + addr(p.Src) + " > " + addr(p.Dst) + " " + icmpName(p)
	case p.Layers.Has(event.LayerIPv4), p.Layers.Has(event.LayerIPv6):
		return Proto(p) + " " + addr(p.Src) + " > " + addr(p.Dst)
	}
	return fmt.Sprintf("ether 0x%04x %s > %s", p.EtherType, net.HardwareAddr(p.SrcMAC[:]), net.HardwareAddr(p.DstMAC[:]))
}

func icmpName(p *event.Packet) string {
	v6 := p.Layers.Has(event.LayerICMPv6)
	switch {
	case !v6 && p.ICMPType == 8, v6 && p.ICMPType == 128:
		return fmt.Sprintf("echo request id %d seq %d", p.ICMPID, p.ICMPSeq)
	case !v6 && p.ICMPType == 0, v6 && p.ICMPType == 129:
		return fmt.Sprintf("echo reply id %d seq %d", p.ICMPID, p.ICMPSeq)
	case !v6 && p.ICMPType == 3:
		return fmt.Sprintf("unreachable code %d", p.ICMPCode)
	}
	return fmt.Sprintf("type %d code %d", p.ICMPType, p.ICMPCode)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// appendTrimmed appends f with at most prec decimals, without trailing
// zeros.
func appendTrimmed(b []byte, f float64, prec int) []byte {
	n := len(b)
	b = strconv.AppendFloat(b, f, 'f', prec, 64)
	if bytes.IndexByte(b[n:], '.') >= 0 {
		for b[len(b)-1] == '0' {
			b = b[:len(b)-1]
		}
		if b[len(b)-1] == '.' {
			b = b[:len(b)-1]
		}
	}
	return b
}
