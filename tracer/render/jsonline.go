package render

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// The journey line is appended field by field into a reused buffer instead
// of building a JourneyJSON and handing it to encoding/json: that costs a
// few hundred nanoseconds per journey instead of microseconds and several
// allocations per hop. The bytes must be exactly what
// json.Encoder (SetEscapeHTML(false)) writes for JourneyObject: keys in
// struct order, omitempty where the struct says so, strings escaped the
// same way. TestJourneyLineEquivalence and FuzzJourneyLine hold it to that;
// a field added to JourneyJSON and friends must be added here too.

// appendJourney appends j's "journey" object and a newline.
func (p *JSON) appendJourney(b []byte, j *journey.Journey) []byte {
	b = append(b, `{"type":"journey","id":`...)
	b = strconv.AppendUint(b, j.ID, 10)
	b = append(b, `,"time":"`...)
	b = p.appendTime(b, j.Start)
	b = append(b, `","start_ns":`...)
	b = strconv.AppendUint(b, j.Start, 10)
	b = append(b, `,"end_ns":`...)
	b = strconv.AppendUint(b, j.End, 10)
	b = append(b, `,"transit_ns":`...)
	b = strconv.AppendInt(b, int64(j.Transit), 10)
	b = append(b, `,"verdict":`...)
	b = appendQuoted(b, j.Verdict.String())
	b = append(b, `,"summary":"`...)
	pk := j.Packet()
	if pk != nil {
		b = appendDescribe(b, pk)
	}
	b = append(b, '"')
	var first journey.Hop
	if pk != nil {
		b = append(b, `,"packet":`...)
		b = appendPacket(b, pk)
		first = j.Hops[0]
	}
	b = append(b, `,"len":`...)
	b = strconv.AppendUint(b, uint64(first.Len), 10)
	b = appendGSO(b, first.GSOSegs, first.GSOSize)
	b = append(b, `,"fanout":`...)
	b = strconv.AppendInt(b, int64(j.Fanout), 10)
	b = append(b, `,"timed_out":`...)
	b = strconv.AppendBool(b, j.TimedOut)
	b = append(b, `,"evicted":`...)
	b = strconv.AppendBool(b, j.Evicted)
	b = append(b, `,"hops":[`...)
	for i := range j.Hops {
		if i > 0 {
			b = append(b, ',')
		}
		b = p.appendHop(b, j, i)
	}
	b = append(b, ']')
	b = appendRewrites(b, j.Rewrites)
	if j.Drop != nil {
		b = append(b, `,"drop":`...)
		b = appendDrop(b, j, j.Drop)
	}
	b = append(b, `,"fingerprint":"`...)
	b = appendHexPad(b, j.Fingerprint, 16)
	b = append(b, '"')
	if r := j.Retransmit; r != nil {
		b = append(b, `,"retransmit_of":`...)
		b = strconv.AppendUint(b, r.Of, 10)
		b = append(b, `,"retransmit_after_ns":`...)
		b = strconv.AppendInt(b, int64(r.After), 10)
	}
	return append(b, "}\n"...)
}

// appendPacket is packetJSON's object.
func appendPacket(b []byte, p *event.Packet) []byte {
	b = append(b, `{"proto":"`...)
	b = appendProto(b, p)
	b = append(b, `","ethertype":"0x`...)
	b = appendHexPad(b, uint64(p.EtherType), 4)
	b = append(b, '"')
	if p.Layers.Has(event.LayerEth) {
		b = append(b, `,"src_mac":"`...)
		b = appendMAC(b, &p.SrcMAC)
		b = append(b, `","dst_mac":"`...)
		b = appendMAC(b, &p.DstMAC)
		b = append(b, '"')
	}
	b = appendUintOmit(b, `,"vlan":`, uint64(p.VLAN))
	if p.Src.IsValid() {
		b = append(b, `,"src":"`...)
		b = appendAddr(b, p.Src)
		b = append(b, '"')
	}
	if p.Dst.IsValid() {
		b = append(b, `,"dst":"`...)
		b = appendAddr(b, p.Dst)
		b = append(b, '"')
	}
	b = appendUintOmit(b, `,"src_port":`, uint64(p.SrcPort))
	b = appendUintOmit(b, `,"dst_port":`, uint64(p.DstPort))
	arp := p.Layers.Has(event.LayerARP)
	if !arp {
		b = appendUintOmit(b, `,"ip_proto":`, uint64(p.Proto))
	}
	b = appendUintOmit(b, `,"ip_id":`, uint64(p.IPID))
	if !arp {
		b = appendUintOmit(b, `,"ttl":`, uint64(p.TTL))
	}
	if p.Layers.Has(event.LayerTCP) {
		b = append(b, `,"tcp_flags":"`...)
		b = appendTCPFlags(b, p.TCPFlags)
		b = append(b, '"')
		b = appendUintOmit(b, `,"seq":`, uint64(p.Seq))
		b = appendUintOmit(b, `,"ack":`, uint64(p.Ack))
	}
	if p.Layers.Has(event.LayerICMP) || p.Layers.Has(event.LayerICMPv6) {
		b = append(b, `,"icmp_type":`...)
		b = strconv.AppendUint(b, uint64(p.ICMPType), 10)
		b = append(b, `,"icmp_code":`...)
		b = strconv.AppendUint(b, uint64(p.ICMPCode), 10)
		b = appendUintOmit(b, `,"icmp_id":`, uint64(p.ICMPID))
		b = appendUintOmit(b, `,"icmp_seq":`, uint64(p.ICMPSeq))
	}
	if arp {
		b = appendUintOmit(b, `,"arp_op":`, uint64(p.ARPOp))
	}
	if p.Layers.Has(event.LayerFragment) {
		b = append(b, `,"frag":true`...)
	}
	return append(b, '}')
}

// appendHop is the HopJSON object of j.Hops[i].
func (p *JSON) appendHop(b []byte, j *journey.Journey, i int) []byte {
	h := &j.Hops[i]
	e := &h.Endpoint
	b = append(b, `{"time_ns":`...)
	b = strconv.AppendUint(b, h.TimeNS, 10)
	b = append(b, `,"delta_ns":`...)
	b = strconv.AppendInt(b, int64(h.Delta), 10)
	b = append(b, `,"parent":`...)
	b = strconv.AppendInt(b, int64(h.Parent), 10)
	b = p.endpoints.append(b, e, h.Resolved)
	b = append(b, `,"dir":`...)
	b = appendQuoted(b, h.Dir.String())
	b = append(b, `,"action":"`...)
	b = appendAction(b, h)
	b = append(b, `","len":`...)
	b = strconv.AppendUint(b, uint64(h.Len), 10)
	b = appendGSO(b, h.GSOSegs, h.GSOSize)
	if h.Pkt.Src.IsValid() && !h.Pkt.Layers.Has(event.LayerARP) {
		b = p.ends.append(b, &h.Pkt)
	}
	if t := h.Tunnel; t != nil {
		b = append(b, `,"tunnel":{"type":"vxlan","vni":`...)
		b = strconv.AppendUint(b, uint64(t.VNI), 10)
		b = append(b, `,"peer":"`...)
		b = t.Peer.AppendTo(b)
		b = append(b, '"')
		b = appendStringOmit(b, `,"node":`, t.Node)
		b = append(b, '}')
	}
	if s, ok := j.Bridged(i); ok {
		b = append(b, `,"bridged":{"bridge":`...)
		b = appendQuoted(b, s.Bridge)
		b = appendStringOmit(b, `,"network":`, s.Network)
		b = appendStringOmit(b, `,"kind":`, s.Kind)
		b = append(b, `,"label":"`...)
		b = appendBridgeLabel(b, s)
		b = append(b, `","inferred":true}`...)
	}
	return append(b, '}')
}

// appendEndpoint appends a hop's fields from "label" to "network": where
// it was.
func appendEndpoint(b []byte, e *topology.Endpoint, resolved bool) []byte {
	b = append(b, `,"label":"`...)
	b = appendLabel(b, e)
	b = append(b, `","iface":`...)
	b = appendQuoted(b, e.Name)
	b = append(b, `,"ifindex":`...)
	b = strconv.AppendUint(b, uint64(e.Ifindex), 10)
	b = append(b, `,"netns_ino":`...)
	b = strconv.AppendUint(b, uint64(e.NetnsIno), 10)
	b = append(b, `,"role":`...)
	b = appendQuoted(b, e.Role.String())
	b = append(b, `,"resolved":`...)
	b = strconv.AppendBool(b, resolved)
	if c := e.Container; c != nil {
		b = appendStringOmit(b, `,"container":`, c.Name)
		b = appendStringOmit(b, `,"container_id":`, c.ID)
	}
	b = appendStringOmit(b, `,"bridge":`, e.Bridge)
	return appendStringOmit(b, `,"network":`, e.Network)
}

// endpointCache keeps appendEndpoint's bytes for the interfaces hops were
// at lately: a busy trace prints the same few a hundred thousand times a
// second, and escaping and formatting them was a tenth of a hop's cost. An
// entry is used only when every field appendEndpoint reads (and
// Endpoint.LabelPrefix) is what it was made from, so a container that
// comes, goes or is renamed under the same interface shows at once; a
// field that starts to matter there must be added to cachedEndpoint.
type endpointCache [endpointCacheSlots]cachedEndpoint

const endpointCacheSlots = 64 // the top 6 bits of a 32-bit hash pick one

type cachedEndpoint struct {
	key  cachedEndpointKey
	json []byte // nil: empty
}

// cachedEndpointKey is what appendEndpoint's bytes depend on.
type cachedEndpointKey struct {
	netns, ifindex     uint32
	role               topology.Role
	resolved           bool
	hasContainer       bool
	name, bridge       string
	network, netnsName string
	driver             string
	container, id      string
}

func endpointKey(e *topology.Endpoint, resolved bool) cachedEndpointKey {
	k := cachedEndpointKey{netns: e.NetnsIno, ifindex: e.Ifindex, role: e.Role, resolved: resolved,
		name: e.Name, bridge: e.Bridge, network: e.Network, netnsName: e.NetnsName, driver: e.Driver}
	if c := e.Container; c != nil {
		k.hasContainer, k.container, k.id = true, c.Name, c.ID
	}
	return k
}

// append appends appendEndpoint's bytes for e, from the cache when they
// are there.
func (c *endpointCache) append(b []byte, e *topology.Endpoint, resolved bool) []byte {
	k := endpointKey(e, resolved)
	slot := &c[(e.NetnsIno*2654435761^e.Ifindex*0x85ebca6b)>>26]
	if slot.json != nil && slot.key == k {
		return append(b, slot.json...)
	}
	n := len(b)
	b = appendEndpoint(b, e, resolved)
	slot.key = k
	slot.json = append(slot.json[:0], b[n:]...)
	return b
}

// endsCache keeps the "src" and "dst" fields of the hop printed last: a
// packet's hops mostly have the same ones.
type endsCache struct {
	src, dst     netip.Addr
	sport, dport uint16
	json         []byte // nil: empty
}

func (c *endsCache) append(b []byte, pk *event.Packet) []byte {
	if c.json != nil && c.src == pk.Src && c.dst == pk.Dst && c.sport == pk.SrcPort && c.dport == pk.DstPort {
		return append(b, c.json...)
	}
	n := len(b)
	b = append(b, `,"src":"`...)
	b = appendHostPort(b, pk.Src, pk.SrcPort)
	b = append(b, `","dst":"`...)
	b = appendHostPort(b, pk.Dst, pk.DstPort)
	b = append(b, '"')
	c.src, c.dst, c.sport, c.dport = pk.Src, pk.Dst, pk.SrcPort, pk.DstPort
	c.json = append(c.json[:0], b[n:]...)
	return b
}

// appendRewrites is the "rewrites" array, left out when empty.
func appendRewrites(b []byte, rws []journey.Rewrite) []byte {
	if len(rws) == 0 {
		return b
	}
	b = append(b, `,"rewrites":[`...)
	for i := range rws {
		rw := &rws[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"hop":`...)
		b = strconv.AppendInt(b, int64(rw.Hop), 10)
		b = append(b, `,"kind":`...)
		b = appendQuoted(b, rw.Kind.String())
		b = append(b, `,"from":"`...)
		b = appendFlow(b, rw.From)
		b = append(b, `","to":"`...)
		b = appendFlow(b, rw.To)
		b = append(b, `"}`...)
	}
	return append(b, ']')
}

// appendDrop is the DropJSON object.
func appendDrop(b []byte, j *journey.Journey, d *journey.Drop) []byte {
	b = append(b, `{"where":"`...)
	switch {
	case d.After >= 0 && d.After < len(j.Hops):
		b = appendLabel(b, &j.Hops[d.After].Endpoint)
	case d.HasDev:
		b = appendLabel(b, &d.Endpoint)
	default:
		b = append(b, '?')
	}
	b = append(b, '"')
	if d.HasDev {
		// "dev" is omitted when the label is empty: roll the key back.
		n := len(b)
		b = append(b, `,"dev":"`...)
		m := len(b)
		if b = appendLabel(b, &d.Endpoint); len(b) == m {
			b = b[:n]
		} else {
			b = append(b, '"')
		}
	}
	b = append(b, `,"reason":"`...)
	if d.ReasonName != "" {
		b = appendEscaped(b, d.ReasonName)
	} else {
		b = append(b, "reason("...)
		b = strconv.AppendUint(b, uint64(d.Reason), 10)
		b = append(b, ')')
	}
	b = append(b, `","reason_code":`...)
	b = strconv.AppendUint(b, uint64(d.Reason), 10)
	b = append(b, `,"after_hop":`...)
	b = strconv.AppendInt(b, int64(d.After), 10)
	if d.AfterDelivery {
		b = append(b, `,"after_delivery":true`...)
	}
	b = append(b, `,"time_ns":`...)
	b = strconv.AppendUint(b, d.TimeNS, 10)
	if d.HasDev {
		b = appendUintOmit(b, `,"ifindex":`, uint64(d.Endpoint.Ifindex))
		b = appendUintOmit(b, `,"netns_ino":`, uint64(d.Endpoint.NetnsIno))
	}
	if d.Location != 0 {
		b = append(b, `,"location":"0x`...)
		b = strconv.AppendUint(b, d.Location, 16)
		b = append(b, '"')
	}
	return append(b, '}')
}

func appendGSO(b []byte, segs, size uint16) []byte {
	b = appendUintOmit(b, `,"gso_segs":`, uint64(segs))
	return appendUintOmit(b, `,"gso_size":`, uint64(size))
}

// appendUintOmit appends key and n unless n is 0 (omitempty).
func appendUintOmit(b []byte, key string, n uint64) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), n, 10)
}

// appendStringOmit appends key and s quoted unless s is "" (omitempty).
func appendStringOmit(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendQuoted(append(b, key...), s)
}

// appendTime appends the wall time of mono as JourneyObject formats it
// (timeLayout). Journeys come many a second: the date, clock and zone of
// the last second are kept, and only the nanoseconds are formatted anew. A
// zone's offset changes only on a whole second, so the second and the
// Location decide them.
func (p *JSON) appendTime(b []byte, mono uint64) []byte {
	t := p.opt.wall(mono)
	c := &p.second
	if sec, loc := t.Unix(), t.Location(); !c.ok || sec != c.sec || loc != c.loc {
		c.head = t.AppendFormat(c.head[:0], timeLayout[:len("2006-01-02T15:04:05")])
		c.zone = t.AppendFormat(c.zone[:0], timeLayout[len("2006-01-02T15:04:05.000000000"):])
		c.sec, c.loc, c.ok = sec, loc, true
	}
	b = append(b, c.head...)
	var ns [len(".000000000")]byte
	ns[0] = '.'
	for i, n := len(ns)-1, t.Nanosecond(); i > 0; i-- {
		ns[i] = byte('0' + n%10)
		n /= 10
	}
	b = append(b, ns[:]...)
	return append(b, c.zone...)
}

// secondCache is the formatted date and clock ("2006-01-02T15:04:05") and
// zone ("Z07:00") of one second in one Location.
type secondCache struct {
	ok   bool
	sec  int64
	loc  *time.Location
	head []byte
	zone []byte
}
