package exchange

import (
	"math/rand/v2"
	"testing"
)

// TestPosIndexAsMap runs random sets, gets and deletes on a posIndex and a
// Go map side by side. The keys share their low bits in long runs, so
// probes wrap around the table's end and deletions shift entries back
// across it.
func TestPosIndexAsMap(t *testing.T) {
	for _, keys := range []struct {
		name string
		key  func(r *rand.Rand) uint64
	}{
		{"spread", func(r *rand.Rand) uint64 { return r.Uint64N(4096) * 0x9e3779b97f4a7c15 }},
		// few homes, near the end of the table: every run wraps
		{"clustered", func(r *rand.Rand) uint64 { return r.Uint64N(300)<<32 | (0xffffffff - r.Uint64N(4)) }},
		{"equal low bits", func(r *rand.Rand) uint64 { return r.Uint64N(500) << 40 }},
	} {
		t.Run(keys.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var ix posIndex
			want := map[uint64]uint64{}
			for op := range 200000 {
				h := keys.key(r)
				switch r.IntN(3) {
				case 0:
					ix.set(h, uint64(op))
					want[h] = uint64(op)
				case 1:
					ix.del(h)
					delete(want, h)
				}
				got, ok := ix.get(h)
				w, wok := want[h]
				if ok != wok || got != w {
					t.Fatalf("op %d: get(%#x) = %d, %v; want %d, %v", op, h, got, ok, w, wok)
				}
				if ix.len() != len(want) {
					t.Fatalf("op %d: len %d, want %d", op, ix.len(), len(want))
				}
			}
			// Every key still there, and none of the others.
			for h, w := range want {
				if got, ok := ix.get(h); !ok || got != w {
					t.Fatalf("get(%#x) = %d, %v; want %d", h, got, ok, w)
				}
			}
			n := 0
			for _, s := range ix.slots {
				if s.pos1 != 0 {
					n++
					if _, ok := want[s.h]; !ok {
						t.Fatalf("%#x held after its delete", s.h)
					}
				}
			}
			if n != len(want) {
				t.Fatalf("%d slots used for %d keys", n, len(want))
			}
		})
	}
}

// A zero posIndex is empty and takes keys.
func TestPosIndexZero(t *testing.T) {
	var ix posIndex
	if _, ok := ix.get(7); ok {
		t.Fatal("empty index has 7")
	}
	ix.del(7)
	ix.set(0, 0) // key 0 and position 0 are a key and a position like any
	if p, ok := ix.get(0); !ok || p != 0 {
		t.Fatalf("get(0) = %d, %v", p, ok)
	}
}
