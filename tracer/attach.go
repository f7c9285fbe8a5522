package tracer

import (
	"errors"
	"fmt"
	"os"
	"runtime"
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
	progs, err := t.hopPrograms(ino)
	if err != nil {
		return err
	}
	a := &attachment{name: lnk.Attrs().Name, ns: ns, netns: ino, ifindex: key.ifindex, role: roleOf(lnk)}
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

// hopPrograms returns the hop programs for interfaces in netns ino. With an
// skb key the kernel tells each hook its netns; without, the netns is a
// load-time constant, so each netns gets its own copy of the programs,
// sharing all maps.
func (t *Tracer) hopPrograms(ino uint32) (hopProgs, error) {
	coll := t.coll
	if !t.features.SkbKey && ino != t.hostIno {
		coll = t.nsColls[ino]
		if coll == nil {
			spec := t.spec.Copy()
			delete(spec.Programs, "drop")
			if err := spec.Variables["attach_netns_ino"].Set(ino); err != nil {
				return hopProgs{}, fmt.Errorf("set netns: %w", err)
			}
			maps := map[string]*ebpf.Map{}
			for _, name := range []string{"events", "lost", "hook_calls", "id_counter", "seen_pkts", "arrivals", "hook_slots", "hook_more", "scratch"} {
				maps[name] = t.coll.Maps[name]
			}
			c, err := newCollection(spec, maps)
			if err != nil {
				return hopProgs{}, err
			}
			t.nsColls[ino] = c
			coll = c
		}
	}
	return hopProgs{
		inTCX: coll.Programs["hop_ingress_tcx"], egTCX: coll.Programs["hop_egress_tcx"],
		inLegacy: coll.Programs["hop_ingress_legacy"], egLegacy: coll.Programs["hop_egress_legacy"],
	}, nil
}

func (a *attachment) attachTCX(p hopProgs) error {
	for _, d := range directions {
		prog := p.inTCX
		if d.tcx == ebpf.AttachTCXEgress {
			prog = p.egTCX
		}
		if prog == nil {
			return link.ErrNotSupported
		}
		var l link.Link
		// TCX resolves the ifindex in the caller's netns.
		err := inNetns(a.ns, func() error {
			var err error
			// At the head, so a foreign program that drops cannot hide a
			// packet from us; we return TCX_NEXT, so it still sees all.
			l, err = link.AttachTCX(link.TCXOptions{
				Interface: a.ifindex, Program: prog, Attach: d.tcx, Anchor: link.Head(),
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("tcx %s: %w", d.name, err)
		}
		a.links = append(a.links, l)
	}
	return nil
}

func (a *attachment) attachLegacy(nl *netlink.Handle, lnk netlink.Link, p hopProgs) error {
	qdiscs, err := nl.QdiscList(lnk)
	if err != nil {
		return fmt.Errorf("list qdiscs: %w", err)
	}
	have := false
	for _, q := range qdiscs {
		if q.Type() == "clsact" {
			have = true
		}
	}
	if !have {
		err := nl.QdiscAdd(clsact(a.ifindex))
		switch {
		case err == nil:
			a.ownQdisc = true
		case errors.Is(err, unix.EEXIST): // someone else was quicker: not ours
		default:
			return fmt.Errorf("add clsact qdisc: %w", err)
		}
	}
	for _, d := range directions {
		prog := p.inLegacy
		if d.parent == netlink.HANDLE_MIN_EGRESS {
			prog = p.egLegacy
		}
		name := fmt.Sprintf("%s%s-%s", FilterPrefix, selfTag, d.name)
		if a.ownQdisc {
			name += "-q"
		}
		prio, err := freePrio(nl, lnk, d.parent)
		if err != nil {
			return err
		}
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: a.ifindex, Parent: d.parent, Priority: prio,
				Protocol: unix.ETH_P_ALL,
			},
			Fd: prog.FD(), Name: name, DirectAction: true,
		}
		if err := nl.FilterAdd(f); err != nil {
			return fmt.Errorf("add %s filter: %w", d.name, err)
		}
		a.filters = append(a.filters, name)
	}
	return nil
}

func clsact(ifindex int) *netlink.Clsact {
	return &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT,
	}}
}

// freePrio picks the lowest unused filter priority, so our filter runs
// before foreign ones where it can (it passes every packet on).
func freePrio(nl *netlink.Handle, lnk netlink.Link, parent uint32) (uint16, error) {
	fs, err := listFilters(nl, lnk, parent)
	if err != nil {
		return 0, err
	}
	used := map[uint16]bool{}
	for _, f := range fs {
		used[f.Attrs().Priority] = true
	}
	for p := uint16(1); p < 0xffff; p++ {
		if !used[p] {
			return p, nil
		}
	}
	return 0, errors.New("no free filter priority")
}

func listFilters(nl *netlink.Handle, lnk netlink.Link, parent uint32) ([]netlink.Filter, error) {
	var err error
	for try := 0; try < 5; try++ {
		var fs []netlink.Filter
		fs, err = nl.FilterList(lnk, parent)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			if err != nil {
				return nil, fmt.Errorf("list filters: %w", err)
			}
			return fs, nil
		}
	}
	return nil, fmt.Errorf("list filters: %w", err)
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

func (a *attachment) detachLegacy() error {
	nl, err := netlink.NewHandleAt(a.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer nl.Close()
	lnk, err := nl.LinkByIndex(a.ifindex)
	if err != nil {
		if gone(err) {
			return nil
		}
		return fmt.Errorf("find interface %d: %w", a.ifindex, err)
	}
	mine := map[string]bool{}
	for _, f := range a.filters {
		mine[f] = true
	}
	_, err = removeFilters(nl, lnk, func(name string) bool { return mine[name] }, a.ownQdisc)
	a.filters = nil
	return err
}

// removeFilters deletes the bpf filters on lnk whose names match, then the
// clsact qdisc when delQdisc is set and no filter is left on it.
func removeFilters(nl *netlink.Handle, lnk netlink.Link, match func(string) bool, delQdisc bool) (int, error) {
	var errs []error
	removed, left := 0, 0
	for _, d := range directions {
		fs, err := listFilters(nl, lnk, d.parent)
		if err != nil {
			if gone(err) {
				return removed, nil
			}
			errs = append(errs, err)
			left++
			continue
		}
		for _, f := range fs {
			bf, ok := f.(*netlink.BpfFilter)
			if !ok || !match(bf.Name) {
				left++
				continue
			}
			if err := nl.FilterDel(f); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("delete filter %s: %w", bf.Name, err))
				left++
				continue
			}
			removed++
		}
	}
	if delQdisc && left == 0 {
		if err := nl.QdiscDel(clsact(lnk.Attrs().Index)); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete clsact qdisc: %w", err))
		}
	}
	return removed, errors.Join(errs...)
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

func openNetns(path string) (netns.NsHandle, error) {
	var (
		ns  netns.NsHandle
		err error
	)
	if path == "" {
		ns, err = netns.GetFromPath("/proc/thread-self/ns/net")
	} else {
		ns, err = netns.GetFromPath(path)
	}
	if err != nil {
		return -1, fmt.Errorf("open netns %q: %w", path, err)
	}
	return ns, nil
}

func handleInode(ns netns.NsHandle) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return 0, fmt.Errorf("stat netns: %w", err)
	}
	return uint32(st.Ino), nil
}

// inNetns runs fn on a locked thread switched to ns. If switching back
// fails the thread stays locked, so the runtime discards it with the
// goroutine instead of reusing a thread in the wrong netns.
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if orig.Equal(ns) {
			runtime.UnlockOSThread()
			errc <- fn()
			return
		}
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// SweepStale removes legacy filters left by hoptrace processes that are no
// longer running (a hoptrace killed before it could detach), in the
// caller's netns and the named and Docker netns it can see, and the clsact
// qdiscs such a process created once nothing else is on them. Filters of
// running hoptrace processes are left alone.
func SweepStale() (removed int, err error) {
	seen := map[uint32]bool{}
	paths := []string{""}
	for _, dir := range []string{"/run/netns", "/var/run/docker/netns"} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			paths = append(paths, dir+"/"+e.Name())
		}
	}
	var errs []error
	for _, p := range paths {
		ns, err := openNetns(p)
		if err != nil {
			continue // a netns that vanished meanwhile
		}
		// Docker leaves plain files behind in its netns directory once a
		// sandbox is gone: only a file on nsfs is a namespace.
		var fs unix.Statfs_t
		if unix.Fstatfs(int(ns), &fs) != nil || fs.Type != unix.NSFS_MAGIC {
			ns.Close()
			continue
		}
		ino, err := handleInode(ns)
		if err != nil || seen[ino] {
			ns.Close()
			continue
		}
		seen[ino] = true
		n, err := sweepNetns(ns)
		ns.Close()
		removed += n
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep netns %q: %w", p, err))
		}
	}
	return removed, errors.Join(errs...)
}

func sweepNetns(ns netns.NsHandle) (int, error) {
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, fmt.Errorf("open netlink: %w", err)
	}
	defer nl.Close()
	var links []netlink.Link
	for try := 0; ; try++ {
		links, err = nl.LinkList()
		if err == nil {
			break
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) || try == 4 {
			return 0, fmt.Errorf("list links: %w", err)
		}
	}
	var errs []error
	removed := 0
	for _, lnk := range links {
		ownQdisc := false
		stale := func(name string) bool {
			pid, start, q, ok := parseFilterName(name)
			if !ok || processAlive(pid, start) {
				return false
			}
			ownQdisc = ownQdisc || q
			return true
		}
		// First pass finds whether a stale filter says the qdisc was ours.
		n, err := removeFilters(nl, lnk, stale, false)
		removed += n
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ownQdisc {
			if _, err := removeFilters(nl, lnk, func(string) bool { return false }, true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// selfTag identifies this process in filter names: its pid and its start
// time (clock ticks since boot), so a recycled pid is not taken for us.
var selfTag = func() string {
	pid := os.Getpid()
	if st := processStart(pid); st != 0 {
		return fmt.Sprintf("%d.%d", pid, st)
	}
	return strconv.Itoa(pid)
}()

// parseFilterName splits "hoptrace-<pid>[.<start>]-<dir>[-q]".
func parseFilterName(name string) (pid int, start uint64, ownQdisc, ok bool) {
	rest, ok := strings.CutPrefix(name, FilterPrefix)
	if !ok {
		return 0, 0, false, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) < 2 {
		return 0, 0, false, false
	}
	pidStr, startStr, hasStart := strings.Cut(parts[0], ".")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, 0, false, false
	}
	if hasStart {
		if start, err = strconv.ParseUint(startStr, 10, 64); err != nil {
			return 0, 0, false, false
		}
	}
	return pid, start, len(parts) > 2 && parts[2] == "q", true
}

// processAlive reports whether the process that made a filter still runs:
// the pid exists and, when the name carries one, with the same start time.
func processAlive(pid int, start uint64) bool {
	err := unix.Kill(pid, 0)
	if err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	if start == 0 {
		return true
	}
	st := processStart(pid)
	return st == 0 || st == start
}

// processStart is field 22 of /proc/<pid>/stat, 0 when unreadable.
func processStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// fields after its closing parenthesis, which is followed by field 3.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
