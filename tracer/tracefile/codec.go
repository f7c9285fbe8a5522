package tracefile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

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
}

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

func (s *state) push(h *event.Hop) {
	s.ring[s.hops%ringSize] = hopRef{fp: h.Fingerprint, skb: h.SkbKey, pid: h.PacketID, pkt: h.Pkt}
	s.hops++
}

// Hop flags.
const (
	hopDirMask   = 0x03 // event.Direction
	hopNetns     = 1 << 2
	hopGSO       = 1 << 3
	hopData      = 1 << 4
	hopSameFP    = 1 << 5
	hopKnownBits = 1<<6 - 1
)

// Drop flags.
const (
	dropSameFP    = 1 << 0
	dropKnownBits = 1<<1 - 1
)

// Packet field mask bits: a set bit means the field differs from the
// reference packet and its value follows.
const (
	pLayers = 1 << iota
	pSrcMAC
	pDstMAC
	pEtherType
	pVLAN
	pSrc
	pDst
	pProto
	pIPID
	pTTL
	pSrcPort
	pDstPort
	pTCPFlags
	pSeq
	pAck
	pICMPType
	pICMPCode
	pICMPID
	pICMPSeq
	pARPOp
	pARPSenderMAC
	pARPTargetMAC
	pKnownBits = 1<<iota - 1
)

// enc appends to a buffer.
type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) u8(v uint8)       { e.b = append(e.b, v) }
func (e *enc) u64(v uint64)     { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }

// delta32 codes a 32-bit counter (IP ID, TCP sequence) as the signed
// distance from the reference, which is small for consecutive packets.
func (e *enc) delta32(v, ref uint32) { e.varint(int64(int32(v - ref))) }

func (e *enc) addr(a netip.Addr) {
	switch {
	case !a.IsValid():
		e.u8(0)
	case a.Is4():
		e.u8(4)
		b := a.As4()
		e.b = append(e.b, b[:]...)
	default:
		e.u8(6)
		b := a.As16()
		e.b = append(e.b, b[:]...)
	}
}

func (e *enc) packet(p, ref *event.Packet) {
	var m uint64
	set := func(bit uint64, differ bool) {
		if differ {
			m |= bit
		}
	}
	set(pLayers, p.Layers != ref.Layers)
	set(pSrcMAC, p.SrcMAC != ref.SrcMAC)
	set(pDstMAC, p.DstMAC != ref.DstMAC)
	set(pEtherType, p.EtherType != ref.EtherType)
	set(pVLAN, p.VLAN != ref.VLAN)
	set(pSrc, p.Src != ref.Src)
	set(pDst, p.Dst != ref.Dst)
	set(pProto, p.Proto != ref.Proto)
	set(pIPID, p.IPID != ref.IPID)
	set(pTTL, p.TTL != ref.TTL)
	set(pSrcPort, p.SrcPort != ref.SrcPort)
	set(pDstPort, p.DstPort != ref.DstPort)
	set(pTCPFlags, p.TCPFlags != ref.TCPFlags)
	set(pSeq, p.Seq != ref.Seq)
	set(pAck, p.Ack != ref.Ack)
	set(pICMPType, p.ICMPType != ref.ICMPType)
	set(pICMPCode, p.ICMPCode != ref.ICMPCode)
	set(pICMPID, p.ICMPID != ref.ICMPID)
	set(pICMPSeq, p.ICMPSeq != ref.ICMPSeq)
	set(pARPOp, p.ARPOp != ref.ARPOp)
	set(pARPSenderMAC, p.ARPSenderMAC != ref.ARPSenderMAC)
	set(pARPTargetMAC, p.ARPTargetMAC != ref.ARPTargetMAC)
	e.uvarint(m)
	if m&pLayers != 0 {
		e.uvarint(uint64(p.Layers))
	}
	if m&pSrcMAC != 0 {
		e.b = append(e.b, p.SrcMAC[:]...)
	}
	if m&pDstMAC != 0 {
		e.b = append(e.b, p.DstMAC[:]...)
	}
	if m&pEtherType != 0 {
		e.uvarint(uint64(p.EtherType))
	}
	if m&pVLAN != 0 {
		e.uvarint(uint64(p.VLAN))
	}
	if m&pSrc != 0 {
		e.addr(p.Src)
	}
	if m&pDst != 0 {
		e.addr(p.Dst)
	}
	if m&pProto != 0 {
		e.u8(p.Proto)
	}
	if m&pIPID != 0 {
		e.delta32(p.IPID, ref.IPID)
	}
	if m&pTTL != 0 {
		e.u8(p.TTL)
	}
	if m&pSrcPort != 0 {
		e.uvarint(uint64(p.SrcPort))
	}
	if m&pDstPort != 0 {
		e.uvarint(uint64(p.DstPort))
	}
	if m&pTCPFlags != 0 {
		e.u8(p.TCPFlags)
	}
	if m&pSeq != 0 {
		e.delta32(p.Seq, ref.Seq)
	}
	if m&pAck != 0 {
		e.delta32(p.Ack, ref.Ack)
	}
	if m&pICMPType != 0 {
		e.u8(p.ICMPType)
	}
	if m&pICMPCode != 0 {
		e.u8(p.ICMPCode)
	}
	if m&pICMPID != 0 {
		e.uvarint(uint64(p.ICMPID))
	}
	if m&pICMPSeq != 0 {
		e.varint(int64(int16(p.ICMPSeq - ref.ICMPSeq)))
	}
	if m&pARPOp != 0 {
		e.uvarint(uint64(p.ARPOp))
	}
	if m&pARPSenderMAC != 0 {
		e.b = append(e.b, p.ARPSenderMAC[:]...)
	}
	if m&pARPTargetMAC != 0 {
		e.b = append(e.b, p.ARPTargetMAC[:]...)
	}
}

// encodeHop codes h against the coding state and advances it.
func (s *state) encodeHop(e *enc, h *event.Hop, fpIndex map[uint64]uint64, snaplen uint32) {
	// Reference: the latest earlier hop of the same packet (same
	// fingerprint), else the previous hop (often the same flow).
	var d uint64
	if seq, ok := fpIndex[h.Fingerprint]; ok && s.hops-seq <= ringSize {
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
		flags |= hopData
	}
	if d > 0 && h.Fingerprint == ref.fp {
		flags |= hopSameFP
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
	if flags&hopData != 0 {
		e.bytes(data)
	}

	// Advance the state exactly as the decoder will.
	s.lastTime = h.TimeNS
	s.lastNetns = h.NetnsIno
	s.lastSkb = h.SkbKey
	s.lastPID = h.PacketID
	if s.hops >= ringSize {
		old := s.ring[s.hops%ringSize].fp
		if seq, ok := fpIndex[old]; ok && seq == s.hops-ringSize {
			delete(fpIndex, old)
		}
	}
	fpIndex[h.Fingerprint] = s.hops
	s.push(h)
}

func (s *state) encodeDrop(e *enc, dr *event.Drop, fpIndex map[uint64]uint64, nameIDs map[string]uint64) {
	var d uint64
	if seq, ok := fpIndex[dr.Fingerprint]; ok && s.hops-seq <= ringSize {
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

// dec reads from a record payload; the first problem sticks.
type dec struct {
	b   []byte
	off int
	err error
}

var errShort = errors.New("record ends early")

func (d *dec) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail(fmt.Errorf("bad varint at payload byte %d", d.off))
		return 0
	}
	d.off += n
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail(fmt.Errorf("bad varint at payload byte %d", d.off))
		return 0
	}
	d.off += n
	return v
}

// uint reads a uvarint that must fit in bits.
func (d *dec) uint(bits int, what string) uint64 {
	v := d.uvarint()
	if v>>bits != 0 {
		d.fail(fmt.Errorf("%s %d out of range", what, v))
		return 0
	}
	return v
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail(errShort)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *dec) u8() uint8 {
	p := d.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *dec) u64() uint64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

func (d *dec) mac(dst *[6]byte) {
	if p := d.take(6); p != nil {
		copy(dst[:], p)
	}
}

func (d *dec) delta32(ref uint32) uint32 {
	v := d.varint()
	if v < -1<<31 || v >= 1<<31 {
		d.fail(fmt.Errorf("delta %d out of range", v))
		return 0
	}
	return ref + uint32(v)
}

func (d *dec) addr() netip.Addr {
	switch tag := d.u8(); tag {
	case 0:
		return netip.Addr{}
	case 4:
		if p := d.take(4); p != nil {
			return netip.AddrFrom4([4]byte(p))
		}
	case 6:
		if p := d.take(16); p != nil {
			return netip.AddrFrom16([16]byte(p))
		}
	default:
		d.fail(fmt.Errorf("bad address tag %d", tag))
	}
	return netip.Addr{}
}

func (d *dec) packet(p *event.Packet, ref *event.Packet) {
	*p = *ref
	m := d.uvarint()
	if m&^pKnownBits != 0 {
		d.fail(fmt.Errorf("unknown packet fields %#x", m&^pKnownBits))
		return
	}
	if m&pLayers != 0 {
		p.Layers = event.Layer(d.uint(16, "layers"))
	}
	if m&pSrcMAC != 0 {
		d.mac(&p.SrcMAC)
	}
	if m&pDstMAC != 0 {
		d.mac(&p.DstMAC)
	}
	if m&pEtherType != 0 {
		p.EtherType = uint16(d.uint(16, "ethertype"))
	}
	if m&pVLAN != 0 {
		p.VLAN = uint16(d.uint(16, "vlan"))
	}
	if m&pSrc != 0 {
		p.Src = d.addr()
	}
	if m&pDst != 0 {
		p.Dst = d.addr()
	}
	if m&pProto != 0 {
		p.Proto = d.u8()
	}
	if m&pIPID != 0 {
		p.IPID = d.delta32(ref.IPID)
	}
	if m&pTTL != 0 {
		p.TTL = d.u8()
	}
	if m&pSrcPort != 0 {
		p.SrcPort = uint16(d.uint(16, "port"))
	}
	if m&pDstPort != 0 {
		p.DstPort = uint16(d.uint(16, "port"))
	}
	if m&pTCPFlags != 0 {
		p.TCPFlags = d.u8()
	}
	if m&pSeq != 0 {
		p.Seq = d.delta32(ref.Seq)
	}
	if m&pAck != 0 {
		p.Ack = d.delta32(ref.Ack)
	}
	if m&pICMPType != 0 {
		p.ICMPType = d.u8()
	}
	if m&pICMPCode != 0 {
		p.ICMPCode = d.u8()
	}
	if m&pICMPID != 0 {
		p.ICMPID = uint16(d.uint(16, "icmp id"))
	}
	if m&pICMPSeq != 0 {
		v := d.varint()
		if v < -1<<15 || v >= 1<<15 {
			d.fail(fmt.Errorf("icmp seq delta %d out of range", v))
		}
		p.ICMPSeq = ref.ICMPSeq + uint16(v)
	}
	if m&pARPOp != 0 {
		p.ARPOp = uint16(d.uint(16, "arp op"))
	}
	if m&pARPSenderMAC != 0 {
		d.mac(&p.ARPSenderMAC)
	}
	if m&pARPTargetMAC != 0 {
		d.mac(&p.ARPTargetMAC)
	}
}

func (d *dec) end() {
	if d.err == nil && d.off != len(d.b) {
		d.fail(fmt.Errorf("%d unexpected bytes at the end", len(d.b)-d.off))
	}
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
	if flags&hopData != 0 {
		n := d.uvarint()
		if n == 0 || n > uint64(snaplen) {
			d.fail(fmt.Errorf("packet data of %d bytes with snaplen %d", n, snaplen))
		}
		if p := d.take(int(n)); p != nil {
			h.Data = append([]byte(nil), p...)
		}
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	s.lastTime = h.TimeNS
	s.lastNetns = h.NetnsIno
	s.lastSkb = h.SkbKey
	s.lastPID = h.PacketID
	s.push(h)
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
