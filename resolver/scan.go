package resolver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/nsio"
)

// ErrNotPermitted is returned when namespaces or netlink cannot be read for
// lack of privileges (hoptrace links and trace need root).
var ErrNotPermitted = errors.New("not permitted: run as root, or with CAP_SYS_ADMIN (see the README's Privileges)")

// linkInfo is what the scan keeps of one interface.
type linkInfo struct {
	Name   string
	Index  uint32
	Type   string // netlink type: veth, bridge, device, ...
	MAC    string
	Addrs  []netip.Prefix
	Master uint32 // bridge ifindex, 0 if none
	// Peer is IFLA_LINK: for a veth, the peer's ifindex in the namespace
	// PeerNsid names (-1: the same namespace).
	Peer     uint32
	PeerNsid int
	// Tunnel is set for a VXLAN device: its VNI, port and the remote
	// addresses of its forwarding table (the other nodes of an overlay);
	// the scan adds the host interfaces the routes to them leave by.
	Tunnel *topology.Tunnel
}

// nsInfo is one scanned network namespace.
type nsInfo struct {
	topology.Netns
	Links []linkInfo
}

// nsRef is a namespace to scan: a path to open and how to name it.
type nsRef struct {
	Path, Name, Source string
	PID                int
	ContainerID        string
}

// scanner reads interfaces from the host namespace and every other network
// namespace it can find, without moving any thread it does not own: netlink
// handles are opened inside a namespace by vishvananda/netlink on a locked
// thread that switches back at once.
type scanner struct {
	hostIno   uint32
	host      *netlink.Handle
	namedDirs []string // /run/netns (ip netns)
	dockerDir string   // /var/run/docker/netns (Docker sandboxes)
	procDir   string
}

func newScanner() (*scanner, error) {
	// Entering a namespace (even to open a netlink socket there) needs
	// CAP_SYS_ADMIN: say so up front rather than show half a topology.
	if ok, err := hasCapability(unix.CAP_SYS_ADMIN); err == nil && !ok {
		return nil, fmt.Errorf("read network namespaces: %w", ErrNotPermitted)
	}
	ns, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open host netns: %w", permErr(err))
	}
	defer ns.Close()
	ino, err := nsio.FdIno(int(ns))
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", permErr(err))
	}
	return &scanner{
		hostIno:   ino,
		host:      h,
		namedDirs: []string{"/run/netns", "/var/run/netns"},
		dockerDir: "/var/run/docker/netns",
		procDir:   "/proc",
	}, nil
}

func (s *scanner) close() { s.host.Close() }

// hasCapability reads the effective capability set of this process.
func hasCapability(c int) (bool, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("parse CapEff: %w", err)
			}
			return caps&(1<<uint(c)) != 0, nil
		}
	}
	return false, errors.New("no CapEff in /proc/self/status")
}

func permErr(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %w", ErrNotPermitted, err)
	}
	return err
}

// scanResult is one full scan.
type scanResult struct {
	Host   nsInfo
	Others []nsInfo
	// ContainerIno maps a container ID to its namespace inode; containers
	// whose namespace is gone are absent.
	ContainerIno map[string]uint32
	// Denied is set when some namespace could not be opened for lack of
	// privileges.
	Denied error
}

// scan reads every namespace. containers are Docker's running containers
// (their namespaces are named after them).
func (s *scanner) scan(containers []topology.Container) (scanResult, error) {
	res := scanResult{ContainerIno: map[string]uint32{}}
	hostLinks, err := s.links(s.host)
	if err != nil {
		return res, fmt.Errorf("list host links: %w", permErr(err))
	}
	res.Host = nsInfo{Netns: topology.Netns{Ino: s.hostIno, Source: topology.NetnsHost, Nsid: -1}, Links: hostLinks}

	refs := map[uint32]nsRef{}
	add := func(ino uint32, r nsRef) {
		if ino == 0 || ino == s.hostIno {
			return
		}
		if _, ok := refs[ino]; !ok {
			refs[ino] = r
		}
	}
	// Containers first: their names win over anything else.
	for _, c := range containers {
		var ino uint32
		var path string
		if c.PID > 0 {
			path = filepath.Join(s.procDir, strconv.Itoa(c.PID), "ns", "net")
			ino, err = nsio.PathIno(path)
		}
		if ino == 0 && c.SandboxKey != "" {
			path = c.SandboxKey
			ino, err = nsio.PathIno(path)
		}
		if ino == 0 {
			if err != nil && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) {
				res.Denied = permErr(err)
			}
			continue // gone
		}
		res.ContainerIno[c.ID] = ino
		add(ino, nsRef{Path: path, Name: c.Name, Source: topology.NetnsContainer, PID: c.PID, ContainerID: c.ID})
	}
	for _, dir := range s.namedDirs {
		for _, e := range readDir(dir) {
			p := filepath.Join(dir, e)
			if ino, err := nsio.PathIno(p); err == nil {
				add(ino, nsRef{Path: p, Name: e, Source: topology.NetnsNamed})
			}
		}
	}
	procs := s.procNamespaces()
	for _, e := range readDir(s.dockerDir) {
		p := filepath.Join(s.dockerDir, e)
		if ino, err := nsio.PathIno(p); err == nil {
			r := nsRef{Path: p, Name: e, Source: topology.NetnsSandbox}
			if pr, ok := procs[ino]; ok {
				// A process name tells more than a sandbox ID.
				r.Name, r.PID = pr.Name, pr.PID
			}
			add(ino, r)
		}
	}
	for ino, r := range procs {
		add(ino, r)
	}

	inos := make([]uint32, 0, len(refs))
	for ino := range refs {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	for _, ino := range inos {
		ns, err := s.scanNetns(ino, refs[ino])
		if err != nil {
			if errors.Is(err, ErrNotPermitted) {
				res.Denied = err
			}
			continue // vanished meanwhile: not an error
		}
		res.Others = append(res.Others, ns)
	}
	s.underlays(res.Others)
	return res, nil
}

func readDir(dir string) []string {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range es {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// procNamespaces finds namespaces held by processes: the lowest PID in each
// names it. readlink is cheap and needs no open.
func (s *scanner) procNamespaces() map[uint32]nsRef {
	out := map[uint32]nsRef{}
	es, err := os.ReadDir(s.procDir)
	if err != nil {
		return out
	}
	for _, e := range es {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p := filepath.Join(s.procDir, e.Name(), "ns", "net")
		l, err := os.Readlink(p)
		if err != nil {
			continue
		}
		ino, ok := parseNsLink(l)
		if !ok || ino == s.hostIno {
			continue
		}
		if r, seen := out[ino]; seen && r.PID < pid {
			continue
		}
		out[ino] = nsRef{Path: p, Source: topology.NetnsProcess, PID: pid}
	}
	for ino, r := range out {
		comm, _ := os.ReadFile(filepath.Join(s.procDir, strconv.Itoa(r.PID), "comm"))
		// "sleep[4242]": a process name alone is rarely unique.
		r.Name = fmt.Sprintf("%s[%d]", strings.TrimSpace(string(comm)), r.PID)
		out[ino] = r
	}
	return out
}

// parseNsLink parses "net:[4026531840]".
func parseNsLink(l string) (uint32, bool) {
	s, ok := strings.CutPrefix(l, "net:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

func (s *scanner) scanNetns(ino uint32, r nsRef) (nsInfo, error) {
	ns, err := netns.GetFromPath(r.Path)
	if err != nil {
		return nsInfo{}, fmt.Errorf("open netns %s: %w", r.Path, permErr(err))
	}
	defer ns.Close()
	// The path may now name another namespace (PID reuse): trust the fd.
	if got, err := nsio.FdIno(int(ns)); err != nil || got != ino {
		return nsInfo{}, fmt.Errorf("netns %s changed", r.Path)
	}
	nsid, err := s.host.GetNetNsIdByFd(int(ns))
	if err != nil {
		nsid = -1
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nsInfo{}, fmt.Errorf("open netlink in %s: %w", r.Path, permErr(err))
	}
	defer h.Close()
	links, err := s.links(h)
	if err != nil {
		return nsInfo{}, fmt.Errorf("list links in %s: %w", r.Path, err)
	}
	return nsInfo{
		Netns: topology.Netns{Ino: ino, Name: r.Name, Source: r.Source, Path: r.Path, PID: r.PID, Nsid: nsid, ContainerID: r.ContainerID},
		Links: links,
	}, nil
}

func (s *scanner) links(h *netlink.Handle) ([]linkInfo, error) {
	ls, err := nsio.RetryDump(h.LinkList)
	if err != nil {
		return nil, err
	}
	addrs, err := nsio.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	byIndex := map[int][]netip.Prefix{}
	for _, a := range addrs {
		if p, ok := ipNetPrefix(a.IPNet); ok {
			byIndex[a.LinkIndex] = append(byIndex[a.LinkIndex], p)
		}
	}
	out := make([]linkInfo, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		li := linkInfo{
			Name:     a.Name,
			Index:    uint32(a.Index),
			Type:     l.Type(),
			Addrs:    byIndex[a.Index],
			Master:   uint32(a.MasterIndex),
			PeerNsid: -1,
		}
		if len(a.HardwareAddr) > 0 {
			li.MAC = a.HardwareAddr.String()
		}
		if li.Type == "veth" {
			li.Peer = uint32(a.ParentIndex)
			li.PeerNsid = a.NetNsID
		}
		if vx, ok := l.(*netlink.Vxlan); ok {
			li.Tunnel = &topology.Tunnel{VNI: uint32(vx.VxlanId), Port: uint16(vx.Port), Remotes: fdbRemotes(h, a.Index)}
		}
		out = append(out, li)
	}
	return out, nil
}

// fdbRemotes are the remote addresses in a VXLAN device's forwarding
// table: where Docker's overlay sends each other node's containers.
func fdbRemotes(h *netlink.Handle, index int) []netip.Addr {
	ns, err := nsio.RetryDump(func() ([]netlink.Neigh, error) { return h.NeighList(index, unix.AF_BRIDGE) })
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, n := range ns {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || a.Unmap().IsUnspecified() {
			continue
		}
		if a = a.Unmap(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// underlays fills in, for each VXLAN device with remotes, the host
// interfaces the routes to them leave by: Docker creates an overlay's
// vxlan0 in the host namespace, so its packets are routed there.
func (s *scanner) underlays(nss []nsInfo) {
	for _, ns := range nss {
		for _, l := range ns.Links {
			if l.Tunnel == nil {
				continue
			}
			for _, r := range l.Tunnel.Remotes {
				rs, err := s.host.RouteGet(r.AsSlice())
				if err != nil || len(rs) == 0 || rs[0].LinkIndex <= 0 || rs[0].Type == unix.RTN_LOCAL {
					continue
				}
				if i := uint32(rs[0].LinkIndex); !slices.Contains(l.Tunnel.Underlays, i) {
					l.Tunnel.Underlays = append(l.Tunnel.Underlays, i)
				}
			}
			slices.Sort(l.Tunnel.Underlays)
		}
	}
}

func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
