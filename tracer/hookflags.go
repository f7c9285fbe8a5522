package tracer

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// What each traced interface means for a packet's way, told to the kernel
// in the hook_slots and hook_more maps, so that it holds packets as in flight
// only while they are between traced hooks:
//
//   - A packet's last traced hook (END): the ingress of a bridge device
//     (passed up to the host) or of an interface inside a container or
//     namespace (arrived there); the egress of a NIC or of an overlay's
//     vxlan0 or of its underlay (it leaves the machine) or of a bridge port veth whose peer
//     is not traced (handed to an untraced container). There its entry is marked ended in the
//     CPU's slot (and leaves the shared table), where a drop by the
//     receiving stack or a hook the host routes it to at once still finds it.
//   - After a peer (AFTER_PEER): the ingress of a veth whose peer is
//     traced. Every packet arriving there left through the peer's egress
//     hook, so one the table does not know was evicted in flight: counted.

// role is what an attached interface is.
type role struct {
	veth       bool
	bridge     bool // a bridge device
	bridgePort bool // enslaved to a bridge
	nic        bool // a plain device, not loopback
	tunnel     bool // vxlan: an overlay's way to the other nodes
	underlay   bool // the host interface an overlay's VXLAN packets cross (Iface.TunnelPort)
	peerIndex  int  // veth: the peer's ifindex, in the peer's netns
	peerNsid   int  // veth: the id of the peer's netns in this one, -1 for the same
}

func roleOf(lnk netlink.Link) role {
	at := lnk.Attrs()
	r := role{
		bridgePort: at.MasterIndex != 0,
		peerIndex:  at.ParentIndex,
		peerNsid:   at.NetNsID,
	}
	switch lnk.Type() {
	case "veth":
		r.veth = true
	case "bridge":
		r.bridge = true
	case "device":
		r.nic = at.Flags&net.FlagLoopback == 0
	case "vxlan":
		r.tunnel = true
	}
	return r
}

// hookFlags are the hook_flag bits of an attachment, given its veth peer's
// attachment (nil when the peer is not traced).
func (t *Tracer) hookFlags(a, peer *attachment) uint32 {
	r := a.role
	var f hoptraceHookFlag
	if r.underlay {
		// Leaving: on the wire. Arriving: vxlan0 takes it on.
		return uint32(hoptraceHookFlagHOOK_END_EGRESS)
	}
	if r.bridge || (!r.bridgePort && a.netns != t.hostIno) {
		f |= hoptraceHookFlagHOOK_END_INGRESS
	}
	if r.nic || r.tunnel || (r.veth && r.bridgePort && peer == nil) {
		f |= hoptraceHookFlagHOOK_END_EGRESS
	}
	if r.veth && peer != nil {
		f |= hoptraceHookFlagHOOK_AFTER_PEER
	}
	return uint32(f)
}

// peerOf finds the attachment of a's veth peer: each names the other's
// ifindex, in the netns a's link names. t.mu is held.
func (t *Tracer) peerOf(a *attachment) *attachment {
	if !a.role.veth {
		return nil
	}
	for _, b := range t.attached {
		if b == a || !b.role.veth || b.ifindex != a.role.peerIndex || b.role.peerIndex != a.ifindex {
			continue
		}
		if a.role.peerNsid < 0 {
			if b.netns == a.netns {
				return b
			}
			continue
		}
		if b.netns != a.netns && nsidOf(a, b) == a.role.peerNsid {
			return b
		}
	}
	return nil
}

// nsidOf is the id of b's netns in a's netns, -1 when it has none.
func nsidOf(a, b *attachment) int {
	nl, err := netlink.NewHandleAt(a.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return -1
	}
	defer nl.Close()
	id, err := nl.GetNetNsIdByFd(int(b.ns))
	if err != nil {
		return -1
	}
	return id
}

func (a *attachment) hookKey() hoptraceHookKey {
	return hoptraceHookKey{NetnsIno: a.netns, Ifindex: uint32(a.ifindex)}
}

// hookSlotIdx is hook_slot_idx in bpf/hoptrace.c.
func hookSlotIdx(k hoptraceHookKey) uint32 {
	return ((k.NetnsIno * 2654435761) ^ (k.Ifindex * 0x85ebca6b)) >> 22
}

// setHookFlags writes the flags of a new attachment and of its peer, whose
// flags change with it. t.mu is held.
func (t *Tracer) setHookFlags(a *attachment) error {
	peer := t.peerOf(a)
	err := t.putHookFlags(a.hookKey(), t.hookFlags(a, peer))
	if peer != nil {
		err = errors.Join(err, t.putHookFlags(peer.hookKey(), t.hookFlags(peer, a)))
	}
	return err
}

// clearHookFlags removes the flags of an attachment about to go and
// rewrites its peer's. t.mu is held; a is no longer in t.attached.
func (t *Tracer) clearHookFlags(a, peer *attachment) error {
	var err error
	if peer != nil {
		err = t.putHookFlags(peer.hookKey(), t.hookFlags(peer, nil))
	}
	delete(t.hookFlagsOf, a.hookKey())
	return errors.Join(err, t.writeHookSlot(hookSlotIdx(a.hookKey())))
}

func (t *Tracer) putHookFlags(k hoptraceHookKey, flags uint32) error {
	t.hookFlagsOf[k] = flags
	return t.writeHookSlot(hookSlotIdx(k))
}

// writeHookSlot rewrites a slot of hook_slots from t.hookFlagsOf: the
// interface with the lowest key has the slot, the others of the slot go to
// hook_more, written first, so a hook never finds HOOK_MORE without them.
func (t *Tracer) writeHookSlot(idx uint32) error {
	var keys []hoptraceHookKey
	for k := range t.hookFlagsOf {
		if hookSlotIdx(k) == idx {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y hoptraceHookKey) int {
		return cmp.Or(cmp.Compare(x.NetnsIno, y.NetnsIno), cmp.Compare(x.Ifindex, y.Ifindex))
	})
	more := t.coll.Maps["hook_more"]
	var slot hoptraceHookSlot
	for i, k := range keys {
		if i == 0 {
			slot = hoptraceHookSlot{Key: k, Flags: t.hookFlagsOf[k]}
			if err := more.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("set hook flags: %w", err)
			}
			continue
		}
		if err := more.Put(k, t.hookFlagsOf[k]); err != nil {
			return fmt.Errorf("set hook flags: %w", err)
		}
		slot.Flags |= uint32(hoptraceHookFlagHOOK_MORE)
	}
	if err := t.coll.Maps["hook_slots"].Put(idx, slot); err != nil {
		return fmt.Errorf("set hook flags: %w", err)
	}
	return nil
}
