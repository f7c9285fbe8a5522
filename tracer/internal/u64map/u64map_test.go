package u64map

import (
	"math/rand/v2"
	"testing"
)

// inverse is the multiplicative inverse of the placing constant mod 2^64:
// k = x * inverse places key k by x's top bits, so a test can choose homes.
var inverse = func() uint64 {
	const c = 0x9e3779b97f4a7c15
	inv := uint64(c)
	for range 6 {
		inv *= 2 - c*inv
	}
	return inv
}()

// TestAsMap runs random sets, gets and deletes on a Map and a Go map side
// by side, with keys spread, clustered at the table's last slots (every
// run wraps round its end) and all in one home.
func TestAsMap(t *testing.T) {
	if 0x9e3779b97f4a7c15*inverse != 1 {
		t.Fatal("inverse is wrong")
	}
	for _, keys := range []struct {
		name string
		key  func(r *rand.Rand) uint64
	}{
		{"spread", func(r *rand.Rand) uint64 { return r.Uint64N(4096) }},
		{"aligned pointers", func(r *rand.Rand) uint64 { return 0xffff888000000000 + r.Uint64N(4096)*256 }},
		{"last slots", func(r *rand.Rand) uint64 { return (^uint64(0) - r.Uint64N(300)<<8) * inverse }},
		{"one home", func(r *rand.Rand) uint64 { return r.Uint64N(300) * inverse }},
	} {
		t.Run(keys.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var m Map[uint64]
			want := map[uint64]uint64{}
			for op := range 100000 {
				k := keys.key(r)
				switch r.IntN(3) {
				case 0:
					m.Set(k, uint64(op)+1)
					want[k] = uint64(op) + 1
				case 1:
					m.Delete(k)
					delete(want, k)
				}
				if got := m.Get(k); got != want[k] {
					t.Fatalf("op %d: Get(%#x) = %d, want %d", op, k, got, want[k])
				}
				if m.Len() != len(want) {
					t.Fatalf("op %d: Len %d, want %d", op, m.Len(), len(want))
				}
			}
			for k, v := range want {
				if got := m.Get(k); got != v {
					t.Fatalf("Get(%#x) = %d, want %d", k, got, v)
				}
			}
			n := 0
			for _, s := range m.slots {
				if s.v != 0 {
					n++
					if want[s.k] != s.v {
						t.Fatalf("%#x holds %d, want %d", s.k, s.v, want[s.k])
					}
				}
			}
			if n != len(want) {
				t.Fatalf("%d slots used for %d keys", n, len(want))
			}
		})
	}
}

// The zero Map is empty and takes keys, 0 among them; a zero value deletes.
func TestZeroAndPointers(t *testing.T) {
	var m Map[*int]
	if m.Get(7) != nil {
		t.Fatal("empty map has 7")
	}
	m.Delete(7)
	one, two := new(int), new(int)
	m.Set(0, one)
	m.Set(7, two)
	if m.Get(0) != one || m.Get(7) != two || m.Len() != 2 {
		t.Fatalf("Get(0) %p, Get(7) %p, Len %d", m.Get(0), m.Get(7), m.Len())
	}
	m.Set(0, nil)
	if m.Get(0) != nil || m.Get(7) != two || m.Len() != 1 {
		t.Fatalf("after Set(0, nil): Get(0) %p, Get(7) %p, Len %d", m.Get(0), m.Get(7), m.Len())
	}
}
