package journey

import (
	"encoding/binary"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// The content index is where a hop or drop the kernel could not tie to a
// packet (no skb key before 6.3, or a flood clone with a skb of its own)
// looks for its journey. It is keyed by fingerprint and flow, so packets of
// other flows with equal content are never even looked at:
//
//   - keyFlow: fingerprint and the whole tuple (addresses and ports), for
//     every tuple a journey showed (two when NAT rewrote it);
//   - keySrc and keyDst: fingerprint and one side of the tuple, only for
//     journeys that entered host routing, where NAT may rewrite the other
//     side before the packet is seen again.
//
// Each key chains its journeys in the order they took the key, newest last,
// and lookups walk from the newest: the packet a hop belongs to is among the
// newest, and identical packets of one flow do not overtake each other.
//
// A key is a 64-bit hash, so the map takes the fast path for integer keys
// and a link is small; lookups check what they find (fingerprint, tuple),
// so a hash collision costs a step of a walk, never a wrong join.

// keyKind says which part of a tuple a joinKey holds.
type keyKind uint8

const (
	keyFlow keyKind = iota
	keySrc
	keyDst
)

// tuple is what content joins compare: addresses and ports of an IP packet
// (an ICMP echo's ID stands in for the port of the side that owns it, as in
// conntrack), ARP's sender and target, or for other frames the MACs.
type tuple struct {
	src, dst     [16]byte
	sport, dport uint16
}

func tupleOf(p *event.Packet) tuple {
	var t tuple
	switch {
	case p.Src.IsValid() && p.Dst.IsValid():
		t.src, t.dst = p.Src.As16(), p.Dst.As16()
		switch {
		case p.Layers.Has(event.LayerTCP) || p.Layers.Has(event.LayerUDP):
			t.sport, t.dport = p.SrcPort, p.DstPort
		case p.Layers.Has(event.LayerICMP) && p.ICMPType == 8, p.Layers.Has(event.LayerICMPv6) && p.ICMPType == 128:
			t.sport = p.ICMPID // echo request: the sender's ID
		case p.Layers.Has(event.LayerICMP) && p.ICMPType == 0, p.Layers.Has(event.LayerICMPv6) && p.ICMPType == 129:
			t.dport = p.ICMPID // echo reply: the receiver's
		}
	case p.Layers.Has(event.LayerEth):
		copy(t.src[:], p.SrcMAC[:])
		copy(t.dst[:], p.DstMAC[:])
	}
	return t
}

// nat says how a tuple was rewritten into t, and scores the rewrite: -1
// when both sides changed (or neither), else how much of the rewritten side
// was kept (MASQUERADE keeps the source port when it can). Only one side
// changing is plausible: MASQUERADE and SNAT rewrite the source, a
// published port (DNAT) the destination, and un-NAT of a reply the other
// side of each.
func (f tuple) nat(t *tuple) int {
	srcSame := f.src == t.src && f.sport == t.sport
	dstSame := f.dst == t.dst && f.dport == t.dport
	switch {
	case srcSame == dstSame:
		return -1
	case !srcSame:
		return b2i(f.src == t.src) + b2i(f.sport == t.sport)
	}
	return b2i(f.dst == t.dst) + b2i(f.dport == t.dport)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// joinKey is a content index key: the hash of a fingerprint and (part of)
// a tuple.
type joinKey uint64

func flowKey(fp uint64, t *tuple) joinKey {
	h := hashAddr(fp*k0^uint64(keyFlow), &t.src)
	return joinKey(fmix(hashAddr(h, &t.dst) ^ uint64(t.sport)<<16 ^ uint64(t.dport)))
}

func srcKey(fp uint64, t *tuple) joinKey {
	return joinKey(fmix(hashAddr(fp*k0^uint64(keySrc), &t.src) ^ uint64(t.sport)))
}

func dstKey(fp uint64, t *tuple) joinKey {
	return joinKey(fmix(hashAddr(fp*k0^uint64(keyDst), &t.dst) ^ uint64(t.dport)))
}

const k0 = 0x9e3779b97f4a7c15

func hashAddr(h uint64, a *[16]byte) uint64 {
	h = (h ^ binary.LittleEndian.Uint64(a[:8])) * k0
	h ^= h >> 32
	h = (h ^ binary.LittleEndian.Uint64(a[8:])) * k0
	return h ^ h>>29
}

// fmix is murmur3's 64-bit finalizer.
func fmix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

// link is a journey's place in the chain of one key.
type link struct {
	key        joinKey
	prev, next *open
}

// linkOf returns o's link in key k's chain, nil when o is not in it.
func (o *open) linkOf(k joinKey) *link {
	for i := range o.links {
		if o.links[i].key == k {
			return &o.links[i]
		}
	}
	return nil
}

// hasTuple reports whether one of o's hops showed tuple t.
func (o *open) hasTuple(t *tuple) bool {
	for i := range o.j.Hops {
		if tupleOf(&o.j.Hops[i].Pkt) == *t {
			return true
		}
	}
	return false
}

// contentIndex maps each key to the newest journey of its chain.
type contentIndex map[joinKey]*open

// add appends o to k's chain unless it is in it already.
func (x contentIndex) add(o *open, k joinKey) {
	if o.linkOf(k) != nil {
		return
	}
	tail := x[k]
	o.links = append(o.links, link{key: k, prev: tail})
	if tail != nil {
		tail.linkOf(k).next = o
	}
	x[k] = o
}

// remove takes o out of all its chains.
func (x contentIndex) remove(o *open) {
	for i := range o.links {
		l := &o.links[i]
		if l.prev != nil {
			l.prev.linkOf(l.key).next = l.next
		}
		if l.next != nil {
			l.next.linkOf(l.key).prev = l.prev
		} else if l.prev != nil {
			x[l.key] = l.prev
		} else {
			delete(x, l.key)
		}
	}
	o.links = o.links[:0]
}

// lookahead bounds a walk: it stops after this many journeys in a row that
// cannot take the event. In a chain of one flow's equal packets those are
// the packets ahead, which passed here already; older ones did too.
const lookahead = 8

// newest walks k's chain from its newest journey and returns the oldest one
// ok accepts before lookahead journeys in a row were refused, looking at no
// more than limit journeys in all when limit > 0.
func (x contentIndex) newest(k joinKey, ok func(*open) bool, limit int) *open {
	var found *open
	miss, seen := 0, 0
	for o := x[k]; o != nil && miss < lookahead && (limit <= 0 || seen < limit); o = o.linkOf(k).prev {
		seen++
		if ok(o) {
			found, miss = o, 0
		} else {
			miss++
		}
	}
	return found
}

// best walks k's chain from its newest journey, scoring each with score
// (-1: not a candidate), and returns the best one seen before lookahead
// journeys in a row were refused, the older on a tie.
func (x contentIndex) best(k joinKey, score func(*open) int, found *open, top int) (*open, int) {
	miss := 0
	for o := x[k]; o != nil && miss < lookahead; o = o.linkOf(k).prev {
		s := score(o)
		if s < 0 {
			miss++
			continue
		}
		miss = 0
		if s >= top && (s > top || found == nil || o.j.ID < found.j.ID) {
			found, top = o, s
		}
	}
	return found, top
}
