package tracefile_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

// TestSameDataCodedOnce: a packet's hops that carry the bytes of the hop
// before them (its way across a bridge) code them once; a hop whose bytes
// changed (NAT) carries its own, and so does another packet's hop with the
// bytes of an earlier one. Every hop reads back with its own bytes.
func TestSameDataCodedOnce(t *testing.T) {
	const snaplen = 128
	frame := bytes.Repeat([]byte{0xab}, 100)
	natted := bytes.Clone(frame)
	natted[30] = 0xcd
	hop := func(i int, fp, id uint64, data []byte) *event.Hop {
		return &event.Hop{TimeNS: uint64(1000 + i), Ifindex: uint32(10 + i), NetnsIno: 7, Len: 100,
			SkbKey: 0x55, PacketID: id, Fingerprint: fp, Data: bytes.Clone(data)}
	}
	shared := []item{
		{kind: tracefile.KindHop, hop: hop(0, 1, 1, frame)},
		{kind: tracefile.KindHop, hop: hop(1, 1, 1, frame)},
		{kind: tracefile.KindHop, hop: hop(2, 1, 1, natted)},
		{kind: tracefile.KindHop, hop: hop(3, 1, 1, natted)},
		{kind: tracefile.KindHop, hop: hop(4, 2, 2, frame)}, // another packet: its reference has other bytes
	}
	data, _ := writeAll(t, testHeader(snaplen), shared, true)
	_, recs, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, shared, recs, snaplen)

	// The same hops with bytes that all differ: each carries its own.
	var own []item
	for i, it := range shared {
		h := *it.hop
		h.Data = bytes.Clone(h.Data)
		h.Data[0] = byte(i)
		own = append(own, item{kind: tracefile.KindHop, hop: &h})
	}
	ownData, _ := writeAll(t, testHeader(snaplen), own, true)
	// Two hops coded as their reference's bytes: 2 x 100 bytes less.
	if saved := len(ownData) - len(data); saved < 2*len(frame) {
		t.Errorf("sharing saved %d bytes, want at least %d (two hops' bytes)", saved, 2*len(frame))
	}
}

// TestSameDataWithoutData: a hop that says it has its reference's bytes
// where the reference has none is damage, not a hop without bytes.
func TestSameDataWithoutData(t *testing.T) {
	var p []byte
	p = binary.AppendUvarint(p, 1<<7) // flags: data = reference's
	p = binary.AppendUvarint(p, 0)    // no reference
	p = binary.AppendVarint(p, 1000)  // time
	p = binary.AppendUvarint(p, 3)    // ifindex
	p = binary.AppendUvarint(p, 60)   // len
	p = binary.AppendUvarint(p, 0)    // skb key
	p = binary.AppendUvarint(p, 1)    // packet ID
	p = binary.LittleEndian.AppendUint64(p, 9)
	p = binary.AppendUvarint(p, 0) // no packet field differs
	_, _, err := readAll(rawFile(t, []byte(jsonOf(t, testHeader(64))), rawRecord{tracefile.KindHop, p}))
	if !errors.Is(err, tracefile.ErrCorrupt) || !strings.Contains(err.Error(), "data of a hop without data") {
		t.Fatalf("read: %v, want ErrCorrupt for the data of a hop without data", err)
	}
}

// TestSameDataMemory: hops that share their reference's bytes share them in
// memory too, so that a file of tiny records that each say "the bytes of
// the hop before" cannot make the reader allocate snaplen bytes for each.
func TestSameDataMemory(t *testing.T) {
	const snaplen = 64 << 10
	const n = 2000
	frame := bytes.Repeat([]byte{0x5a}, snaplen)
	items := make([]item, n)
	for i := range items {
		items[i] = item{kind: tracefile.KindHop, hop: &event.Hop{TimeNS: uint64(i), Ifindex: 3, Len: snaplen,
			PacketID: 1, Fingerprint: 1, Data: frame}}
	}
	data, _ := writeAll(t, testHeader(snaplen), items, true)
	alloc, err := readAlloc(data)
	if err != nil {
		t.Fatal(err)
	}
	// An event.Hop and the record list's share for each hop, the one frame
	// and the reader's buffers: far from n frames (131 MB).
	limit := 8*uint64(len(data)) + n*1024 + 1<<20
	t.Logf("%d-byte file of %d hops: %d bytes allocated", len(data), n, alloc)
	if alloc > limit {
		t.Fatalf("reading a %d-byte file allocated %d bytes, more than %d", len(data), alloc, limit)
	}
	_, recs, _ := readAll(data)
	for i, r := range recs[:n] {
		if !bytes.Equal(r.Hop.Data, frame) {
			t.Fatalf("hop %d: %d bytes, not the frame", i, len(r.Hop.Data))
		}
	}
}
