package render

import (
	"net/netip"
	"strconv"
	"unicode/utf8"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// The strings of a journey line, appended as escaped JSON string content
// (without the quotes) instead of being built as Go strings first. Each
// appendX says which function's string it appends; the render tests compare
// them with that function for every case.

const hexDigits = "0123456789abcdef"

// appendQuoted appends s as a JSON string.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped appends s escaped as encoding/json escapes it with
// SetEscapeHTML(false): `"` and `\` and control characters escaped (\b \f
// \n \r \t, else \u00XX), each byte of invalid UTF-8 as \ufffd, U+2028 and
// U+2029 as \u2028 and \u2029; <, > and & as they are.
func appendEscaped(b []byte, s string) []byte { return appendEscapedText(b, s) }

// appendEscapedBytes is appendEscaped for text built in a byte buffer.
func appendEscapedBytes(b []byte, s []byte) []byte { return appendEscapedText(b, s) }

func appendEscapedText[T string | []byte](b []byte, s T) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(b, s[start:]...)
}

func decodeRune[T string | []byte](s T) (rune, int) {
	switch v := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	return utf8.RuneError, 1
}

// jsonSafe are the bytes appendEscaped copies as they are: ASCII but
// control characters, '"' and '\\'.
var jsonSafe = func() (safe [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		safe[c] = c != '"' && c != '\\'
	}
	return safe
}()

// appendLabel appends topology.Endpoint.Label, escaped.
func appendLabel(b []byte, e *topology.Endpoint) []byte {
	if p, ok := e.LabelPrefix(); ok {
		b = append(appendEscaped(b, p), ':')
	}
	return appendEscaped(b, e.Name)
}

// appendBridgeLabel appends journey.BridgeStep.Label.
func appendBridgeLabel(b []byte, s journey.BridgeStep) []byte {
	return appendEscaped(b, s.Label())
}

// appendAction appends journey.Hop.Action, escaped: the action is built
// in a buffer on the stack, then escaped into b.
func appendAction(b []byte, h *journey.Hop) []byte {
	var scratch [128]byte
	raw := h.AppendAction(scratch[:0])
	return appendEscapedBytes(b, raw)
}

// appendDescribe appends Describe.
func appendDescribe(b []byte, p *event.Packet) []byte {
	switch {
	case p.Layers.Has(event.LayerARP):
		switch p.ARPOp {
		case 1:
			b = appendAddrOrQ(append(b, "ARP who-has "...), p.Dst)
			return appendAddrOrQ(append(b, " tell "...), p.Src)
		case 2:
			b = appendAddrOrQ(append(b, "ARP reply "...), p.Src)
			return appendMAC(append(b, " is-at "...), &p.ARPSenderMAC)
		}
		b = strconv.AppendUint(append(b, "ARP op "...), uint64(p.ARPOp), 10)
		b = appendAddrOrQ(append(b, ' '), p.Src)
		return appendAddrOrQ(append(b, " > "...), p.Dst)
	case p.Layers.Has(event.LayerTCP):
		b = appendHostPort(append(b, "TCP "...), p.Src, p.SrcPort)
		b = appendHostPort(append(b, " > "...), p.Dst, p.DstPort)
		b = appendTCPFlags(append(b, " ["...), p.TCPFlags)
		return append(b, ']')
	case p.Layers.Has(event.LayerUDP):
		b = appendHostPort(append(b, "UDP "...), p.Src, p.SrcPort)
		return appendHostPort(append(b, " > "...), p.Dst, p.DstPort)
	case p.Layers.Has(event.LayerICMP), p.Layers.Has(event.LayerICMPv6):
		b = appendAddrOrQ(append(appendProto(b, p), ' '), p.Src)
		b = appendAddrOrQ(append(b, " > "...), p.Dst)
		return appendICMPName(append(b, ' '), p)
	case p.Layers.Has(event.LayerIPv4), p.Layers.Has(event.LayerIPv6):
		b = appendAddrOrQ(append(appendProto(b, p), ' '), p.Src)
		return appendAddrOrQ(append(b, " > "...), p.Dst)
	}
	b = appendHexPad(append(b, "ether 0x"...), uint64(p.EtherType), 4)
	b = appendMAC(append(b, ' '), &p.SrcMAC)
	return appendMAC(append(b, " > "...), &p.DstMAC)
}

// appendICMPName appends icmpName.
func appendICMPName(b []byte, p *event.Packet) []byte {
	v6 := p.Layers.Has(event.LayerICMPv6)
	switch {
	case !v6 && p.ICMPType == 8, v6 && p.ICMPType == 128:
		b = strconv.AppendUint(append(b, "echo request id "...), uint64(p.ICMPID), 10)
		return strconv.AppendUint(append(b, " seq "...), uint64(p.ICMPSeq), 10)
	case !v6 && p.ICMPType == 0, v6 && p.ICMPType == 129:
		b = strconv.AppendUint(append(b, "echo reply id "...), uint64(p.ICMPID), 10)
		return strconv.AppendUint(append(b, " seq "...), uint64(p.ICMPSeq), 10)
	case !v6 && p.ICMPType == 3:
		return strconv.AppendUint(append(b, "unreachable code "...), uint64(p.ICMPCode), 10)
	}
	b = strconv.AppendUint(append(b, "type "...), uint64(p.ICMPType), 10)
	return strconv.AppendUint(append(b, " code "...), uint64(p.ICMPCode), 10)
}

// appendProto appends Proto.
func appendProto(b []byte, p *event.Packet) []byte {
	switch {
	case p.Layers.Has(event.LayerARP):
		return append(b, "ARP"...)
	case p.Layers.Has(event.LayerTCP):
		return append(b, "TCP"...)
	case p.Layers.Has(event.LayerUDP):
		return append(b, "UDP"...)
	case p.Layers.Has(event.LayerICMP):
		return append(b, "ICMP"...)
	case p.Layers.Has(event.LayerICMPv6):
		return append(b, "ICMPv6"...)
	case p.Layers.Has(event.LayerIPv4), p.Layers.Has(event.LayerIPv6):
		return strconv.AppendUint(append(b, "IP/"...), uint64(p.Proto), 10)
	}
	return appendHexPad(append(b, "0x"...), uint64(p.EtherType), 4)
}

// tcpFlagLetters are TCPFlags' letters in its order.
var tcpFlagLetters = [...]struct {
	bit uint8
	c   byte
}{{event.TCPSyn, 'S'}, {event.TCPFin, 'F'}, {event.TCPRst, 'R'}, {event.TCPPsh, 'P'}, {event.TCPUrg, 'U'}, {event.TCPEce, 'E'}, {event.TCPCwr, 'W'}, {event.TCPAck, '.'}}

// appendTCPFlags appends TCPFlags.
func appendTCPFlags(b []byte, f uint8) []byte {
	n := len(b)
	for _, x := range tcpFlagLetters {
		if f&x.bit != 0 {
			b = append(b, x.c)
		}
	}
	if len(b) == n {
		b = append(b, "none"...)
	}
	return b
}

// appendMAC appends net.HardwareAddr.String of a 6-byte address.
func appendMAC(b []byte, m *[6]byte) []byte {
	for i, c := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

// appendAddr appends netip.Addr.String.
func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(b, "invalid IP"...)
	case a.Zone() != "":
		return appendEscaped(b, a.String()) // a zone may hold anything
	}
	return a.AppendTo(b)
}

// appendAddrOrQ appends addr: "?" for no address.
func appendAddrOrQ(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, '?')
	}
	return appendAddr(b, a)
}

// appendHostPort appends hostPort, that is netip.AddrPort.String.
func appendHostPort(b []byte, a netip.Addr, port uint16) []byte {
	ap := netip.AddrPortFrom(a, port)
	switch {
	case !a.IsValid():
		return append(b, "invalid AddrPort"...)
	case a.Zone() != "":
		return appendEscaped(b, ap.String())
	}
	return ap.AppendTo(b)
}

// appendFlow appends journey.Flow.String.
func appendFlow(b []byte, f journey.Flow) []byte {
	b = appendHostPort(b, f.Src.Addr(), f.Src.Port())
	b = append(b, " > "...)
	return appendHostPort(b, f.Dst.Addr(), f.Dst.Port())
}

// appendHexPad appends x in lower-case hex, zero-padded to width digits
// (fmt's %0<width>x).
func appendHexPad(b []byte, x uint64, width int) []byte {
	n := 1
	for y := x >> 4; y != 0; y >>= 4 {
		n++
	}
	for ; n < width; n++ {
		b = append(b, '0')
	}
	return strconv.AppendUint(b, x, 16)
}
