package resolver

import (
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// Network is a Docker network as far as hoptrace cares.
type Network struct {
	ID     string
	Name   string
	Driver string
	// Bridge is the Linux bridge of a bridge network (docker0, br-<id[:12]>).
	Bridge string
	// Parent is the host interface a macvlan or ipvlan network sits on.
	Parent string
	// Nodes are an overlay network's peers: the Swarm nodes on it.
	Nodes []topology.Node
}

// dockerState is what the Docker source last told us.
type dockerState struct {
	Available  bool
	Err        string
	Containers []topology.Container // running containers
	Networks   []Network
}

// bridgeName is the Linux bridge Docker uses for a bridge network: the
// com.docker.network.bridge.name option, else br-<first 12 of the ID>.
func bridgeName(driver, id string, options map[string]string) string {
	if driver != "bridge" {
		return ""
	}
	if n := options["com.docker.network.bridge.name"]; n != "" {
		return n
	}
	if len(id) > 12 {
		id = id[:12]
	}
	return "br-" + id
}

// build assembles a snapshot from one scan and Docker's view. It is pure:
// everything it needs is in its arguments. It runs in phases, each adding
// to the snapshot what the later ones look up.
func build(sc scanResult, d dockerState, now time.Time) *topology.Snapshot {
	b := &builder{
		sc: sc,
		snap: &topology.Snapshot{
			Time:            now,
			HostNetnsIno:    sc.Host.Ino,
			DockerAvailable: d.Available,
			DockerError:     d.Err,
		},
		netByBridge:   map[string]string{},
		netByName:     map[string]Network{},
		bridgeByNetID: map[string]string{},
		owner:         map[uint32]*topology.Container{},
		byNsid:        map[int]uint32{},
		others:        map[uint32]*nsInfo{},
		peerOf:        map[topology.Key]topology.Key{},
		portEP:        map[topology.Key]topology.Endpoint{},
		overlayNs:     map[uint32]bool{},
	}
	b.networks(d.Networks)
	b.containers(d.Containers)
	b.namespaces()
	b.hostInterfaces()
	b.overlays()
	b.namespaceInterfaces()
	b.parents()
	b.sort()
	return b.snap
}

// builder holds a snapshot in the making and the indexes between phases.
type builder struct {
	sc   scanResult
	snap *topology.Snapshot

	netByBridge   map[string]string // bridge -> network name
	netByName     map[string]Network
	bridgeByNetID map[string]string // network ID -> bridge
	owner         map[uint32]*topology.Container
	byNsid        map[int]uint32 // nsid (seen from the host) -> namespace
	others        map[uint32]*nsInfo
	peerOf        map[topology.Key]topology.Key      // container side -> host veth
	portEP        map[topology.Key]topology.Endpoint // host interfaces and overlay bridge ports
	overlayNs     map[uint32]bool                    // overlay sandboxes
}

// networks indexes Docker's bridge networks by bridge and by ID.
func (b *builder) networks(nets []Network) {
	for _, n := range nets {
		b.netByName[n.Name] = n
		for _, nd := range n.Nodes {
			if !slices.ContainsFunc(b.snap.Nodes, func(o topology.Node) bool { return o.Addr == nd.Addr }) {
				b.snap.Nodes = append(b.snap.Nodes, nd)
			}
		}
		if n.Bridge != "" {
			b.netByBridge[n.Bridge] = n.Name
			b.bridgeByNetID[n.ID] = n.Bridge
		}
	}
}

// containers places the running containers in their namespaces, with
// their bridges filled in; one owner per namespace ("container:<id>" mode
// shares one).
func (b *builder) containers(cs []topology.Container) {
	snap := b.snap
	for _, c := range cs {
		ino, ok := b.sc.ContainerIno[c.ID]
		if !ok {
			continue // its namespace is gone: it stopped
		}
		c.NetnsIno = ino
		c.Networks = append([]topology.ContainerNetwork(nil), c.Networks...)
		for i := range c.Networks {
			if br := b.bridgeByNetID[c.Networks[i].NetworkID]; br != "" {
				c.Networks[i].Bridge = br
			}
		}
		snap.Containers = append(snap.Containers, c)
	}
	sort.Slice(snap.Containers, func(i, j int) bool { return snap.Containers[i].Name < snap.Containers[j].Name })
	for i := range snap.Containers {
		c := &snap.Containers[i]
		if c.NetnsIno == b.sc.Host.Ino {
			continue // --network host: the host's interfaces are not its own
		}
		if prev, ok := b.owner[c.NetnsIno]; !ok || strings.HasPrefix(prev.NetworkMode, "container:") {
			b.owner[c.NetnsIno] = c
		}
	}
}

// namespaces lists the namespaces, named after their container where one
// owns them, and indexes them by the nsid the host's veths refer to.
func (b *builder) namespaces() {
	b.snap.Namespaces = append(b.snap.Namespaces, b.sc.Host.Netns)
	for i := range b.sc.Others {
		ns := &b.sc.Others[i]
		b.others[ns.Ino] = ns
		if ns.Nsid >= 0 {
			b.byNsid[ns.Nsid] = ns.Ino
		}
		n := ns.Netns
		if c, ok := b.owner[n.Ino]; ok {
			n.Source, n.Name, n.ContainerID = topology.NetnsContainer, c.Name, c.ID
			if n.PID == 0 {
				n.PID = c.PID
			}
		}
		b.snap.Namespaces = append(b.snap.Namespaces, n)
	}
}

// hostInterfaces adds the bridges, their ports (with the container or
// namespace at each veth's other end) and every other host interface.
func (b *builder) hostInterfaces() {
	snap, host := b.snap, &b.sc.Host
	bridges := map[uint32]*topology.Bridge{}
	for _, l := range host.Links {
		if l.Type == "bridge" {
			snap.Bridges = append(snap.Bridges, topology.Bridge{Name: l.Name, Ifindex: l.Index, Network: b.netByBridge[l.Name]})
		}
	}
	for i := range snap.Bridges {
		bridges[snap.Bridges[i].Ifindex] = &snap.Bridges[i]
	}
	for _, l := range host.Links {
		e := topology.Endpoint{NetnsIno: host.Ino, Ifindex: l.Index, Name: l.Name, MAC: l.MAC, Addrs: l.Addrs, Role: topology.RoleHost}
		switch {
		case l.Type == "bridge":
			e.Role, e.Bridge, e.Network = topology.RoleBridge, l.Name, b.netByBridge[l.Name]
		case bridges[l.Master] != nil:
			br := bridges[l.Master]
			br.Ports = append(br.Ports, l.Index)
			e.Bridge, e.Network = br.Name, br.Network
			if l.Type == "veth" {
				e.Role = topology.RoleHostVeth
			}
		}
		if l.Type == "veth" && l.Peer != 0 {
			if pino, ok := resolvePeer(host.Ino, l, b.byNsid, b.sc.Others); ok {
				e.PeerNetnsIno, e.PeerIfindex = pino, l.Peer
				b.peerOf[topology.Key{NetnsIno: pino, Ifindex: l.Peer}] = e.Key()
				if c := b.owner[pino]; c != nil {
					e.Container = c
				} else if ns := b.others[pino]; ns != nil {
					e.NetnsName = ns.Name
				}
			}
		}
		snap.Endpoints = append(snap.Endpoints, e)
	}
	for _, e := range snap.Endpoints {
		b.portEP[e.Key()] = e
	}
}

// overlays adds each overlay network's sandbox, which Docker names
// /var/run/docker/netns/<n>-<first 10 of the network ID>: a bridge (br0)
// whose ports are vxlan0 (to the other nodes) and one veth per container of
// this host on the network. The bridge, its ports and what is at their
// other ends are added like a host bridge's; the namespace is marked as the
// overlay's, and Swarm's routing-mesh sandbox (ingress_sbox) as such.
func (b *builder) overlays() {
	byID := map[string]Network{} // by the first 10 of the ID
	for _, n := range b.netByName {
		if n.Driver == topology.DriverOverlay && len(n.ID) >= 10 {
			byID[n.ID[:10]] = n
		}
	}
	source := map[uint32]string{}
	for _, ns := range b.sc.Others {
		base := filepath.Base(ns.Path)
		if base == "ingress_sbox" && ns.Source == topology.NetnsSandbox {
			source[ns.Ino] = topology.NetnsIngress
			continue
		}
		_, id, ok := strings.Cut(base, "-")
		nw, known := byID[id]
		if !ok || !known {
			continue
		}
		b.overlayNs[ns.Ino], source[ns.Ino] = true, topology.NetnsOverlay
		b.overlayInterfaces(ns, nw.Name)
	}
	for i := range b.snap.Namespaces {
		n := &b.snap.Namespaces[i]
		if src, ok := source[n.Ino]; ok {
			n.Source = src
		}
	}
}

// overlayInterfaces adds the bridge and ports of overlay network nw's
// sandbox ns.
func (b *builder) overlayInterfaces(ns nsInfo, nw string) {
	snap := b.snap
	first := len(snap.Bridges)
	for _, l := range ns.Links {
		if l.Type == "bridge" {
			snap.Bridges = append(snap.Bridges, topology.Bridge{Name: l.Name, Ifindex: l.Index, Network: nw, NetnsIno: ns.Ino, Driver: topology.DriverOverlay})
		}
	}
	bridges := map[uint32]*topology.Bridge{}
	for i := first; i < len(snap.Bridges); i++ {
		bridges[snap.Bridges[i].Ifindex] = &snap.Bridges[i]
	}
	for _, l := range ns.Links {
		e := topology.Endpoint{NetnsIno: ns.Ino, Ifindex: l.Index, Name: l.Name, MAC: l.MAC, Addrs: l.Addrs,
			Role: topology.RoleHost, Network: nw, Driver: topology.DriverOverlay}
		if l.Tunnel != nil {
			t := *l.Tunnel
			t.Key, t.Network = e.Key(), nw
			snap.Tunnels = append(snap.Tunnels, t)
		}
		switch {
		case l.Type == "bridge":
			e.Role, e.Bridge = topology.RoleBridge, l.Name
		case bridges[l.Master] != nil:
			br := bridges[l.Master]
			br.Ports = append(br.Ports, l.Index)
			e.Bridge = br.Name
			if l.Type == "veth" {
				e.Role = topology.RoleHostVeth
			}
		}
		if l.Type == "veth" && l.Peer != 0 && l.PeerNsid >= 0 {
			// The nsid is this sandbox's name for the peer's namespace, not
			// the host's: the pair pointing at each other places it.
			if pino, ok := pairedNs(ns.Ino, l, b.sc.Others); ok {
				e.PeerNetnsIno, e.PeerIfindex = pino, l.Peer
				b.peerOf[topology.Key{NetnsIno: pino, Ifindex: l.Peer}] = e.Key()
				if c := b.owner[pino]; c != nil {
					e.Container = c
				} else if o := b.others[pino]; o != nil {
					e.NetnsName = o.Name
				}
			}
		}
		snap.Endpoints = append(snap.Endpoints, e)
		b.portEP[e.Key()] = e
	}
}

// namespaceInterfaces adds the interfaces inside the other namespaces,
// each with its peer on the host and the bridge behind it.
func (b *builder) namespaceInterfaces() {
	for _, ns := range b.sc.Others {
		if b.overlayNs[ns.Ino] {
			continue
		}
		c := b.owner[ns.Ino]
		for _, l := range ns.Links {
			e := topology.Endpoint{NetnsIno: ns.Ino, Ifindex: l.Index, Name: l.Name, MAC: l.MAC, Addrs: l.Addrs, Role: topology.RoleNetns, NetnsName: ns.Name}
			if c != nil {
				e.Role, e.Container, e.NetnsName = topology.RoleContainer, c, ""
			}
			if hk, ok := b.peerOf[e.Key()]; ok {
				he := b.portEP[hk]
				e.PeerNetnsIno, e.PeerIfindex = hk.NetnsIno, hk.Ifindex
				e.Bridge, e.Network = he.Bridge, he.Network
			} else if l.Type == "veth" && l.Peer != 0 && l.PeerNsid < 0 {
				e.PeerNetnsIno, e.PeerIfindex = ns.Ino, l.Peer // both ends here
			}
			if c != nil && e.Network == "" {
				// Not on a bridge we see (macvlan, ipvlan): Docker knows the
				// interface by its MAC, or (ipvlan shares the parent's MAC)
				// by its address.
				for _, n := range c.Networks {
					if (n.MAC != "" && strings.EqualFold(n.MAC, e.MAC)) || holdsAddr(e.Addrs, n.IP) {
						e.Network, e.Bridge = n.Network, n.Bridge
						if nw, ok := b.netByName[n.Network]; ok && nw.Parent != "" {
							e.Driver, e.Parent = nw.Driver, nw.Parent
						}
						break
					}
				}
			}
			b.snap.Endpoints = append(b.snap.Endpoints, e)
		}
	}
}

// parents marks the host interfaces macvlan and ipvlan networks sit on
// with their driver (and network, when one network uses it).
func (b *builder) parents() {
	for _, n := range b.netByName {
		if n.Parent == "" {
			continue
		}
		for i := range b.snap.Endpoints {
			e := &b.snap.Endpoints[i]
			if e.NetnsIno == b.sc.Host.Ino && e.Name == n.Parent && e.Role == topology.RoleHost {
				e.Driver = n.Driver
				if e.Network == "" {
					e.Network = n.Name
				}
			}
		}
	}
}

// sort puts ports, endpoints (the host first, then namespaces by inode)
// and namespaces in a stable order, so equal topologies compare equal.
func (b *builder) sort() {
	snap, host := b.snap, b.sc.Host.Ino
	slices.SortFunc(snap.Nodes, func(x, y topology.Node) int { return x.Addr.Compare(y.Addr) })
	for i := range snap.Bridges {
		p := snap.Bridges[i].Ports
		sort.Slice(p, func(a, b int) bool { return p[a] < p[b] })
	}
	sort.Slice(snap.Endpoints, func(i, j int) bool {
		a, b := snap.Endpoints[i], snap.Endpoints[j]
		if a.NetnsIno != b.NetnsIno {
			return a.NetnsIno == host || (b.NetnsIno != host && a.NetnsIno < b.NetnsIno)
		}
		return a.Ifindex < b.Ifindex
	})
	sort.Slice(snap.Namespaces[1:], func(i, j int) bool { return snap.Namespaces[i+1].Ino < snap.Namespaces[j+1].Ino })
}

// holdsAddr reports whether ip is one of the interface's addresses.
func holdsAddr(addrs []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	for _, a := range addrs {
		if a.Addr() == ip {
			return true
		}
	}
	return false
}

// resolvePeer finds the namespace of a host veth's peer: by the nsid the
// kernel reports (IFLA_LINK_NETNSID), else by a namespace holding a veth
// whose peer is this one (the pair points at each other).
func resolvePeer(hostIno uint32, l linkInfo, byNsid map[int]uint32, others []nsInfo) (uint32, bool) {
	if l.PeerNsid < 0 {
		return hostIno, true
	}
	if ino, ok := byNsid[l.PeerNsid]; ok {
		return ino, true
	}
	return pairedNs(hostIno, l, others)
}

// pairedNs finds the namespace holding the other end of veth l, which is
// in namespace self and points to another: the one veth elsewhere whose
// peer is l, as l's is it.
func pairedNs(self uint32, l linkInfo, others []nsInfo) (uint32, bool) {
	var found uint32
	n := 0
	for _, ns := range others {
		if ns.Ino == self {
			continue
		}
		for _, o := range ns.Links {
			if o.Type == "veth" && o.Index == l.Peer && o.Peer == l.Index && o.PeerNsid >= 0 {
				found = ns.Ino
				n++
			}
		}
	}
	return found, n == 1
}
