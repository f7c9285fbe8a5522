// Package tracefiletest makes synthetic traffic and recordings for tests of
// the recording format and of the commands that read recordings.
//
// The scenario is Docker's default bridge: containers "client" (172.17.0.2)
// and "web" (172.17.0.3) on docker0, each behind a host veth. A request from
// client to web is seen at four hooks: client:eth0 egress, veth1a2b ingress,
// veth3c4d egress, web:eth0 ingress; a reply takes the reverse path.
package tracefiletest

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// Namespaces and interfaces of the scenario.
const (
	HostNetns   uint32 = 4026531840
	ClientNetns uint32 = 4026532301
	WebNetns    uint32 = 4026532402

	Docker0     uint32 = 3
	ClientVeth  uint32 = 10 // veth1a2b, host side of client's eth0
	WebVeth     uint32 = 12 // veth3c4d, host side of web's eth0
	ContainerIf uint32 = 2  // eth0 inside each container (ifindex 2 there)
)

// Start is the wall-clock time of the scenario's first event; its monotonic
// clock starts at StartMono.
var Start = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

// StartMono is the kernel monotonic time of the first event.
const StartMono uint64 = 5_000_000_000_000

// MonoOffset converts StartMono to Start (wall = mono + offset).
var MonoOffset = Start.UnixNano() - int64(StartMono)

var (
	clientMAC = [6]byte{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	webMAC    = [6]byte{0x02, 0x42, 0xac, 0x11, 0x00, 0x03}
	clientIP  = netip.MustParseAddr("172.17.0.2")
	webIP     = netip.MustParseAddr("172.17.0.3")
)

// Snapshot is the resolver's view of the scenario.
func Snapshot() *topology.Snapshot {
	client := topology.Container{ID: "c1e47aa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8", Name: "client", Image: "busybox:local",
		NetworkMode: "bridge", NetnsIno: ClientNetns, Networks: []topology.ContainerNetwork{{Network: "bridge", Bridge: "docker0", IP: clientIP, MAC: "02:42:ac:11:00:02"}}}
	web := topology.Container{ID: "3eb0aa11b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9", Name: "web", Image: "busybox:local",
		NetworkMode: "bridge", NetnsIno: WebNetns, Networks: []topology.ContainerNetwork{{Network: "bridge", Bridge: "docker0", IP: webIP, MAC: "02:42:ac:11:00:03"}}}
	return &topology.Snapshot{
		Time:            Start,
		HostNetnsIno:    HostNetns,
		DockerAvailable: true,
		Bridges:         []topology.Bridge{{Name: "docker0", Ifindex: Docker0, Network: "bridge", Ports: []uint32{ClientVeth, WebVeth}}},
		Containers:      []topology.Container{client, web},
		Endpoints: []topology.Endpoint{
			{NetnsIno: HostNetns, Ifindex: Docker0, Name: "docker0", Role: topology.RoleBridge, Bridge: "docker0", Network: "bridge",
				Addrs: []netip.Prefix{netip.MustParsePrefix("172.17.0.1/16")}},
			{NetnsIno: HostNetns, Ifindex: ClientVeth, Name: "veth1a2b", Role: topology.RoleHostVeth, Bridge: "docker0", Network: "bridge",
				PeerNetnsIno: ClientNetns, PeerIfindex: ContainerIf, Container: &client},
			{NetnsIno: HostNetns, Ifindex: WebVeth, Name: "veth3c4d", Role: topology.RoleHostVeth, Bridge: "docker0", Network: "bridge",
				PeerNetnsIno: WebNetns, PeerIfindex: ContainerIf, Container: &web},
			{NetnsIno: ClientNetns, Ifindex: ContainerIf, Name: "eth0", Role: topology.RoleContainer, MAC: "02:42:ac:11:00:02",
				Addrs: []netip.Prefix{netip.MustParsePrefix("172.17.0.2/16")}, PeerNetnsIno: HostNetns, PeerIfindex: ClientVeth, Container: &client},
			{NetnsIno: WebNetns, Ifindex: ContainerIf, Name: "eth0", Role: topology.RoleContainer, MAC: "02:42:ac:11:00:03",
				Addrs: []netip.Prefix{netip.MustParsePrefix("172.17.0.3/16")}, PeerNetnsIno: HostNetns, PeerIfindex: WebVeth, Container: &web},
		},
	}
}

// Event is a hop or a drop, in capture order.
type Event struct {
	Hop  *event.Hop
	Drop *event.Drop
}

// Time is the event's monotonic time.
func (e Event) Time() uint64 {
	if e.Hop != nil {
		return e.Hop.TimeNS
	}
	return e.Drop.TimeNS
}

type hook struct {
	netns, ifindex uint32
	dir            event.Direction
}

var (
	requestPath = []hook{{ClientNetns, ContainerIf, event.Egress}, {HostNetns, ClientVeth, event.Ingress}, {HostNetns, WebVeth, event.Egress}, {WebNetns, ContainerIf, event.Ingress}}
	replyPath   = []hook{{WebNetns, ContainerIf, event.Egress}, {HostNetns, WebVeth, event.Ingress}, {HostNetns, ClientVeth, event.Egress}, {ClientNetns, ContainerIf, event.Ingress}}
)

// Options shape the synthetic traffic.
type Options struct {
	// Packets is the number of packets (each seen at four hooks, or fewer
	// when dropped).
	Packets int
	// Snaplen > 0 attaches that many bytes of (made-up) packet data to each hop.
	Snaplen int
	// DropEvery > 0 drops every n-th packet after its second hop.
	DropEvery int
}

// Events makes the scenario's traffic: TCP between client:40000 and web:80,
// alternating request and reply, interleaved the way packets in flight are.
// The same Options always give the same events.
func Events(o Options) []Event {
	var out []Event
	t := StartMono
	var seq, ack uint32 = 1000, 5000
	for i := 0; i < o.Packets; i++ {
		req := i%2 == 0
		p := event.Packet{
			Layers:    event.LayerEth | event.LayerIPv4 | event.LayerTCP,
			EtherType: event.EtherTypeIPv4,
			Proto:     event.ProtoTCP,
			TTL:       64,
			IPID:      uint32(100 + i),
			TCPFlags:  event.TCPAck | event.TCPPsh,
		}
		path := requestPath
		if req {
			p.SrcMAC, p.DstMAC, p.Src, p.Dst, p.SrcPort, p.DstPort, p.Seq, p.Ack = clientMAC, webMAC, clientIP, webIP, 40000, 80, seq, ack
			seq += 100
		} else {
			path = replyPath
			p.SrcMAC, p.DstMAC, p.Src, p.Dst, p.SrcPort, p.DstPort, p.Seq, p.Ack = webMAC, clientMAC, webIP, clientIP, 80, 40000, ack, seq
			ack += 1400
		}
		if i == 0 {
			p.TCPFlags = event.TCPSyn
		}
		length := uint32(52 + 100)
		if !req {
			length = 52 + 1400
		}
		h := fnv.New64a()
		binary.Write(h, binary.LittleEndian, []uint32{p.IPID, p.Seq, p.Ack, length})
		fp := h.Sum64()
		skb := 0xffff888100000000 + uint64(i%64)*0x100 // skbs are reused
		pid := uint64(1)<<32 | uint64(i+1)             // the kernel's per-packet ID
		t += 7_300                                     // a packet every 7.3 µs
		dropAt := -1
		if o.DropEvery > 0 && i%o.DropEvery == o.DropEvery-1 {
			dropAt = 2
		}
		for j, hk := range path {
			if j == dropAt {
				out = append(out, Event{Drop: &event.Drop{
					TimeNS: t + uint64(j)*2_100, SkbKey: skb, PacketID: pid, Fingerprint: fp,
					Reason: 5, ReasonName: "NETFILTER_DROP", Ifindex: hk.ifindex, NetnsIno: hk.netns,
					Location: 0xffffffff81a2b3c4, Pkt: p,
				}})
				break
			}
			hop := &event.Hop{
				TimeNS: t + uint64(j)*2_100 + uint64(i%3)*150, Ifindex: hk.ifindex, NetnsIno: hk.netns, Dir: hk.dir,
				Len: length, SkbKey: skb, PacketID: pid, Fingerprint: fp, Pkt: p,
			}
			if o.Snaplen > 0 {
				n := min(o.Snaplen, int(length)+14)
				hop.Data = make([]byte, n)
				for k := range hop.Data {
					hop.Data[k] = byte(i + k)
				}
			}
			out = append(out, Event{Hop: hop})
		}
	}
	// Packets overlap in flight: a stable sort by time interleaves them.
	sortEvents(out)
	return out
}

func sortEvents(ev []Event) {
	// Insertion sort: the events are nearly in order already.
	for i := 1; i < len(ev); i++ {
		for j := i; j > 0 && ev[j].Time() < ev[j-1].Time(); j-- {
			ev[j], ev[j-1] = ev[j-1], ev[j]
		}
	}
}
