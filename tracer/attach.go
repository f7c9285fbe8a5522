package tracer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// FilterPrefix starts the name of every legacy cls_bpf filter hoptrace adds:
// "hoptrace-<pid>-<ingress|egress>", with "-q" appended when hoptrace also
// created the clsact qdisc. SweepStale relies on it.
const FilterPrefix = "hoptrace-"

// Iface names an interface to trace. Index wins over Name when both are set.
type Iface struct {
	Index int
	Name  string
	// Netns is the path of the interface's network namespace (for example
	// /run/netns/x or /proc/PID/ns/net); "" is the caller's namespace.
	Netns string
	// NetnsIno is the namespace's inode, when known. Detach then finds the
	// attachment without opening Netns, which is gone with its container.
	NetnsIno uint32
	// TunnelPort makes the interface an overlay's underlay: the host
	// interface its VXLAN packets (to and from this UDP port) cross. Only
	// those are traced there, as the packet inside, with the VNI and the
	// other node's address.
	TunnelPort uint16
}

func (i Iface) String() string {
	s := i.Name
	if s == "" {
		s = "if" + strconv.Itoa(i.Index)
	}
	if i.Netns != "" {
		s += "@" + i.Netns
	}
	return s
}

type ifaceKey struct {
	netns   uint32
	ifindex int
}

// attachment is what Attach did to one interface, undone by detach.
type attachment struct {
	name     string
	ns       netns.NsHandle
	netns    uint32 // inode of ns
	ifindex  int
	role     role
	links    []link.Link // TCX
	filters  []string    // names of our legacy filters
	ownQdisc bool        // we created the clsact qdisc
}

type direction struct {
	name   string
	tcx    ebpf.AttachType
	parent uint32
}

var directions = [2]direction{
	{"ingress", ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS},
	{"egress", ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS},
}

// Attach starts tracing both directions of an interface: through TCX links
// where the kernel has them (and Options.ForceLegacy is off), else through a
// clsact qdisc with named direct-action cls_bpf filters. Attaching an
// interface twice is a no-op. The calling thread's netns never changes.
func (t *Tracer) Attach(i Iface) (err error) {
	ns, err := openNetns(i.Netns)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			ns.Close()
		}
	}()
	ino, err := handleInode(ns)
	if err != nil {
		return err
	}
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in %s: %w", i, err)
	}
	defer nl.Close()
	lnk, err := findLink(nl, i)
	if err != nil {
		return err
	}
	key := ifaceKey{ino, lnk.Attrs().Index}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if _, ok := t.attached[key]; ok {
		ns.Close()
		return nil
	}
	progs, err := t.hopPrograms(ino, i.TunnelPort != 0)
	if err != nil {
		return err
	}
	if i.TunnelPort != 0 {
		if err := t.addTunnelPort(i.TunnelPort); err != nil {
			return fmt.Errorf("attach %s: %w", i, err)
		}
	}
	a := &attachment{name: lnk.Attrs().Name, ns: ns, netns: ino, ifindex: key.ifindex, role: roleOf(lnk)}
	a.role.underlay = i.TunnelPort != 0
	defer func() {
		if err != nil {
			err = errors.Join(err, a.detach())
			ns = -1 // closed by detach
		}
	}()
	legacy := t.opts.ForceLegacy || !t.features.TCX
	if !legacy {
		err = a.attachTCX(progs)
		if errors.Is(err, link.ErrNotSupported) {
			legacy = true
		} else if err != nil {
			return fmt.Errorf("attach %s: %w", i, err)
		}
	}
	if legacy {
		if err := a.attachLegacy(nl, lnk, progs); err != nil {
			return fmt.Errorf("attach %s: %w", i, err)
		}
	}
	t.attached[key] = a
	t.order = append(t.order, key)
	// Only now: a peer's ingress counts packets unknown to the table as
	// evicted once our egress tracks them.
	if err := t.setHookFlags(a); err != nil {
		delete(t.attached, key)
		t.order = t.order[:len(t.order)-1]
		return fmt.Errorf("attach %s: %w", i, errors.Join(err, t.clearHookFlags(a, t.peerOf(a))))
	}
	return nil
}

// Detach stops tracing an interface. An interface that is gone, or was
// never attached, is not an error.
func (t *Tracer) Detach(i Iface) error {
	ino := i.NetnsIno
	if ino == 0 {
		ns, err := openNetns(i.Netns)
		if err != nil {
			return err
		}
		ino, err = handleInode(ns)
		ns.Close()
		if err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	idx := i.Index
	if idx == 0 {
		// The interface may be gone: find it among our attachments by name.
		for k, a := range t.attached {
			if k.netns == ino && a.name == i.Name {
				idx = k.ifindex
			}
		}
	}
	key := ifaceKey{ino, idx}
	a, ok := t.attached[key]
	if !ok {
		return nil
	}
	peer := t.peerOf(a)
	delete(t.attached, key)
	for j, k := range t.order {
		if k == key {
			t.order = append(t.order[:j], t.order[j+1:]...)
			break
		}
	}
	// Before the hooks go: the peer stops counting at once.
	ferr := t.clearHookFlags(a, peer)
	if err := errors.Join(a.detach(), ferr); err != nil {
		return fmt.Errorf("detach %s: %w", i, err)
	}
	return nil
}

// Attached lists the attached interfaces as (netns inode, ifindex) pairs
// with their names.
func (t *Tracer) Attached() []Iface {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Iface
	for _, k := range t.order {
		a := t.attached[k]
		out = append(out, Iface{Index: a.ifindex, Name: a.name})
	}
	return out
}

type hopProgs struct{ inTCX, egTCX, inLegacy, egLegacy *ebpf.Program }

// underlayPrefix starts the names of the underlay hook programs.
const underlayPrefix = "hop_underlay_"

// hopCollKey names a collection of hop programs beside the first one.
type hopCollKey struct {
	netns    uint32 // 0: for every namespace (with kern ctx)
	underlay bool
}

// hopPrograms returns the hop programs for interfaces in netns ino, those
// of an underlay (VXLAN packets only) or the others. The first collection
// has the others for the host's namespace and, with an skb key, for every
// namespace: the kernel tells each hook its netns. Without, the netns is a
// load-time constant, so each netns gets its own copy of the programs. The
// underlay programs are loaded at their first use. All share every map.
// t.mu is held.
func (t *Tracer) hopPrograms(ino uint32, underlay bool) (hopProgs, error) {
	prefix := "hop_"
	if underlay {
		prefix = underlayPrefix
	}
	coll := t.coll
	if underlay || (!t.features.SkbKey && ino != t.hostIno) {
		k := hopCollKey{netns: ino, underlay: underlay}
		if t.features.SkbKey {
			k.netns = 0
		}
		coll = t.hopColls[k]
		if coll == nil {
			c, err := t.loadHopPrograms(k, prefix)
			if err != nil {
				return hopProgs{}, err
			}
			t.hopColls[k] = c
			coll = c
		}
	}
	return hopProgs{
		inTCX: coll.Programs[prefix+"ingress_tcx"], egTCX: coll.Programs[prefix+"egress_tcx"],
		inLegacy: coll.Programs[prefix+"ingress_legacy"], egLegacy: coll.Programs[prefix+"egress_legacy"],
	}, nil
}

// loadHopPrograms loads the hop programs whose names start with prefix (and
// no others) for k, sharing the first collection's maps.
func (t *Tracer) loadHopPrograms(k hopCollKey, prefix string) (*ebpf.Collection, error) {
	spec := t.spec.Copy()
	for name := range spec.Programs {
		if !strings.HasPrefix(name, prefix) || (!k.underlay && strings.HasPrefix(name, underlayPrefix)) {
			delete(spec.Programs, name)
		}
	}
	if k.netns != 0 {
		if err := spec.Variables["attach_netns_ino"].Set(k.netns); err != nil {
			return nil, fmt.Errorf("set netns: %w", err)
		}
	}
	maps := map[string]*ebpf.Map{}
	for name, m := range t.coll.Maps {
		if !strings.HasPrefix(name, ".") { // .rodata holds this copy's constants
			maps[name] = m
		}
	}
	return newCollection(spec, maps)
}

// addTunnelPort makes the underlay hooks take UDP port as VXLAN. A port
// stays set: it only ever matters at underlay hooks. t.mu is held.
func (t *Tracer) addTunnelPort(port uint16) error {
	m := t.coll.Maps["tunnel_ports"]
	word := uint32(port) / 32
	var bits uint32
	if err := m.Lookup(word, &bits); err != nil {
		return fmt.Errorf("tunnel ports: %w", err)
	}
	bits |= 1 << (port % 32)
	if err := m.Update(word, bits, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("tunnel ports: %w", err)
	}
	return nil
}

// detach undoes the attachment; an interface that is gone has nothing left
// to undo. It closes a.ns.
func (a *attachment) detach() error {
	defer a.ns.Close()
	var errs []error
	for i := len(a.links) - 1; i >= 0; i-- {
		errs = append(errs, a.links[i].Close())
	}
	a.links = nil
	if len(a.filters) > 0 {
		errs = append(errs, a.detachLegacy())
	}
	return errors.Join(errs...)
}

// IsGone reports whether an Attach or Detach error means the interface (or
// its namespace) no longer exists: containers come and go, so callers
// treat it as normal rather than as a failure.
func IsGone(err error) bool { return gone(err) }

// gone reports errors meaning the interface or object no longer exists.
func gone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.As(err, &nf)
}

func findLink(nl *netlink.Handle, i Iface) (netlink.Link, error) {
	var (
		lnk netlink.Link
		err error
	)
	switch {
	case i.Index > 0:
		lnk, err = nl.LinkByIndex(i.Index)
	case i.Name != "":
		lnk, err = nl.LinkByName(i.Name)
	default:
		return nil, errors.New("find interface: neither index nor name given")
	}
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", i, err)
	}
	return lnk, nil
}
