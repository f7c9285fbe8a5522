package resolver

import (
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
// everything it needs is in its arguments.
func build(sc scanResult, d dockerState, now time.Time) *topology.Snapshot {
	host := sc.Host
	snap := &topology.Snapshot{
		Time:            now,
		HostNetnsIno:    host.Ino,
		DockerAvailable: d.Available,
		DockerError:     d.Err,
	}

	netByBridge := map[string]string{}
	bridgeByNetID := map[string]string{}
	for _, n := range d.Networks {
		if n.Bridge != "" {
			netByBridge[n.Bridge] = n.Name
			bridgeByNetID[n.ID] = n.Bridge
		}
	}

	// Containers, with their namespace and bridges filled in; one owner
	// per namespace ("container:<id>" mode shares one).
	owner := map[uint32]*topology.Container{}
	for _, c := range d.Containers {
		ino, ok := sc.ContainerIno[c.ID]
		if !ok {
			continue // its namespace is gone: it stopped
		}
		c.NetnsIno = ino
		c.Networks = append([]topology.ContainerNetwork(nil), c.Networks...)
		for i := range c.Networks {
			if b := bridgeByNetID[c.Networks[i].NetworkID]; b != "" {
				c.Networks[i].Bridge = b
			}
		}
		snap.Containers = append(snap.Containers, c)
	}
	sort.Slice(snap.Containers, func(i, j int) bool { return snap.Containers[i].Name < snap.Containers[j].Name })
	for i := range snap.Containers {
		c := &snap.Containers[i]
		if c.NetnsIno == host.Ino {
			continue // --network host: the host's interfaces are not its own
		}
		if prev, ok := owner[c.NetnsIno]; !ok || strings.HasPrefix(prev.NetworkMode, "container:") {
			owner[c.NetnsIno] = c
		}
	}

	// Namespaces, and the nsid -> namespace map the host's veths refer to.
	snap.Namespaces = append(snap.Namespaces, host.Netns)
	byNsid := map[int]uint32{}
	others := map[uint32]*nsInfo{}
	for i := range sc.Others {
		ns := &sc.Others[i]
		others[ns.Ino] = ns
		if ns.Nsid >= 0 {
			byNsid[ns.Nsid] = ns.Ino
		}
		n := ns.Netns
		if c, ok := owner[n.Ino]; ok {
			n.Source, n.Name, n.ContainerID = topology.NetnsContainer, c.Name, c.ID
			if n.PID == 0 {
				n.PID = c.PID
			}
		}
		snap.Namespaces = append(snap.Namespaces, n)
	}

	// Host interfaces: bridges, their ports, everything else.
	hostByIndex := map[uint32]*linkInfo{}
	for i := range host.Links {
		hostByIndex[host.Links[i].Index] = &host.Links[i]
	}
	bridges := map[uint32]*topology.Bridge{}
	for _, l := range host.Links {
		if l.Type == "bridge" {
			snap.Bridges = append(snap.Bridges, topology.Bridge{Name: l.Name, Ifindex: l.Index, Network: netByBridge[l.Name]})
		}
	}
	for i := range snap.Bridges {
		bridges[snap.Bridges[i].Ifindex] = &snap.Bridges[i]
	}

	// peerOf[(ino, ifindex)] is the host veth on the other end.
	peerOf := map[topology.Key]topology.Key{}
	for _, l := range host.Links {
		e := topology.Endpoint{NetnsIno: host.Ino, Ifindex: l.Index, Name: l.Name, MAC: l.MAC, Addrs: l.Addrs, Role: topology.RoleHost}
		switch {
		case l.Type == "bridge":
			e.Role, e.Bridge, e.Network = topology.RoleBridge, l.Name, netByBridge[l.Name]
		case bridges[l.Master] != nil:
			br := bridges[l.Master]
			br.Ports = append(br.Ports, l.Index)
			e.Bridge, e.Network = br.Name, br.Network
			if l.Type == "veth" {
				e.Role = topology.RoleHostVeth
			}
		}
		if l.Type == "veth" && l.Peer != 0 {
			if pino, ok := resolvePeer(host.Ino, l, byNsid, sc.Others); ok {
				e.PeerNetnsIno, e.PeerIfindex = pino, l.Peer
				peerOf[topology.Key{NetnsIno: pino, Ifindex: l.Peer}] = e.Key()
				if c := owner[pino]; c != nil {
					e.Container = c
				} else if ns := others[pino]; ns != nil {
					e.NetnsName = ns.Name
				}
			}
		}
		snap.Endpoints = append(snap.Endpoints, e)
	}
	hostEP := map[uint32]topology.Endpoint{}
	for _, e := range snap.Endpoints {
		hostEP[e.Ifindex] = e
	}

	// Interfaces in the other namespaces.
	for _, ns := range sc.Others {
		c := owner[ns.Ino]
		for _, l := range ns.Links {
			e := topology.Endpoint{NetnsIno: ns.Ino, Ifindex: l.Index, Name: l.Name, MAC: l.MAC, Addrs: l.Addrs, Role: topology.RoleNetns, NetnsName: ns.Name}
			if c != nil {
				e.Role, e.Container, e.NetnsName = topology.RoleContainer, c, ""
			}
			if hk, ok := peerOf[e.Key()]; ok {
				he := hostEP[hk.Ifindex]
				e.PeerNetnsIno, e.PeerIfindex = hk.NetnsIno, hk.Ifindex
				e.Bridge, e.Network = he.Bridge, he.Network
			} else if l.Type == "veth" && l.Peer != 0 && l.PeerNsid < 0 {
				e.PeerNetnsIno, e.PeerIfindex = ns.Ino, l.Peer // both ends here
			}
			if c != nil && e.Network == "" && e.MAC != "" {
				// Not on a bridge we see (macvlan, ...): Docker knows by MAC.
				for _, n := range c.Networks {
					if strings.EqualFold(n.MAC, e.MAC) {
						e.Network, e.Bridge = n.Network, n.Bridge
					}
				}
			}
			snap.Endpoints = append(snap.Endpoints, e)
		}
	}
	for i := range snap.Bridges {
		p := snap.Bridges[i].Ports
		sort.Slice(p, func(a, b int) bool { return p[a] < p[b] })
	}
	sort.Slice(snap.Endpoints, func(i, j int) bool {
		a, b := snap.Endpoints[i], snap.Endpoints[j]
		if a.NetnsIno != b.NetnsIno {
			// The host first, then namespaces by inode.
			return a.NetnsIno == host.Ino || (b.NetnsIno != host.Ino && a.NetnsIno < b.NetnsIno)
		}
		return a.Ifindex < b.Ifindex
	})
	sort.Slice(snap.Namespaces[1:], func(i, j int) bool { return snap.Namespaces[i+1].Ino < snap.Namespaces[j+1].Ino })
	return snap
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
	var found uint32
	n := 0
	for _, ns := range others {
		for _, o := range ns.Links {
			if o.Type == "veth" && o.Index == l.Peer && o.Peer == l.Index && o.PeerNsid >= 0 {
				found = ns.Ino
				n++
			}
		}
	}
	return found, n == 1
}
