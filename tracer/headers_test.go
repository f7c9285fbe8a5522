package tracer

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/event"
)

func TestHeaderCache(t *testing.T) {
	c := newHeaderCache(2)
	id := func(cpu int, n uint64) uint64 { return uint64(cpu+1)<<48 | n }
	first := event.Hop{PacketID: id(1, 7), Fingerprint: 0xf00d, Pkt: event.Packet{
		Layers: event.LayerIPv4 | event.LayerUDP, Src: netip.MustParseAddr("10.0.0.1"),
		Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1000, DstPort: 53, TTL: 64,
	}}
	c.keep(&first)

	next := event.Hop{PacketID: first.PacketID, Ifindex: 9}
	if !c.fill(&next) {
		t.Fatal("a compact hop of a kept packet got no headers")
	}
	if next.Pkt != first.Pkt || next.Fingerprint != first.Fingerprint || next.Ifindex != 9 {
		t.Errorf("filled %+v, want the first hop's headers and fingerprint, its own interface", next)
	}

	// The same counter on the other CPU is another packet.
	other := event.Hop{PacketID: id(0, 7)}
	if c.fill(&other) {
		t.Errorf("packet %#x got the headers of %#x", other.PacketID, first.PacketID)
	}
	// A packet headerSlots later takes the slot: the earlier one's compact
	// hops are not given its headers.
	later := event.Hop{PacketID: id(1, 7+headerSlots), Pkt: event.Packet{TTL: 1}}
	c.keep(&later)
	if again := (event.Hop{PacketID: first.PacketID}); c.fill(&again) {
		t.Errorf("a packet whose slot was taken got headers %+v", again.Pkt)
	}
	// No CPU of this host.
	if odd := (event.Hop{PacketID: id(5, 1)}); c.fill(&odd) {
		t.Error("an id of no CPU got headers")
	}
	if c.filled != 1 || c.missing.Load() != 3 {
		t.Errorf("filled %d, missing %d; want 1 and 3", c.filled, c.missing.Load())
	}
}

// TestHeaderCacheKeepsBytes: with a snaplen, a compact hop gets the bytes
// of its packet's last full hop, without a copy or an allocation (Data is
// read only); a full hop without bytes leaves the packet's later compact
// hops without any.
func TestHeaderCacheKeepsBytes(t *testing.T) {
	c := newHeaderCache(1)
	id := uint64(1)<<48 | 3
	first := event.Hop{PacketID: id, Data: []byte{1, 2, 3, 4}}
	c.keep(&first)

	next := event.Hop{PacketID: id}
	if !c.fill(&next) {
		t.Fatal("a compact hop of a kept packet got nothing")
	}
	if !bytes.Equal(next.Data, []byte{1, 2, 3, 4}) {
		t.Errorf("filled bytes %v, want the kept hop's [1 2 3 4]", next.Data)
	}
	if allocs := testing.AllocsPerRun(100, func() { c.fill(&event.Hop{PacketID: id}) }); allocs != 0 {
		t.Errorf("filling a compact hop allocated %v times, want 0", allocs)
	}

	bare := event.Hop{PacketID: id + 1}
	c.keep(&bare)
	after := event.Hop{PacketID: id + 1}
	if !c.fill(&after) || after.Data != nil {
		t.Errorf("a compact hop after a hop without bytes got %v, want none", after.Data)
	}
}
