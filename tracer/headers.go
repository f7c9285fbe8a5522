package tracer

import (
	"sync/atomic"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// A packet's hops after its first go as compact events (hop_next_event in
// bpf/hoptrace.c) when their headers are byte for byte those of the hop
// before: the kernel writes a third of the bytes, and the reader gives the
// hop the headers it kept from that earlier event. headerCache is where it
// keeps them, and with a snaplen of at most 128 the packet's bytes too (a
// compact hop's bytes are its last hop's: snap_hash). Only with the skb
// key: with content keys, equal packets on two CPUs can share an entry, and
// each hop carries its headers.
//
// Packet IDs are (cpu+1)<<48 | a counter of that CPU (new_id), so the
// cache is direct-mapped per CPU by the counter: a packet's hops follow its
// first within microseconds, long before headerSlots newer packets of the
// same CPU take its slot. A compact hop whose headers are not there (the
// event that carried them was lost to a full ring, or its slot was taken)
// cannot be told apart from any other packet's: it is counted as lost with
// the ring's losses, never delivered with wrong headers.
type headerCache struct {
	cpus    [][]headerSlot // by CPU, made at the CPU's first packet
	filled  uint64         // compact hops given their headers
	missing atomic.Uint64  // compact hops without headers: not delivered, counted as lost
}

const headerSlots = 8192 // per CPU, a power of two

type headerSlot struct {
	id   uint64
	fp   uint64
	pkt  event.Packet
	data []byte // the hop's Data: read only, so its compact hops share it
}

func newHeaderCache(cpus int) *headerCache {
	return &headerCache{cpus: make([][]headerSlot, cpus)}
}

// slot is where packet id's headers go, or nil for an id of no CPU.
func (c *headerCache) slot(id uint64) *headerSlot {
	cpu := int(id>>48) - 1
	if cpu < 0 || cpu >= len(c.cpus) {
		return nil
	}
	if c.cpus[cpu] == nil {
		c.cpus[cpu] = make([]headerSlot, headerSlots)
	}
	return &c.cpus[cpu][id&(headerSlots-1)]
}

// keep remembers the headers of a hop that carried them.
func (c *headerCache) keep(h *event.Hop) {
	if s := c.slot(h.PacketID); s != nil {
		s.id, s.fp, s.pkt = h.PacketID, h.Fingerprint, h.Pkt
		s.data = h.Data
	}
}

// fill gives a compact hop its packet's headers, or says it cannot.
func (c *headerCache) fill(h *event.Hop) bool {
	s := c.slot(h.PacketID)
	if s == nil || s.id != h.PacketID {
		c.missing.Add(1)
		return false
	}
	h.Fingerprint, h.Pkt = s.fp, s.pkt
	h.Data = s.data
	c.filled++
	return true
}
