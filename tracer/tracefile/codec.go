package tracefile

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// ringSize is how many recent hops the delta coder can refer back to. One
// packet's hops are usually a few records apart; 256 covers busy interleaving.
const ringSize = 256

// hopRef is what later records may be coded against.
type hopRef struct {
	fp  uint64
	skb uint64
	pid uint64 // PacketID
	pkt event.Packet
	// data is the hop's packet bytes as coded: a packet's hops across a
	// bridge carry the same bytes, coded once. The writer copies them into
	// a buffer the slot keeps; the reader keeps the hop's own, which the
	// hops that share them get too (no copy: a record of a few bytes must
	// not cost snaplen bytes of memory).
	data []byte
}

// fpIndex finds the latest hop coded with a fingerprint, for the writer to
// code against: a direct-mapped table, 16 times the ring, so it costs an
// index and a compare where a map cost three hash operations a hop (a
// third of a recording's user-space time). Two fingerprints sharing a
// slot only cost the older one its reference (the hop is then coded
// against the previous one): the reader never sees the index.
type fpIndex [fpIndexSlots]struct{ fp, seq uint64 } // seq: hop number + 1, 0 empty

const fpIndexSlots = 16 * ringSize

func fpSlot(fp uint64) uint64 { return (fp * 0x9e3779b97f4a7c15) >> (64 - 12) } // 12 = log2(fpIndexSlots)

// latest returns the number of the latest hop coded with fingerprint fp.
func (x *fpIndex) latest(fp uint64) (uint64, bool) {
	e := &x[fpSlot(fp)]
	return e.seq - 1, e.seq != 0 && e.fp == fp
}

// set notes hop number seq as the latest with fingerprint fp.
func (x *fpIndex) set(fp, seq uint64) { x[fpSlot(fp)] = struct{ fp, seq uint64 }{fp, seq + 1} }

// state is the coding context shared, in lockstep, by writer and reader. It
// starts empty in every file, so each file (and each rotated part) decodes
// on its own.
type state struct {
	lastTime  uint64
	lastNetns uint32
	lastSkb   uint64
	lastPID   uint64
	hops      uint64 // hops coded so far
	ring      [ringSize]hopRef
	names     []string // interned drop reason names
}

// ref returns the hop d records back (d >= 1), or nil when d is 0 or out of range.
func (s *state) ref(d uint64) (*hopRef, bool) {
	if d == 0 {
		return nil, true
	}
	if d > ringSize || d > s.hops {
		return nil, false
	}
	return &s.ring[(s.hops-d)%ringSize], true
}

// push makes h the latest hop a record may refer to and returns its slot,
// for the caller to set its data.
func (s *state) push(h *event.Hop) *hopRef {
	r := &s.ring[s.hops%ringSize]
	r.fp, r.skb, r.pid, r.pkt = h.Fingerprint, h.SkbKey, h.PacketID, h.Pkt
	s.hops++
	return r
}

// Hop flags.
const (
	hopDirMask   = 0x03 // event.Direction
	hopNetns     = 1 << 2
	hopGSO       = 1 << 3
	hopData      = 1 << 4
	hopSameFP    = 1 << 5
	hopTunnel    = 1 << 6 // VNI and peer address follow the packet
	hopSameData  = 1 << 7 // the data is the reference's (hopData is not set)
	hopKnownBits = 1<<8 - 1
)

// Drop flags.
const (
	dropSameFP    = 1 << 0
	dropKnownBits = 1<<1 - 1
)

// encodeHop codes h against the coding state and advances it.
func (s *state) encodeHop(e *enc, h *event.Hop, fpIndex *fpIndex, snaplen uint32) {
	// Reference: the latest earlier hop of the same packet (same
	// fingerprint), else the previous hop (often the same flow).
	var d uint64
	if seq, ok := fpIndex.latest(h.Fingerprint); ok && s.hops-seq <= ringSize {
		d = s.hops - seq
	} else if s.hops > 0 {
		d = 1
	}
	ref, _ := s.ref(d)
	var zero hopRef
	if ref == nil {
		ref = &zero
	}
	data := h.Data
	if len(data) > int(snaplen) {
		data = data[:snaplen]
	}
	flags := uint64(h.Dir) & hopDirMask
	if h.NetnsIno != s.lastNetns {
		flags |= hopNetns
	}
	if h.GSOSegs != 0 || h.GSOSize != 0 {
		flags |= hopGSO
	}
	if len(data) > 0 {
		if d > 0 && bytes.Equal(data, ref.data) {
			flags |= hopSameData
		} else {
			flags |= hopData
		}
	}
	if d > 0 && h.Fingerprint == ref.fp {
		flags |= hopSameFP
	}
	if h.Tunnel != (event.Tunnel{}) {
		flags |= hopTunnel
	}
	e.uvarint(flags)
	e.uvarint(d)
	e.varint(int64(h.TimeNS - s.lastTime))
	e.uvarint(uint64(h.Ifindex))
	if flags&hopNetns != 0 {
		e.uvarint(uint64(h.NetnsIno))
	}
	e.uvarint(uint64(h.Len))
	if flags&hopGSO != 0 {
		e.uvarint(uint64(h.GSOSegs))
		e.uvarint(uint64(h.GSOSize))
	}
	refSkb, refPID := ref.skb, ref.pid
	if d == 0 {
		refSkb, refPID = s.lastSkb, s.lastPID
	}
	e.uvarint(h.SkbKey ^ refSkb)
	e.uvarint(h.PacketID ^ refPID)
	if flags&hopSameFP == 0 {
		e.u64(h.Fingerprint)
	}
	e.packet(&h.Pkt, &ref.pkt)
	if flags&hopTunnel != 0 {
		e.uvarint(uint64(h.Tunnel.VNI))
		e.addr(h.Tunnel.Peer)
	}
	if flags&hopData != 0 {
		e.bytes(data)
	}

	// Advance the state exactly as the decoder will.
	s.lastTime = h.TimeNS
	s.lastNetns = h.NetnsIno
	s.lastSkb = h.SkbKey
	s.lastPID = h.PacketID
	fpIndex.set(h.Fingerprint, s.hops)
	r := s.push(h)
	r.data = append(r.data[:0], data...) // h is the caller's: its bytes may be reused
}

func (s *state) encodeDrop(e *enc, dr *event.Drop, fpIndex *fpIndex, nameIDs map[string]uint64) {
	var d uint64
	if seq, ok := fpIndex.latest(dr.Fingerprint); ok && s.hops-seq <= ringSize {
		d = s.hops - seq
	}
	ref, _ := s.ref(d)
	var zero hopRef
	if ref == nil {
		ref = &zero
	}
	var flags uint64
	if d > 0 {
		flags |= dropSameFP
	}
	e.uvarint(flags)
	e.uvarint(d)
	e.varint(int64(dr.TimeNS - s.lastTime))
	refSkb, refPID := ref.skb, ref.pid
	if d == 0 {
		refSkb, refPID = s.lastSkb, s.lastPID
	}
	e.uvarint(dr.SkbKey ^ refSkb)
	e.uvarint(dr.PacketID ^ refPID)
	if flags&dropSameFP == 0 {
		e.u64(dr.Fingerprint)
	}
	e.uvarint(uint64(dr.Reason))
	name := dr.ReasonName
	if len(name) > maxReasonName {
		name = name[:maxReasonName]
	}
	if id, ok := nameIDs[name]; ok {
		e.uvarint(id)
	} else {
		// 0 introduces a new name; it gets the next ID (1, 2, ...).
		e.uvarint(0)
		e.bytes([]byte(name))
		s.names = append(s.names, name)
		nameIDs[name] = uint64(len(s.names))
	}
	e.uvarint(uint64(dr.Ifindex))
	e.uvarint(uint64(dr.NetnsIno))
	e.uvarint(dr.Location)
	e.packet(&dr.Pkt, &ref.pkt)
	s.lastTime = dr.TimeNS
}

// decodeHop decodes a hop payload and advances the state. The state is only
// advanced when the whole record decodes.
func (s *state) decodeHop(b []byte, snaplen uint32) (*event.Hop, error) {
	d := dec{b: b}
	h := &event.Hop{}
	flags := d.uvarint()
	if flags&^hopKnownBits != 0 {
		return nil, fmt.Errorf("unknown hop flags %#x", flags)
	}
	h.Dir = event.Direction(flags & hopDirMask)
	dist := d.uvarint()
	ref, ok := s.ref(dist)
	if !ok {
		return nil, fmt.Errorf("hop refers %d hops back, only %d before it", dist, min(s.hops, ringSize))
	}
	var zero hopRef
	if ref == nil {
		ref = &zero
	}
	h.TimeNS = s.lastTime + uint64(d.varint())
	h.Ifindex = uint32(d.uint(32, "ifindex"))
	h.NetnsIno = s.lastNetns
	if flags&hopNetns != 0 {
		h.NetnsIno = uint32(d.uint(32, "netns"))
	}
	h.Len = uint32(d.uint(32, "length"))
	if flags&hopGSO != 0 {
		h.GSOSegs = uint16(d.uint(16, "gso segs"))
		h.GSOSize = uint16(d.uint(16, "gso size"))
	}
	refSkb, refPID := ref.skb, ref.pid
	if dist == 0 {
		refSkb, refPID = s.lastSkb, s.lastPID
	}
	h.SkbKey = d.uvarint() ^ refSkb
	h.PacketID = d.uvarint() ^ refPID
	if flags&hopSameFP != 0 {
		if dist == 0 {
			return nil, errors.New("hop has the same fingerprint as no hop")
		}
		h.Fingerprint = ref.fp
	} else {
		h.Fingerprint = d.u64()
	}
	d.packet(&h.Pkt, &ref.pkt)
	if flags&hopTunnel != 0 {
		h.Tunnel.VNI = uint32(d.uint(32, "vni"))
		h.Tunnel.Peer = d.addr()
	}
	if flags&hopData != 0 {
		n := d.uvarint()
		if n == 0 || n > uint64(snaplen) {
			d.fail(fmt.Errorf("packet data of %d bytes with snaplen %d", n, snaplen))
		}
		if p := d.take(int(n)); p != nil {
			h.Data = append([]byte(nil), p...)
		}
	}
	if flags&hopSameData != 0 {
		if flags&hopData != 0 || len(ref.data) == 0 {
			return nil, errors.New("hop has the data of a hop without data")
		}
		h.Data = ref.data
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	s.lastTime = h.TimeNS
	s.lastNetns = h.NetnsIno
	s.lastSkb = h.SkbKey
	s.lastPID = h.PacketID
	s.push(h).data = h.Data
	return h, nil
}

func (s *state) decodeDrop(b []byte) (*event.Drop, error) {
	d := dec{b: b}
	dr := &event.Drop{}
	flags := d.uvarint()
	if flags&^dropKnownBits != 0 {
		return nil, fmt.Errorf("unknown drop flags %#x", flags)
	}
	dist := d.uvarint()
	ref, ok := s.ref(dist)
	if !ok {
		return nil, fmt.Errorf("drop refers %d hops back, only %d before it", dist, min(s.hops, ringSize))
	}
	if (flags&dropSameFP != 0) != (dist != 0) {
		return nil, errors.New("drop reference and flags disagree")
	}
	var zero hopRef
	if ref == nil {
		ref = &zero
	}
	dr.TimeNS = s.lastTime + uint64(d.varint())
	refSkb, refPID := ref.skb, ref.pid
	if dist == 0 {
		refSkb, refPID = s.lastSkb, s.lastPID
	}
	dr.SkbKey = d.uvarint() ^ refSkb
	dr.PacketID = d.uvarint() ^ refPID
	if flags&dropSameFP != 0 {
		dr.Fingerprint = ref.fp
	} else {
		dr.Fingerprint = d.u64()
	}
	dr.Reason = uint32(d.uint(32, "reason"))
	newName := false
	switch id := d.uvarint(); {
	case d.err != nil:
	case id == 0:
		n := d.uvarint()
		if n > maxReasonName {
			d.fail(fmt.Errorf("reason name of %d bytes", n))
		}
		dr.ReasonName = string(d.take(int(n)))
		newName = true
	case id <= uint64(len(s.names)):
		dr.ReasonName = s.names[id-1]
	default:
		d.fail(fmt.Errorf("reason name %d not defined", id))
	}
	dr.Ifindex = uint32(d.uint(32, "ifindex"))
	dr.NetnsIno = uint32(d.uint(32, "netns"))
	dr.Location = d.uvarint()
	d.packet(&dr.Pkt, &ref.pkt)
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	if newName {
		s.names = append(s.names, dr.ReasonName)
	}
	s.lastTime = dr.TimeNS
	return dr, nil
}
