package render

import (
	"encoding/json"
	"fmt"
	"io"
	"net"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// JSON prints one object per line: a "journey" per journey and a "summary"
// at the end. The schema is docs/journey-json.md; field names are stable.
//
// Each line goes to the writer in one Write as soon as it is made, so live
// output is not held back. Journey lines are appended into a reused buffer
// (jsonline.go) with the bytes encoding/json would write for JourneyObject;
// the summary, once a run, goes through encoding/json.
type JSON struct {
	w         io.Writer
	enc       *json.Encoder
	opt       Options
	buf       []byte
	second    secondCache
	endpoints endpointCache
	ends      endsCache
	err       error // the first write error; later writes return it
}

// NewJSON returns a JSON-lines printer writing to w.
func NewJSON(w io.Writer, opt Options) *JSON {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // appendEscaped matches this
	return &JSON{w: w, enc: enc, opt: opt}
}

// timeLayout is the journey's "time": RFC 3339 with all nine digits of ns.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// maxKeptBuf bounds the line buffer kept between journeys, so one huge
// flood does not hold its memory for the rest of the run.
const maxKeptBuf = 64 << 10

// JourneyJSON is the "journey" object.
type JourneyJSON struct {
	Type        string        `json:"type"` // "journey"
	ID          uint64        `json:"id"`
	Time        string        `json:"time"` // wall time of the first event, RFC 3339 with ns
	StartNS     uint64        `json:"start_ns"`
	EndNS       uint64        `json:"end_ns"`
	TransitNS   int64         `json:"transit_ns"`
	Verdict     string        `json:"verdict"`
	Summary     string        `json:"summary"` // the packet as the text output shows it
	Packet      *PacketJSON   `json:"packet,omitempty"`
	Len         uint32        `json:"len"`
	GSOSegs     uint16        `json:"gso_segs,omitempty"`
	GSOSize     uint16        `json:"gso_size,omitempty"`
	Fanout      int           `json:"fanout"`
	TimedOut    bool          `json:"timed_out"`
	Evicted     bool          `json:"evicted"`
	Hops        []HopJSON     `json:"hops"`
	Rewrites    []RewriteJSON `json:"rewrites,omitempty"`
	Drop        *DropJSON     `json:"drop,omitempty"`
	Fingerprint string        `json:"fingerprint"` // hex
	// RetransmitOf is the ID of the earlier journey whose TCP segment this
	// one sends again, RetransmitAfterNS the time since it (first hop to
	// first hop); both absent when it is not a retransmission.
	RetransmitOf      *uint64 `json:"retransmit_of,omitempty"`
	RetransmitAfterNS *int64  `json:"retransmit_after_ns,omitempty"`
}

// PacketJSON is the decoded headers as first seen.
type PacketJSON struct {
	Proto     string `json:"proto"`
	EtherType string `json:"ethertype"`
	SrcMAC    string `json:"src_mac,omitempty"`
	DstMAC    string `json:"dst_mac,omitempty"`
	VLAN      uint16 `json:"vlan,omitempty"`
	Src       string `json:"src,omitempty"`
	Dst       string `json:"dst,omitempty"`
	SrcPort   uint16 `json:"src_port,omitempty"`
	DstPort   uint16 `json:"dst_port,omitempty"`
	IPProto   uint8  `json:"ip_proto,omitempty"`
	IPID      uint32 `json:"ip_id,omitempty"`
	TTL       uint8  `json:"ttl,omitempty"`
	TCPFlags  string `json:"tcp_flags,omitempty"`
	Seq       uint32 `json:"seq,omitempty"`
	Ack       uint32 `json:"ack,omitempty"`
	ICMPType  *uint8 `json:"icmp_type,omitempty"`
	ICMPCode  *uint8 `json:"icmp_code,omitempty"`
	ICMPID    uint16 `json:"icmp_id,omitempty"`
	ICMPSeq   uint16 `json:"icmp_seq,omitempty"`
	ARPOp     uint16 `json:"arp_op,omitempty"`
	// Frag: an IP fragment; only the first has ports and L4 fields.
	Frag bool `json:"frag,omitempty"`
}

// HopJSON is one hop.
type HopJSON struct {
	TimeNS      uint64 `json:"time_ns"`
	DeltaNS     int64  `json:"delta_ns"`
	Parent      int    `json:"parent"`
	Label       string `json:"label"`
	Iface       string `json:"iface"`
	Ifindex     uint32 `json:"ifindex"`
	NetnsIno    uint32 `json:"netns_ino"`
	Role        string `json:"role"`
	Resolved    bool   `json:"resolved"`
	Container   string `json:"container,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	Bridge      string `json:"bridge,omitempty"`
	Network     string `json:"network,omitempty"`
	Dir         string `json:"dir"`
	Action      string `json:"action"`
	Len         uint32 `json:"len"`
	GSOSegs     uint16 `json:"gso_segs,omitempty"`
	GSOSize     uint16 `json:"gso_size,omitempty"`
	Src         string `json:"src,omitempty"` // tuple at this hop (after any NAT before it)
	Dst         string `json:"dst,omitempty"`
	// Tunnel: the packet crossed this interface inside an overlay's VXLAN
	// tunnel; src and dst are then the packet inside it.
	Tunnel *TunnelJSON `json:"tunnel,omitempty"`
	// Bridged is the bridge the packet crossed from the parent hop to this
	// one, inferred from the topology (a bridge's hooks never see packets
	// it forwards between its ports).
	Bridged *BridgedJSON `json:"bridged,omitempty"`
}

// BridgedJSON is the step through a bridge before a hop.
type BridgedJSON struct {
	Bridge  string `json:"bridge"` // or the parent interface, for macvlan/ipvlan
	Network string `json:"network,omitempty"`
	// Kind is "macvlan" or "ipvlan" for a step between two containers'
	// interfaces on one parent; absent for a Linux bridge.
	Kind     string `json:"kind,omitempty"`
	Label    string `json:"label"`
	Inferred bool   `json:"inferred"` // always true: no hook saw it
}

// TunnelJSON is what the outer headers of a tunneled hop said.
type TunnelJSON struct {
	Type string `json:"type"` // "vxlan"
	VNI  uint32 `json:"vni"`
	// Peer is the other node: where the packet went, or came from; Node
	// its name, when the overlay lists it.
	Peer string `json:"peer"`
	Node string `json:"node,omitempty"`
}

// RewriteJSON is one NAT change.
type RewriteJSON struct {
	Hop  int    `json:"hop"`
	Kind string `json:"kind"` // SNAT, DNAT, SNAT+DNAT
	From string `json:"from"` // "src > dst"
	To   string `json:"to"`
}

// DropJSON is where and why the packet was dropped.
type DropJSON struct {
	Where      string `json:"where"`         // label of the last hop seen, else of dev
	Dev        string `json:"dev,omitempty"` // label of skb->dev at the drop
	Reason     string `json:"reason"`
	ReasonCode uint32 `json:"reason_code"`
	AfterHop   int    `json:"after_hop"`
	// AfterDelivery: the packet had arrived in a container or namespace and
	// that stack freed it; the journey's verdict is then "delivered".
	AfterDelivery bool   `json:"after_delivery,omitempty"`
	TimeNS        uint64 `json:"time_ns"`
	Ifindex       uint32 `json:"ifindex,omitempty"`
	NetnsIno      uint32 `json:"netns_ino,omitempty"`
	Location      string `json:"location,omitempty"` // kernel address, hex
}

// SummaryJSON is the "summary" object.
type SummaryJSON struct {
	Type           string            `json:"type"` // "summary"
	Journeys       uint64            `json:"journeys"`
	Hops           uint64            `json:"hops"`
	Drops          uint64            `json:"drops"`
	DropsByReason  map[string]uint64 `json:"drops_by_reason"`
	UnmatchedDrops uint64            `json:"unmatched_drops"`
	Verdicts       map[string]uint64 `json:"verdicts"`
	Evictions      uint64            `json:"evictions"`
	TimedOut       uint64            `json:"timed_out"`
	PeakInFlight   int               `json:"peak_in_flight"`
	LostHops       uint64            `json:"lost_hops"`
	LostDrops      uint64            `json:"lost_drops"`
	Lost           uint64            `json:"lost"`
	// EvictedInFlight: packets the kernel forgot between two hooks.
	EvictedInFlight uint64 `json:"evicted_in_flight"`
	DurationNS      int64  `json:"duration_ns,omitempty"`
	// NamesWaited journeys were held until the resolver read names again;
	// NamesGaveUp of them went out with a provisional name after the bound.
	NamesWaited uint64 `json:"names_waited,omitempty"`
	NamesGaveUp uint64 `json:"names_gave_up,omitempty"`
}

// Journey writes one journey object.
func (p *JSON) Journey(j *journey.Journey) error {
	if p.err != nil {
		return p.err
	}
	p.buf = p.appendJourney(p.buf[:0], j)
	_, p.err = p.w.Write(p.buf)
	if cap(p.buf) > maxKeptBuf {
		p.buf = nil
	}
	return p.err
}

// KeepsJourneys is false: a journey is written out during Journey
// (pipeline.JourneyKeeper).
func (p *JSON) KeepsJourneys() bool { return false }

// Summary writes the summary object.
func (p *JSON) Summary(s Summary) error {
	if p.err != nil {
		return p.err
	}
	return p.enc.Encode(SummaryObject(s))
}

// JourneyObject builds the "journey" object (exported for other encoders).
func (p *JSON) JourneyObject(j *journey.Journey) *JourneyJSON {
	o := &JourneyJSON{
		Type:        "journey",
		ID:          j.ID,
		Time:        p.opt.wall(j.Start).Format(timeLayout),
		StartNS:     j.Start,
		EndNS:       j.End,
		TransitNS:   int64(j.Transit),
		Verdict:     j.Verdict.String(),
		Fanout:      j.Fanout,
		TimedOut:    j.TimedOut,
		Evicted:     j.Evicted,
		Hops:        make([]HopJSON, len(j.Hops)),
		Fingerprint: fmt.Sprintf("%016x", j.Fingerprint),
	}
	if pk := j.Packet(); pk != nil {
		o.Summary = Describe(pk)
		o.Packet = packetJSON(pk)
		o.Len, o.GSOSegs, o.GSOSize = j.Hops[0].Len, j.Hops[0].GSOSegs, j.Hops[0].GSOSize
	}
	for i := range j.Hops {
		h := &j.Hops[i]
		e := &h.Endpoint
		hj := HopJSON{
			TimeNS: h.TimeNS, DeltaNS: int64(h.Delta), Parent: h.Parent,
			Label: h.Label(), Iface: e.Name, Ifindex: e.Ifindex, NetnsIno: e.NetnsIno,
			Role: e.Role.String(), Resolved: h.Resolved, Bridge: e.Bridge, Network: e.Network,
			Dir: h.Dir.String(), Action: h.Action(), Len: h.Len, GSOSegs: h.GSOSegs, GSOSize: h.GSOSize,
		}
		if e.Container != nil {
			hj.Container, hj.ContainerID = e.Container.Name, e.Container.ID
		}
		if h.Pkt.Src.IsValid() && !h.Pkt.Layers.Has(event.LayerARP) {
			hj.Src, hj.Dst = hostPort(h.Pkt.Src, h.Pkt.SrcPort), hostPort(h.Pkt.Dst, h.Pkt.DstPort)
		}
		if t := h.Tunnel; t != nil {
			hj.Tunnel = &TunnelJSON{Type: "vxlan", VNI: t.VNI, Peer: t.Peer.String(), Node: t.Node}
		}
		if b, ok := j.Bridged(i); ok {
			hj.Bridged = &BridgedJSON{Bridge: b.Bridge, Network: b.Network, Kind: b.Kind, Label: b.Label(), Inferred: true}
		}
		o.Hops[i] = hj
	}
	for _, rw := range j.Rewrites {
		o.Rewrites = append(o.Rewrites, RewriteJSON{Hop: rw.Hop, Kind: rw.Kind.String(), From: rw.From.String(), To: rw.To.String()})
	}
	if d := j.Drop; d != nil {
		dj := &DropJSON{Where: d.Where(j), Reason: d.Name(), ReasonCode: d.Reason, AfterHop: d.After, AfterDelivery: d.AfterDelivery, TimeNS: d.TimeNS}
		if d.HasDev {
			dj.Dev = d.Dev()
			dj.Ifindex, dj.NetnsIno = d.Endpoint.Ifindex, d.Endpoint.NetnsIno
		}
		if d.Location != 0 {
			dj.Location = fmt.Sprintf("0x%x", d.Location)
		}
		o.Drop = dj
	}
	if r := j.Retransmit; r != nil {
		of, after := r.Of, int64(r.After)
		o.RetransmitOf, o.RetransmitAfterNS = &of, &after
	}
	return o
}

func packetJSON(p *event.Packet) *PacketJSON {
	o := &PacketJSON{
		Proto:     Proto(p),
		EtherType: fmt.Sprintf("0x%04x", p.EtherType),
		VLAN:      p.VLAN,
		IPProto:   p.Proto, IPID: p.IPID, TTL: p.TTL,
		SrcPort: p.SrcPort, DstPort: p.DstPort,
		Frag: p.Layers.Has(event.LayerFragment),
	}
	if p.Layers.Has(event.LayerEth) {
		o.SrcMAC, o.DstMAC = net.HardwareAddr(p.SrcMAC[:]).String(), net.HardwareAddr(p.DstMAC[:]).String()
	}
	if p.Src.IsValid() {
		o.Src = p.Src.String()
	}
	if p.Dst.IsValid() {
		o.Dst = p.Dst.String()
	}
	if p.Layers.Has(event.LayerTCP) {
		o.TCPFlags, o.Seq, o.Ack = TCPFlags(p.TCPFlags), p.Seq, p.Ack
	}
	if p.Layers.Has(event.LayerICMP) || p.Layers.Has(event.LayerICMPv6) {
		t, c := p.ICMPType, p.ICMPCode
		o.ICMPType, o.ICMPCode, o.ICMPID, o.ICMPSeq = &t, &c, p.ICMPID, p.ICMPSeq
	}
	if p.Layers.Has(event.LayerARP) {
		o.ARPOp = p.ARPOp
		o.IPProto, o.TTL = 0, 0
	}
	return o
}

// SummaryObject builds the "summary" object.
func SummaryObject(s Summary) *SummaryJSON {
	st := &s.Stats
	o := &SummaryJSON{
		Type: "summary", Journeys: st.Journeys, Hops: st.Hops, Drops: st.Drops,
		DropsByReason: map[string]uint64{}, UnmatchedDrops: st.UnmatchedDrops,
		Verdicts: map[string]uint64{}, Evictions: st.Evictions, TimedOut: st.TimedOut,
		PeakInFlight: st.MaxInFlight,
		LostHops:     s.Loss.Hops, LostDrops: s.Loss.Drops, Lost: s.Loss.Total(), EvictedInFlight: s.Loss.Evicted,
		DurationNS:  int64(s.Duration),
		NamesWaited: s.Names.Waited, NamesGaveUp: s.Names.GaveUp,
	}
	for k, v := range st.DropsByReason {
		o.DropsByReason[k] = v
	}
	for v, n := range st.ByVerdict {
		o.Verdicts[journey.Verdict(v).String()] = n
	}
	return o
}
