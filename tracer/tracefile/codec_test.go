package tracefile_test

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

var update = flag.Bool("update", false, "rewrite the golden recordings in testdata/golden")

// randomHop makes hops with every field exercised, including ones a real
// kernel rarely gives (times going backwards, IPv6, mapped addresses, VLAN).
func randomHop(rng *rand.Rand, prev []*event.Hop, snaplen int) *event.Hop {
	if len(prev) > 0 && rng.IntN(3) == 0 {
		// Another hop of an earlier packet, slightly changed.
		h := *prev[rng.IntN(len(prev))]
		h.TimeNS += uint64(rng.IntN(100000)) - 20000
		h.Ifindex = rng.Uint32N(50)
		h.Dir = event.Direction(rng.IntN(2))
		if rng.IntN(2) == 0 {
			h.Pkt.TTL--
			h.Pkt.SrcMAC[5]++
		}
		h.Data = nil
		return &h
	}
	addr := func() netip.Addr {
		switch rng.IntN(4) {
		case 0:
			return netip.Addr{}
		case 1:
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return netip.AddrFrom16(b)
		case 2:
			return netip.AddrFrom16(netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.Uint32())}).As16()) // 4in6
		}
		return netip.AddrFrom4([4]byte{172, 17, 0, byte(rng.Uint32())})
	}
	mac := func() (m [6]byte) {
		for i := range m {
			m[i] = byte(rng.Uint32())
		}
		return m
	}
	h := &event.Hop{
		TimeNS: rng.Uint64(), Ifindex: rng.Uint32(), NetnsIno: rng.Uint32(), Dir: event.Direction(rng.IntN(4)),
		Len: rng.Uint32(), SkbKey: rng.Uint64(), PacketID: rng.Uint64() >> rng.IntN(64), Fingerprint: rng.Uint64(),
		Pkt: event.Packet{
			Layers: event.Layer(rng.Uint32()), SrcMAC: mac(), DstMAC: mac(), EtherType: uint16(rng.Uint32()), VLAN: uint16(rng.Uint32()),
			Src: addr(), Dst: addr(), Proto: uint8(rng.Uint32()), IPID: rng.Uint32(), TTL: uint8(rng.Uint32()),
			SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.Uint32()), TCPFlags: uint8(rng.Uint32()), Seq: rng.Uint32(), Ack: rng.Uint32(),
			ICMPType: uint8(rng.Uint32()), ICMPCode: uint8(rng.Uint32()), ICMPID: uint16(rng.Uint32()), ICMPSeq: uint16(rng.Uint32()),
			ARPOp: uint16(rng.Uint32()), ARPSenderMAC: mac(), ARPTargetMAC: mac(),
		},
	}
	if rng.IntN(2) == 0 {
		h.GSOSegs, h.GSOSize = uint16(rng.Uint32()), uint16(rng.Uint32())
	}
	if snaplen > 0 && rng.IntN(2) == 0 {
		h.Data = make([]byte, 1+rng.IntN(snaplen+10)) // sometimes longer than snaplen: cut
		for i := range h.Data {
			h.Data[i] = byte(rng.Uint32())
		}
	}
	return h
}

// randomItems makes n hops and drops with every field exercised; a drop
// often belongs to an earlier hop's packet.
func randomItems(rng *rand.Rand, n, snaplen int) []item {
	var items []item
	var hops []*event.Hop
	for i := 0; i < n; i++ {
		if rng.IntN(10) == 0 {
			d := &event.Drop{TimeNS: rng.Uint64(), SkbKey: rng.Uint64(), PacketID: rng.Uint64(), Fingerprint: rng.Uint64(), Reason: rng.Uint32(),
				ReasonName: []string{"", "NOT_SPECIFIED", "NETFILTER_DROP", strings.Repeat("X", 128)}[rng.IntN(4)],
				Ifindex:    rng.Uint32(), NetnsIno: rng.Uint32(), Location: rng.Uint64()}
			if len(hops) > 0 && rng.IntN(2) == 0 {
				p := hops[rng.IntN(len(hops))]
				d.Fingerprint, d.Pkt, d.PacketID = p.Fingerprint, p.Pkt, p.PacketID
			}
			items = append(items, item{kind: tracefile.KindDrop, drop: d})
			continue
		}
		h := randomHop(rng, hops[max(0, len(hops)-300):], snaplen)
		hops = append(hops, h)
		items = append(items, item{kind: tracefile.KindHop, hop: h})
	}
	return items
}

// withTunnels puts about a quarter of the hops inside a VXLAN tunnel, as
// an overlay's underlay hook reports them.
func withTunnels(rng *rand.Rand, items []item) []item {
	for _, it := range items {
		if it.hop == nil || rng.IntN(4) != 0 {
			continue
		}
		peer := netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.Uint32())})
		if rng.IntN(3) == 0 {
			peer = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.Uint32())})
		}
		it.hop.Tunnel = event.Tunnel{VNI: rng.Uint32N(1 << 24), Peer: peer}
	}
	return items
}

func TestRoundTripRandom(t *testing.T) {
	const snaplen = 64
	items := withTunnels(rand.New(rand.NewPCG(7, 8)), randomItems(rand.New(rand.NewPCG(1, 2)), 3000, snaplen))
	data, _ := writeAll(t, testHeader(snaplen), items, true)
	_, recs, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items, recs, snaplen)
}

// goldenCases are the items of the committed recordings.
func goldenCases() []goldenCase {
	return []goldenCase{
		{"scenario", 32, scenario(tracefiletest.Options{Packets: 40, Snaplen: 32, DropEvery: 5})},
		{"random", 64, randomItems(rand.New(rand.NewPCG(3, 4)), 200, 64)},
		{"tunnel", 64, withTunnels(rand.New(rand.NewPCG(9, 10)), randomItems(rand.New(rand.NewPCG(5, 6)), 100, 64))},
	}
}

type goldenCase struct {
	name    string
	snaplen uint32
	items   []item
}

// TestGolden pins the format: the committed recordings are what the writer
// makes of the same items, byte for byte, and read back as those items. A
// change of the codec that changes a byte fails here; a deliberate format
// change rewrites them with -update (and needs a new format version, the
// old files kept for TestReadsVersion1 and its like).
func TestGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			data, _ := writeAll(t, testHeader(tc.snaplen), tc.items, true)
			path := filepath.Join("testdata", "golden", tc.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, golden) {
				at := 0
				for at < min(len(data), len(golden)) && data[at] == golden[at] {
					at++
				}
				t.Errorf("writing gives %d bytes, %s has %d; they first differ at byte %d", len(data), path, len(golden), at)
			}
			_, recs, err := readAll(golden)
			if err != nil {
				t.Fatal(err)
			}
			checkItems(t, tc.items, recs, tc.snaplen)
		})
	}
}

// TestReadsVersion1: recordings of the format's first version (written
// before hops could share their reference's data) read back as the same
// items.
func TestReadsVersion1(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			old, err := os.ReadFile(filepath.Join("testdata", "golden", "v1", tc.name+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			r, recs, err := readAll(old)
			if err != nil {
				t.Fatal(err)
			}
			if r.Version() != 1 {
				t.Fatalf("version %d, want 1", r.Version())
			}
			checkItems(t, tc.items, recs, tc.snaplen)
		})
	}
}

// TestEveryField: every field of event.Hop and event.Drop, set alone to a
// value of its own, reads back, and so do all of them at once. A field the
// codec does not carry (a new field of event.Packet missing from
// internal/codecgen/fields.go, or of Hop or Drop missing from their coding)
// reads back as its reference's value and fails here.
func TestEveryField(t *testing.T) {
	const snaplen = 16
	base := event.Hop{TimeNS: 1000, Ifindex: 2, NetnsIno: 3, Len: 60, SkbKey: 4, PacketID: 5, Fingerprint: 6}
	all := base
	for _, path := range leafFields(reflect.TypeFor[event.Hop]()) {
		h := base
		setDistinct(t, reflect.ValueOf(&h).Elem().FieldByIndex(path))
		setDistinct(t, reflect.ValueOf(&all).Elem().FieldByIndex(path))
		name := "Hop." + fieldName(reflect.TypeFor[event.Hop](), path)
		// Coded against base: the previous hop, of the same packet unless
		// the field is the fingerprint.
		roundTrip(t, name, snaplen, item{kind: tracefile.KindHop, hop: &base}, item{kind: tracefile.KindHop, hop: &h})
	}
	roundTrip(t, "Hop (every field)", snaplen, item{kind: tracefile.KindHop, hop: &all})
	drop := event.Drop{TimeNS: 1100, SkbKey: base.SkbKey, PacketID: base.PacketID, Fingerprint: base.Fingerprint, Pkt: base.Pkt}
	allDrop := drop
	for _, path := range leafFields(reflect.TypeFor[event.Drop]()) {
		d := drop
		setDistinct(t, reflect.ValueOf(&d).Elem().FieldByIndex(path))
		setDistinct(t, reflect.ValueOf(&allDrop).Elem().FieldByIndex(path))
		// Coded against base: the hop with its fingerprint.
		roundTrip(t, "Drop."+fieldName(reflect.TypeFor[event.Drop](), path), snaplen, item{kind: tracefile.KindHop, hop: &base}, item{kind: tracefile.KindDrop, drop: &d})
	}
	roundTrip(t, "Drop (every field)", snaplen, item{kind: tracefile.KindDrop, drop: &allDrop})
}

func roundTrip(t *testing.T, name string, snaplen uint32, items ...item) {
	t.Run(name, func(t *testing.T) {
		data, _ := writeAll(t, testHeader(snaplen), items, true)
		_, recs, err := readAll(data)
		if err != nil {
			t.Fatal(err)
		}
		checkItems(t, items, recs, snaplen)
	})
}

// leafFields are the index paths of the fields of t, of its event structs
// (Hop.Pkt) field by field.
func leafFields(t reflect.Type) [][]int {
	var paths [][]int
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() {
			for _, sub := range leafFields(f.Type) {
				paths = append(paths, append([]int{i}, sub...))
			}
			continue
		}
		paths = append(paths, []int{i})
	}
	return paths
}

// fieldName is the name of the field of t at path, as Pkt.Src.
func fieldName(t reflect.Type, path []int) string {
	names := make([]string, len(path))
	for n := range path {
		names[n] = t.FieldByIndex(path[:n+1]).Name
	}
	return strings.Join(names, ".")
}

// setDistinct sets v to a value that the base hop and drop do not have.
func setDistinct(t *testing.T, v reflect.Value) {
	switch {
	case v.Type() == reflect.TypeFor[event.Direction]():
		v.SetUint(uint64(event.Egress))
	case v.Type() == reflect.TypeFor[netip.Addr]():
		v.Set(reflect.ValueOf(netip.MustParseAddr("2001:db8::a7b3")))
	case v.Type() == reflect.TypeFor[[6]byte]():
		v.Set(reflect.ValueOf([6]byte{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6}))
	case v.Type() == reflect.TypeFor[[]byte]():
		v.SetBytes([]byte("distinct"))
	case v.Kind() == reflect.String:
		v.SetString("DISTINCT")
	case v.CanUint():
		v.SetUint(0xa7b3c1d9e5f20817 >> (64 - v.Type().Bits()))
	default:
		t.Fatalf("no distinct value for a %s: teach setDistinct", v.Type())
	}
}
