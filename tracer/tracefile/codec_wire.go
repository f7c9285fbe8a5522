package tracefile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The values records are made of: varints, addresses, deltas. The decoder
// never panics on a short or damaged payload; its first error sticks.

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

// delta16 is delta32 for a 16-bit counter (ICMP sequence).
func (e *enc) delta16(v, ref uint16) { e.varint(int64(int16(v - ref))) }

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

func (d *dec) delta16(ref uint16, what string) uint16 {
	v := d.varint()
	if v < -1<<15 || v >= 1<<15 {
		d.fail(fmt.Errorf("%s delta %d out of range", what, v))
		return 0
	}
	return ref + uint16(v)
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

func (d *dec) end() {
	if d.err == nil && d.off != len(d.b) {
		d.fail(fmt.Errorf("%d unexpected bytes at the end", len(d.b)-d.off))
	}
}
