package journey_test

import (
	"net/netip"
	"testing"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
)

// A packet of an overlay leaving through vxlan0 and crossing the host's
// eth0 inside VXLAN is one journey that left the host toward the other
// node, named from the overlay's peer list; one arriving inside VXLAN goes
// on into vxlan0 (its underlay hop does not end it).
func TestTunnelHops(t *testing.T) {
	const sbox = 4026532200
	node := netip.MustParseAddr("192.0.2.20")
	vxlan0 := topology.Key{NetnsIno: sbox, Ifindex: 30}
	snap := jt.Snapshot()
	snap.Endpoints = append(snap.Endpoints, topology.Endpoint{NetnsIno: sbox, Ifindex: 30, Name: "vxlan0", Role: topology.RoleHost,
		Network: "ov", Driver: topology.DriverOverlay, Bridge: "br0"})
	snap.Tunnels = []topology.Tunnel{{Key: vxlan0, Network: "ov", VNI: 4097, Port: 4789, Remotes: []netip.Addr{node}}}
	snap.Nodes = []topology.Node{{Name: "node-b", Addr: node}}
	p := jt.UDP(netip.MustParseAddr("10.0.9.2"), 4000, netip.MustParseAddr("10.0.9.3"), 53)

	out := []event.Hop{jt.Hop(t0, vxlan0, event.Egress, 0xb1, 0x51, p), jt.Hop(t0+2*us, jt.HostEth0, event.Egress, 0xb1, 0x51, p)}
	out[1].Tunnel = event.Tunnel{VNI: 4097, Peer: node}
	a := journey.New(journey.Config{HostNetnsIno: jt.HostNS}, topology.NewIndex(snap))
	var js []*journey.Journey
	for _, h := range out {
		js = append(js, a.AddHop(h)...)
	}
	j := one(t, append(js, a.Flush()...))
	if j.Verdict != journey.VerdictLeftHost || len(j.Hops) != 2 {
		t.Fatalf("leaving: verdict %v with %d hops, want left-host with 2", j.Verdict, len(j.Hops))
	}
	if got, want := j.Hops[0].Action(), "into the VXLAN tunnel at vxlan0"; got != want {
		t.Errorf("vxlan0: %q, want %q", got, want)
	}
	if got, want := j.Hops[1].Action(), "left host toward node-b 192.0.2.20 (VNI 4097) at eth0"; got != want {
		t.Errorf("eth0: %q, want %q", got, want)
	}

	in := jt.Hop(t0+us, jt.HostEth0, event.Ingress, 0xb2, 0x52, p)
	in.Tunnel = event.Tunnel{VNI: 4097, Peer: netip.MustParseAddr("192.0.2.99")}
	a = journey.New(journey.Config{HostNetnsIno: jt.HostNS}, topology.NewIndex(snap))
	j = one(t, append(a.AddHop(in), a.Flush()...))
	if j.Verdict != journey.VerdictIncomplete || j.Hops[0].Terminal() {
		t.Errorf("arriving inside VXLAN and seen nowhere after: verdict %v, terminal %v; want incomplete", j.Verdict, j.Hops[0].Terminal())
	}
	if got, want := j.Hops[0].Action(), "arrived from 192.0.2.99 (VNI 4097) at eth0"; got != want {
		t.Errorf("arriving from a node the overlay does not list: %q, want %q", got, want)
	}
}
