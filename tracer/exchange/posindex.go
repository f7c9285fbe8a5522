package exchange

// posIndex maps a segment's hash to the ring position of its latest
// transmission, as map[uint64]uint64 would. The keys are hashes already,
// so a key's own low bits place it: an open-addressed table with linear
// probing, 16 bytes a slot, four to a cache line. A bulk flow looks up,
// adds and removes one segment per journey in a table of tens of
// thousands; the Go map spent a tenth of `trace -o json`'s time there,
// hashing the hash again and probing groups it had to fetch.
type posIndex struct {
	slots []posSlot // len a power of two, at most half full
	n     int
}

// posSlot holds a key and its position plus one; 0 is an empty slot.
type posSlot struct {
	h, pos1 uint64
}

const minPosIndex = 64

func (t *posIndex) mask() uint64 { return uint64(len(t.slots) - 1) }

// get returns h's position.
func (t *posIndex) get(h uint64) (uint64, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	m := t.mask()
	for i := h & m; ; i = (i + 1) & m {
		s := &t.slots[i]
		if s.pos1 == 0 {
			return 0, false
		}
		if s.h == h {
			return s.pos1 - 1, true
		}
	}
}

// set makes pos h's position.
func (t *posIndex) set(h, pos uint64) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	m := t.mask()
	for i := h & m; ; i = (i + 1) & m {
		s := &t.slots[i]
		if s.pos1 == 0 {
			*s = posSlot{h: h, pos1: pos + 1}
			t.n++
			return
		}
		if s.h == h {
			s.pos1 = pos + 1
			return
		}
	}
}

// del removes h. The entries after it in its run move back to close the
// gap, so that no lookup stops early at an empty slot (no tombstones).
func (t *posIndex) del(h uint64) {
	if len(t.slots) == 0 {
		return
	}
	m := t.mask()
	i := h & m
	for ; ; i = (i + 1) & m {
		s := &t.slots[i]
		if s.pos1 == 0 {
			return
		}
		if s.h == h {
			break
		}
	}
	for j := (i + 1) & m; t.slots[j].pos1 != 0; j = (j + 1) & m {
		// The entry at j stays unless the gap at i lies on its way from
		// its home slot: cyclically, home in (i, j] means it does not.
		home := t.slots[j].h & m
		if (j-home)&m < (j-i)&m {
			continue
		}
		t.slots[i] = t.slots[j]
		i = j
	}
	t.slots[i] = posSlot{}
	t.n--
}

// len is the number of keys held.
func (t *posIndex) len() int { return t.n }

func (t *posIndex) grow() {
	old := t.slots
	t.slots = make([]posSlot, max(minPosIndex, 2*len(old)))
	t.n = 0
	for _, s := range old {
		if s.pos1 != 0 {
			t.set(s.h, s.pos1-1)
		}
	}
}
