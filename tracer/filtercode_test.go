package tracer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/filter"
)

// filterFrames are Ethernet frames of every kind the filter tells apart:
// IPv4 and IPv6; TCP, UDP, ICMP; a few addresses and ports; ARP. Each has
// its own IP ID (or flow label), so no two are the same packet.
func filterFrames() [][]byte {
	v4 := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.7"), netip.MustParseAddr("192.168.5.9")}
	v6 := []netip.Addr{netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00:0:0:1::7"), netip.MustParseAddr("2001:db8::9")}
	ports := []uint16{22, 53, 80, 443, 5001, 40000}
	var frames [][]byte
	id := uint16(1)
	for _, addrs := range [][]netip.Addr{v4, v6} {
		for si, src := range addrs {
			dst := addrs[(si+1)%len(addrs)]
			for _, proto := range []uint8{6, 17, 1} {
				for pi, sport := range ports {
					dport := ports[(pi+2)%len(ports)]
					frames = append(frames, ipFrame(src, dst, proto, sport, dport, id))
					id++
				}
			}
		}
	}
	arp := make([]byte, 14+28)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	copy(arp[14:], []byte{0, 1, 8, 0, 6, 4, 0, 1})
	copy(arp[14+14:], []byte{10, 0, 0, 1})
	copy(arp[14+24:], []byte{10, 0, 1, 7})
	return append(append(frames, arp), unusualFrames()...)
}

// unusualFrames are frames the hook's read of the frame in place
// (filter_frame) leaves to the full decode, each made so that reading it
// as a plain one would get the filter's fields wrong: their L4 header is
// elsewhere, absent or cut short, or another header comes first. UDP, when
// there is one, goes from port 40000 to 5001.
func unusualFrames() [][]byte {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.7")
	var frames [][]byte
	// IPv4 options: 4 bytes of NOPs (what a plain read takes for ports).
	f := ipFrame(a, b, 17, 40000, 5001, 1001)
	f = slices.Insert(f, 34, 1, 1, 1, 1)
	f[14] = 0x46
	binary.BigEndian.PutUint16(f[16:], uint16(len(f)-14))
	frames = append(frames, f)
	// A first fragment (more fragments) and a later one whose payload
	// looks like a UDP header to port 5001.
	f = ipFrame(a, b, 17, 40000, 5001, 1002)
	binary.BigEndian.PutUint16(f[20:], 0x2000)
	frames = append(frames, f)
	f = ipFrame(a, b, 17, 40000, 5001, 1003)
	binary.BigEndian.PutUint16(f[20:], 3)
	frames = append(frames, f)
	// ICMPv6's number in IPv4, and a protocol without ports (GRE).
	for i, proto := range []uint8{58, 47} {
		f = ipFrame(a, b, 17, 40000, 5001, 1004+uint16(i))
		f[23] = proto
		frames = append(frames, f)
	}
	// TCP cut short: 10 of its 20 bytes.
	f = ipFrame(a, b, 6, 40000, 5001, 1006)
	frames = append(frames, f[:34+10])
	// IPv6 with a hop-by-hop options header before UDP.
	f = ipFrame(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), 17, 40000, 5001, 1007)
	f[14+6] = 0
	f = slices.Insert(f, 54, 17, 0, 1, 4, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(f[18:], uint16(len(f)-54))
	frames = append(frames, f)
	// An 802.1Q tag in the frame.
	f = ipFrame(a, b, 17, 40000, 5001, 1008)
	f = slices.Insert(f, 12, 0x81, 0x00, 0x00, 0x07)
	return append(frames, f)
}

// ipFrame builds one frame; proto 1 is ICMP (ICMPv6 over IPv6).
func ipFrame(src, dst netip.Addr, proto uint8, sport, dport, id uint16) []byte {
	l4 := make([]byte, 20)
	switch proto {
	case 6:
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		l4[12] = 5 << 4
	case 17:
		l4 = l4[:8]
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], 8)
	case 1:
		l4 = l4[:8]
		l4[0] = 8
		binary.BigEndian.PutUint16(l4[4:], id)
	}
	var l3 []byte
	if src.Is4() {
		l3 = make([]byte, 20)
		l3[0], l3[8], l3[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(l3[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(l3[4:], id)
		s, d := src.As4(), dst.As4()
		copy(l3[12:], s[:])
		copy(l3[16:], d[:])
	} else {
		l3 = make([]byte, 40)
		binary.BigEndian.PutUint32(l3[0:], 6<<28|uint32(id))
		binary.BigEndian.PutUint16(l3[4:], uint16(len(l4)))
		l3[6], l3[7] = proto, 64
		if proto == 1 {
			l3[6] = 58
			l4[0] = 128
		}
		s, d := src.As16(), dst.As16()
		copy(l3[8:], s[:])
		copy(l3[24:], d[:])
	}
	f := make([]byte, 14, 14+len(l3)+len(l4))
	copy(f[0:], []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1})
	if src.Is4() {
		binary.BigEndian.PutUint16(f[12:], 0x0800)
	} else {
		binary.BigEndian.PutUint16(f[12:], 0x86dd)
	}
	return append(append(f, l3...), l4...)
}

// runHop runs the ingress hop program on frame and returns the hop it
// produced, if any.
func runHop(t *testing.T, tr *Tracer, frame []byte) (event.Hop, bool) {
	t.Helper()
	prog := tr.coll.Programs["hop_ingress_tcx"]
	if prog == nil {
		prog = tr.coll.Programs["hop_ingress_legacy"]
	}
	if _, err := prog.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
	var r Record
	for {
		took, good := tr.readNow(&r)
		if !took {
			break
		}
		if good && r.Kind == KindHop {
			return r.Hop, true
		}
	}
	return event.Hop{}, false
}

// TestFilterCode checks the filter compiled to instructions, and the
// interpreter it replaces, against filter.Program.Match on packets the
// kernel decoded, for expressions using every field, negation, ranges,
// networks and several clauses.
func TestFilterCode(t *testing.T) {
	frames := filterFrames()
	all := load(t, Options{})
	pkts := make([]event.Packet, len(frames))
	for i, f := range frames {
		h, ok := runHop(t, all, f)
		if !ok {
			t.Fatalf("frame %d: no hop without a filter", i)
		}
		pkts[i] = h.Pkt
	}
	for _, expr := range []string{
		"udp port 9",
		"udp and port 5001",
		"tcp dst port 80",
		"src port 22 or dst port 443",
		"portrange 50-450",
		"not port 80",
		"not tcp and not udp",
		"icmp or icmp6",
		"host 10.0.1.7",
		"src host 10.0.0.1 and not dst port 53",
		"dst net 10.0.0.0/16",
		"net 192.168.0.0/16 or net fd00::/64",
		"host 2001:db8::9",
		"ip6 and src net fd00::/16 and (tcp or udp) and not port 40000",
		"arp",
		"ip and not (host 10.0.0.1 or host 10.0.1.7)",
		"(tcp and port 22) or (udp and port 53) or (icmp and host 192.168.5.9)",
	} {
		// -short (the VMs, where a load takes seconds): a sample, the
		// filter's code only; each kernel's verifier still sees every
		// kind of instruction it emits.
		sample := map[string]bool{"udp and port 5001": true, "not tcp and not udp": true,
			"src host 10.0.0.1 and not dst port 53": true, "net 192.168.0.0/16 or net fd00::/64": true,
			"(tcp and port 22) or (udp and port 53) or (icmp and host 192.168.5.9)": true}
		if testing.Short() && !sample[expr] {
			continue
		}
		f := mustCompile(t, expr)
		for _, interp := range []bool{false, true} {
			if interp && testing.Short() {
				continue
			}
			name := "code"
			if interp {
				name = "interpreted"
			}
			t.Run(fmt.Sprintf("%s/%s", expr, name), func(t *testing.T) {
				tr := load(t, Options{Filter: f, interpretFilter: interp})
				matched := 0
				for i, frame := range frames {
					want := f.Match(&pkts[i])
					if _, got := runHop(t, tr, frame); got != want {
						t.Errorf("frame %d (%+v): kernel says %v, filter.Match %v", i, pkts[i], got, want)
					}
					if want {
						matched++
					}
				}
				t.Logf("%d of %d frames match", matched, len(frames))
			})
		}
	}
}

func TestFilterInstructionsHaveNoLabels(t *testing.T) {
	// Spliced into any program, the body must not bring symbols or
	// references of its own: its jumps are raw offsets.
	for _, ins := range filterInstructions(mustCompile(t, "tcp port 80 or not host 10.0.0.1")) {
		if ins.Symbol() != "" || ins.Reference() != "" {
			t.Errorf("instruction %v has symbol %q, reference %q", ins, ins.Symbol(), ins.Reference())
		}
	}
	_ = filter.MaxClauses
}
