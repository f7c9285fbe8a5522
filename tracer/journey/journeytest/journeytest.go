// Package journeytest holds a synthetic Docker host (two bridges, four
// containers, a host uplink) and helpers that make hops and drops on it, for
// the tests of the assembler, the printers and the latency statistics.
package journeytest

import (
	"net/netip"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// Namespace inodes.
const (
	HostNS   uint32 = 4026531840
	ClientNS uint32 = 4026532001
	WebNS    uint32 = 4026532002
	DBNS     uint32 = 4026532003
	APINS    uint32 = 4026532004
)

// Interface keys of the synthetic host.
var (
	ClientEth0 = topology.Key{NetnsIno: ClientNS, Ifindex: 2}
	WebEth0    = topology.Key{NetnsIno: WebNS, Ifindex: 2}
	DBEth0     = topology.Key{NetnsIno: DBNS, Ifindex: 2}
	APIEth0    = topology.Key{NetnsIno: APINS, Ifindex: 2}
	HostEth0   = topology.Key{NetnsIno: HostNS, Ifindex: 2}
	Docker0    = topology.Key{NetnsIno: HostNS, Ifindex: 3}
	VethClient = topology.Key{NetnsIno: HostNS, Ifindex: 10} // veth1a2b
	VethWeb    = topology.Key{NetnsIno: HostNS, Ifindex: 11} // veth3c4d
	VethDB     = topology.Key{NetnsIno: HostNS, Ifindex: 12} // veth5e6f
	BrMynet    = topology.Key{NetnsIno: HostNS, Ifindex: 20} // br-1234
	VethAPI    = topology.Key{NetnsIno: HostNS, Ifindex: 21} // vethaa11
)

// Addresses of the synthetic host.
var (
	ClientIP  = netip.MustParseAddr("172.17.0.2")
	WebIP     = netip.MustParseAddr("172.17.0.3")
	DBIP      = netip.MustParseAddr("172.17.0.4")
	APIIP     = netip.MustParseAddr("172.18.0.2")
	HostIP    = netip.MustParseAddr("10.9.0.254")
	Outside   = netip.MustParseAddr("10.9.0.1")
	Docker0IP = netip.MustParseAddr("172.17.0.1")
)

// Snapshot returns the synthetic host's topology.
func Snapshot() *topology.Snapshot {
	client := &topology.Container{ID: "c11e47000000aaaa", Name: "client", NetnsIno: ClientNS}
	web := &topology.Container{ID: "3eb000000000bbbb", Name: "web", NetnsIno: WebNS}
	db := &topology.Container{ID: "db0000000000cccc", Name: "db", NetnsIno: DBNS}
	api := &topology.Container{ID: "a91000000000dddd", Name: "api", NetnsIno: APINS}
	ctr := func(k topology.Key, c *topology.Container, peer uint32) topology.Endpoint {
		return topology.Endpoint{NetnsIno: k.NetnsIno, Ifindex: k.Ifindex, Name: "eth0", Role: topology.RoleContainer,
			Container: c, PeerNetnsIno: HostNS, PeerIfindex: peer}
	}
	veth := func(k topology.Key, name, bridge, network string, c *topology.Container, peer topology.Key) topology.Endpoint {
		return topology.Endpoint{NetnsIno: k.NetnsIno, Ifindex: k.Ifindex, Name: name, Role: topology.RoleHostVeth,
			Bridge: bridge, Network: network, Container: c, PeerNetnsIno: peer.NetnsIno, PeerIfindex: peer.Ifindex}
	}
	return &topology.Snapshot{
		HostNetnsIno: HostNS,
		Bridges: []topology.Bridge{
			{Name: "docker0", Ifindex: Docker0.Ifindex, Network: "bridge", Ports: []uint32{10, 11, 12}},
			{Name: "br-1234", Ifindex: BrMynet.Ifindex, Network: "mynet", Ports: []uint32{21}},
		},
		Endpoints: []topology.Endpoint{
			ctr(ClientEth0, client, VethClient.Ifindex),
			ctr(WebEth0, web, VethWeb.Ifindex),
			ctr(DBEth0, db, VethDB.Ifindex),
			ctr(APIEth0, api, VethAPI.Ifindex),
			veth(VethClient, "veth1a2b", "docker0", "bridge", client, ClientEth0),
			veth(VethWeb, "veth3c4d", "docker0", "bridge", web, WebEth0),
			veth(VethDB, "veth5e6f", "docker0", "bridge", db, DBEth0),
			veth(VethAPI, "vethaa11", "br-1234", "mynet", api, APIEth0),
			{NetnsIno: HostNS, Ifindex: Docker0.Ifindex, Name: "docker0", Role: topology.RoleBridge, Bridge: "docker0", Network: "bridge"},
			{NetnsIno: HostNS, Ifindex: BrMynet.Ifindex, Name: "br-1234", Role: topology.RoleBridge, Bridge: "br-1234", Network: "mynet"},
			{NetnsIno: HostNS, Ifindex: HostEth0.Ifindex, Name: "eth0", Role: topology.RoleHost},
		},
		Containers:      []topology.Container{*client, *web, *db, *api},
		DockerAvailable: true,
	}
}

// Namer returns an index over Snapshot.
func Namer() *topology.Index { return topology.NewIndex(Snapshot()) }

// TCP returns a TCP packet summary.
func TCP(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8, seq uint32) event.Packet {
	return event.Packet{
		Layers:    event.LayerEth | event.LayerIPv4 | event.LayerTCP,
		EtherType: event.EtherTypeIPv4,
		Src:       src, Dst: dst, Proto: event.ProtoTCP, TTL: 64, IPID: seq & 0xffff,
		SrcPort: sport, DstPort: dport, TCPFlags: flags, Seq: seq,
	}
}

// UDP returns a UDP packet summary.
func UDP(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) event.Packet {
	return event.Packet{
		Layers:    event.LayerEth | event.LayerIPv4 | event.LayerUDP,
		EtherType: event.EtherTypeIPv4,
		Src:       src, Dst: dst, Proto: event.ProtoUDP, TTL: 64,
		SrcPort: sport, DstPort: dport,
	}
}

// ARPRequest returns a broadcast ARP who-has.
func ARPRequest(sender, target netip.Addr) event.Packet {
	return event.Packet{
		Layers:    event.LayerEth | event.LayerARP,
		EtherType: event.EtherTypeARP,
		DstMAC:    [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		Src:       sender, Dst: target, ARPOp: 1,
	}
}

// Hop returns a hop at interface k.
func Hop(t uint64, k topology.Key, dir event.Direction, skb, fp uint64, p event.Packet) event.Hop {
	return event.Hop{TimeNS: t, Ifindex: k.Ifindex, NetnsIno: k.NetnsIno, Dir: dir, Len: 60, SkbKey: skb, Fingerprint: fp, Pkt: p}
}

// Step is one place in a path: an interface and a direction.
type Step struct {
	Key topology.Key
	Dir event.Direction
}

// Paths through the synthetic host, as the hooks see them.
var (
	// client -> web on docker0.
	ClientToWeb = []Step{{ClientEth0, event.Egress}, {VethClient, event.Ingress}, {VethWeb, event.Egress}, {WebEth0, event.Ingress}}
	// web -> client on docker0.
	WebToClient = []Step{{WebEth0, event.Egress}, {VethWeb, event.Ingress}, {VethClient, event.Egress}, {ClientEth0, event.Ingress}}
	// db -> web on docker0: a second sender toward web.
	DBToWeb = []Step{{DBEth0, event.Egress}, {VethDB, event.Ingress}, {VethWeb, event.Egress}, {WebEth0, event.Ingress}}
	// client -> host (docker0 passes it up).
	ClientToHost = []Step{{ClientEth0, event.Egress}, {VethClient, event.Ingress}, {Docker0, event.Ingress}}
	// host -> web (the host sends it down docker0).
	HostToWeb = []Step{{Docker0, event.Egress}, {VethWeb, event.Egress}, {WebEth0, event.Ingress}}
	// client -> outside via routing and MASQUERADE.
	ClientToOutside = []Step{{ClientEth0, event.Egress}, {VethClient, event.Ingress}, {Docker0, event.Ingress}, {HostEth0, event.Egress}}
	// db -> outside via routing and MASQUERADE.
	DBToOutside = []Step{{DBEth0, event.Egress}, {VethDB, event.Ingress}, {Docker0, event.Ingress}, {HostEth0, event.Egress}}
	// outside -> published port -> web (DNAT).
	OutsideToWeb = []Step{{HostEth0, event.Ingress}, {Docker0, event.Egress}, {VethWeb, event.Egress}, {WebEth0, event.Ingress}}
	// client on docker0 -> api on br-1234, via host routing.
	ClientToAPI = []Step{{ClientEth0, event.Egress}, {VethClient, event.Ingress}, {Docker0, event.Ingress}, {BrMynet, event.Egress}, {VethAPI, event.Egress}, {APIEth0, event.Ingress}}
)

// Walk makes the hops of one packet along a path, starting at t and spaced
// step ns apart, all with the same skb key and fingerprint.
func Walk(path []Step, t, step, skb, fp uint64, p event.Packet) []event.Hop {
	hops := make([]event.Hop, len(path))
	for i, s := range path {
		hops[i] = Hop(t+uint64(i)*step, s.Key, s.Dir, skb, fp, p)
	}
	return hops
}
