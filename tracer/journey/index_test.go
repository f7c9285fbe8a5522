package journey

import (
	"net/netip"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// Which rewrites of a tuple a content join accepts after host routing.
func TestNATPlausible(t *testing.T) {
	udp := func(src string, sport uint16, dst string, dport uint16) tuple {
		return tupleOf(&event.Packet{Layers: event.LayerIPv4 | event.LayerUDP, Proto: event.ProtoUDP,
			Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sport, DstPort: dport})
	}
	from := udp("172.17.0.2", 40000, "10.9.0.1", 53)
	for _, tc := range []struct {
		name string
		to   tuple
		want int
	}{
		{"unchanged", from, -1},
		{"MASQUERADE keeping the port", udp("10.9.0.254", 40000, "10.9.0.1", 53), 1},
		{"MASQUERADE to another port", udp("10.9.0.254", 1024, "10.9.0.1", 53), 0},
		{"DNAT", udp("172.17.0.2", 40000, "172.17.0.3", 80), 0},
		{"DNAT of the port only", udp("172.17.0.2", 40000, "10.9.0.1", 5353), 1},
		{"both sides", udp("10.9.0.254", 40000, "172.17.0.3", 80), -1},
		{"another flow", udp("172.17.0.4", 40001, "10.9.0.2", 53), -1},
	} {
		if got := from.nat(&tc.to); got != tc.want {
			t.Errorf("%s: score %d, want %d", tc.name, got, tc.want)
		}
	}
}

// An ICMP echo's ID belongs to the side that chose it, as a port would.
func TestTupleOfICMPEcho(t *testing.T) {
	a, b := netip.MustParseAddr("172.17.0.2"), netip.MustParseAddr("10.9.0.1")
	req := tupleOf(&event.Packet{Layers: event.LayerIPv4 | event.LayerICMP, Src: a, Dst: b, ICMPType: 8, ICMPID: 77})
	rep := tupleOf(&event.Packet{Layers: event.LayerIPv4 | event.LayerICMP, Src: b, Dst: a, ICMPType: 0, ICMPID: 77})
	if req.sport != 77 || req.dport != 0 || rep.dport != 77 || rep.sport != 0 {
		t.Errorf("request %d>%d reply %d>%d", req.sport, req.dport, rep.sport, rep.dport)
	}
	masq := tupleOf(&event.Packet{Layers: event.LayerIPv4 | event.LayerICMP, Src: netip.MustParseAddr("10.9.0.254"), Dst: b, ICMPType: 8, ICMPID: 1})
	if req.nat(&masq) != 0 {
		t.Errorf("MASQUERADE of a ping: score %d, want 0", req.nat(&masq))
	}
}
