// Package u64map is a hash table from uint64 keys for the per-hop paths of
// the pipeline (skb keys, packet IDs, segment hashes), where a Go map's
// lookups, assignments and deletes were a sixth of a traced hop's cost.
// Open addressing with linear probing, 8 bytes of key beside each value,
// a slot placed by the top bits of the key times an odd constant (skb
// addresses are aligned, packet IDs count up: neither has random low
// bits); a delete moves the rest of its run back, so there are no
// tombstones and no rehash but growth. The zero value of V means absent:
// Set never stores it.
package u64map

import "math/bits"

// Map maps uint64 keys to values of V. The zero Map is empty and ready.
// Not safe for concurrent use.
type Map[V comparable] struct {
	slots []slot[V] // len a power of two, at most half full
	shift uint      // 64 - log2(len(slots))
	n     int
}

type slot[V comparable] struct {
	k uint64
	v V // zero: empty
}

const minSlots = 64

func (m *Map[V]) home(k uint64) uint64 { return (k * 0x9e3779b97f4a7c15) >> m.shift }

func (m *Map[V]) mask() uint64 { return uint64(len(m.slots) - 1) }

// Get returns k's value, or the zero V.
func (m *Map[V]) Get(k uint64) V {
	var zero V
	if m.n == 0 {
		return zero
	}
	mask := m.mask()
	for i := m.home(k); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.v == zero {
			return zero
		}
		if s.k == k {
			return s.v
		}
	}
}

// Set makes v k's value; a zero v deletes k.
func (m *Map[V]) Set(k uint64, v V) {
	var zero V
	if v == zero {
		m.Delete(k)
		return
	}
	if 2*(m.n+1) > len(m.slots) {
		m.grow()
	}
	mask := m.mask()
	for i := m.home(k); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.v == zero {
			*s = slot[V]{k: k, v: v}
			m.n++
			return
		}
		if s.k == k {
			s.v = v
			return
		}
	}
}

// Delete removes k.
func (m *Map[V]) Delete(k uint64) {
	var zero V
	if m.n == 0 {
		return
	}
	mask := m.mask()
	i := m.home(k)
	for ; ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.v == zero {
			return
		}
		if s.k == k {
			break
		}
	}
	for j := (i + 1) & mask; m.slots[j].v != zero; j = (j + 1) & mask {
		// The entry at j stays unless the gap at i lies on its way from
		// its home: cyclically, a home in (i, j] means it does not.
		if (j-m.home(m.slots[j].k))&mask < (j-i)&mask {
			continue
		}
		m.slots[i] = m.slots[j]
		i = j
	}
	m.slots[i] = slot[V]{}
	m.n--
}

// Len is the number of keys held.
func (m *Map[V]) Len() int { return m.n }

func (m *Map[V]) grow() {
	old := m.slots
	size := max(minSlots, 2*len(old))
	m.slots = make([]slot[V], size)
	m.shift = uint(64 - bits.TrailingZeros(uint(size)))
	m.n = 0
	for _, s := range old {
		var zero V
		if s.v != zero {
			m.Set(s.k, s.v)
		}
	}
}
