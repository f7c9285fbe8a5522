package journeytest

import (
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// Event is one input to the assembler: a hop or a drop.
type Event struct {
	Hop  *event.Hop
	Drop *event.Drop
}

// Hops wraps hops as events.
func Hops(hs []event.Hop) []Event {
	out := make([]Event, len(hs))
	for i := range hs {
		out[i] = Event{Hop: &hs[i]}
	}
	return out
}

// Run feeds events to a new assembler on Namer, then flushes.
func Run(cfg journey.Config, in []Event) ([]*journey.Journey, journey.Stats) {
	a := journey.New(cfg, Namer())
	var out []*journey.Journey
	for _, e := range in {
		if e.Hop != nil {
			out = append(out, a.AddHop(*e.Hop)...)
		} else {
			out = append(out, a.AddDrop(*e.Drop)...)
		}
	}
	out = append(out, a.Flush()...)
	return out, a.Stats()
}

// Base is the monotonic time the shapes start at.
const Base = uint64(1_000_000_000_000)

const us = uint64(time.Microsecond)

// Shapes is one packet of every journey shape, 10ms apart so each finishes
// before the next: container to container, its reply, to the host, from the
// host, out through MASQUERADE, in through a published port (DNAT), an ARP
// flood, across two bridges, a drop, a GSO super-packet, a lost packet, an
// interface nobody could name.
func Shapes() []Event {
	var in []Event
	t := Base
	next := func() uint64 { t += 10 * uint64(time.Millisecond); return t }

	syn := TCP(ClientIP, 41234, WebIP, 8080, event.TCPSyn, 1000)
	in = append(in, Hops(Walk(ClientToWeb, next(), 11*us, 0xa1, 1, syn))...)
	synack := TCP(WebIP, 8080, ClientIP, 41234, event.TCPSyn|event.TCPAck, 5000)
	synack.Ack = 1001
	in = append(in, Hops(Walk(WebToClient, next(), 9*us, 0xa2, 2, synack))...)
	in = append(in, Hops(Walk(ClientToHost, next(), 6*us, 0xa3, 3, UDP(ClientIP, 45000, Docker0IP, 53)))...)
	in = append(in, Hops(Walk(HostToWeb, next(), 5*us, 0xa4, 4, TCP(Docker0IP, 36000, WebIP, 8080, event.TCPSyn, 7)))...)

	masq := Walk(ClientToOutside, next(), 8*us, 0xa5, 5, UDP(ClientIP, 40000, Outside, 53))
	masq[3].Pkt = UDP(HostIP, 40000, Outside, 53)
	in = append(in, Hops(masq)...)

	dnat := Walk(OutsideToWeb, next(), 7*us, 0xa6, 6, TCP(Outside, 50000, WebIP, 80, event.TCPSyn, 9))
	dnat[0].Pkt = TCP(Outside, 50000, HostIP, 8080, event.TCPSyn, 9)
	in = append(in, Hops(dnat)...)

	t0 := next()
	arp := ARPRequest(ClientIP, WebIP)
	in = append(in, Hops([]event.Hop{
		Hop(t0, ClientEth0, event.Egress, 0xb0, 7, arp),
		Hop(t0+2*us, VethClient, event.Ingress, 0xb0, 7, arp),
		Hop(t0+4*us, VethWeb, event.Egress, 0xb1, 7, arp),
		Hop(t0+5*us, VethDB, event.Egress, 0xb2, 7, arp),
		Hop(t0+6*us, Docker0, event.Ingress, 0xb0, 7, arp),
		Hop(t0+8*us, WebEth0, event.Ingress, 0xb1, 7, arp),
		Hop(t0+9*us, DBEth0, event.Ingress, 0xb2, 7, arp),
	})...)

	in = append(in, Hops(Walk(ClientToAPI, next(), 4*us, 0xa8, 8, TCP(ClientIP, 41000, APIIP, 9000, event.TCPSyn, 11)))...)

	t0 = next()
	blocked := TCP(ClientIP, 41500, WebIP, 8080, event.TCPSyn, 13)
	in = append(in, Hops(Walk(ClientToWeb[:2], t0, 10*us, 0xa9, 9, blocked))...)
	in = append(in, Event{Drop: &event.Drop{TimeNS: t0 + 14*us, SkbKey: 0xa9, Fingerprint: 9, Reason: 6,
		ReasonName: "NETFILTER_DROP", Ifindex: VethWeb.Ifindex, NetnsIno: VethWeb.NetnsIno, Location: 0xffffffff81a0b0c0, Pkt: blocked}})

	gso := Walk(ClientToWeb, next(), 12*us, 0xaa, 10, TCP(ClientIP, 41234, WebIP, 8080, event.TCPAck|event.TCPPsh, 2001))
	for i := range gso {
		gso[i].Len, gso[i].GSOSegs, gso[i].GSOSize = 64074, 45, 1448
	}
	in = append(in, Hops(gso)...)

	// Seen leaving client, then never again: times out.
	in = append(in, Hops(Walk(ClientToWeb[:2], next(), 10*us, 0xab, 11, UDP(ClientIP, 40001, WebIP, 9999)))...)

	odd := Walk(ClientToWeb, next(), 10*us, 0xac, 12, UDP(ClientIP, 40002, WebIP, 9999))
	odd[2].Ifindex = 17 // a veth the resolver does not know
	in = append(in, Hops(odd)...)
	return in
}
