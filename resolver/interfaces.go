package resolver

import (
	"slices"
	"sort"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// Interface is one interface the tracer should attach to.
type Interface struct {
	Key  topology.Key
	Name string
	Role topology.Role // RoleBridge, RoleHostVeth, or RoleContainer/RoleNetns (container side)
	// NetnsPath opens the interface's namespace (netlink.NewHandleAt,
	// or a locked thread's setns); empty for the host namespace.
	NetnsPath string
	Bridge    string
	// Container is the container behind the interface, if any (the one
	// inside for a container side, the one at the other end for a port).
	ContainerID   string
	ContainerName string
	// TunnelPort marks an overlay's underlay: a host interface where
	// only VXLAN packets to and from this UDP port are traced.
	TunnelPort uint16
}

// Selection chooses the interfaces to trace.
type Selection struct {
	// Limit makes Bridges and Networks the only bridges and macvlan/ipvlan
	// networks traced (a --container selection); without it, all are.
	Limit bool
	// Bridges are the bridges traced (by name) when Limit is set.
	Bridges []string
	// ContainerSide adds the far end of each bridge port: eth0 inside each
	// container (or namespace), so a journey starts where it is sent.
	ContainerSide bool
	// Networks are the macvlan, ipvlan and overlay networks traced (by
	// name) when Limit is set.
	Networks []string
}

// InterfacesOf lists the interfaces to trace in a snapshot: each selected
// bridge (the host's, and each overlay network's in its sandbox), each veth
// port of it (and an overlay's vxlan0), and with ContainerSide the peer of
// each port; the containers' interfaces on macvlan and ipvlan networks and
// the host interfaces under them. Sorted by namespace, then ifindex.
func InterfacesOf(s *topology.Snapshot, sel Selection) []Interface {
	want := map[string]bool{}
	for _, b := range sel.Bridges {
		want[b] = true
	}
	ix := topology.NewIndex(s)
	var out []Interface
	for _, e := range s.Endpoints {
		if e.Bridge == "" || !selected(s, sel, want, e) {
			continue
		}
		out = append(out, ifaceOf(s, e))
		if sel.ContainerSide && e.Role == topology.RoleHostVeth && e.PeerNetnsIno != s.HostNetnsIno {
			if p, ok := ix.Peer(e.Key()); ok {
				out = append(out, ifaceOf(s, p))
			}
		}
	}
	out = append(out, parented(s, sel)...)
	for _, u := range underlays(s, sel) {
		// Traced whole already (a macvlan parent): it sees the VXLAN
		// packets too, as such.
		if !slices.ContainsFunc(out, func(i Interface) bool { return i.Key == u.Key }) {
			out = append(out, u)
		}
	}
	sortInterfaces(out)
	return out
}

// underlays lists the host interfaces the selected overlays' VXLAN
// packets cross, to trace those packets on the wire.
func underlays(s *topology.Snapshot, sel Selection) []Interface {
	ports := map[uint32]uint16{}
	for _, t := range s.Tunnels {
		if sel.Limit && !slices.Contains(sel.Networks, t.Network) {
			continue
		}
		for _, i := range t.Underlays {
			ports[i] = t.Port
		}
	}
	var out []Interface
	for _, e := range s.Endpoints {
		if p, ok := ports[e.Ifindex]; ok && e.NetnsIno == s.HostNetnsIno {
			i := ifaceOf(s, e)
			i.TunnelPort = p
			out = append(out, i)
		}
	}
	return out
}

// selected tells whether a bridge or bridge port is traced: a host bridge
// and its veth ports by the bridge's name; an overlay's bridge and every
// port of it (its veths and vxlan0) by the overlay network's name.
func selected(s *topology.Snapshot, sel Selection, bridges map[string]bool, e topology.Endpoint) bool {
	if e.Driver == topology.DriverOverlay && e.NetnsIno != s.HostNetnsIno {
		return !sel.Limit || slices.Contains(sel.Networks, e.Network)
	}
	if e.NetnsIno != s.HostNetnsIno || sel.Limit && !bridges[e.Bridge] {
		return false
	}
	return e.Role == topology.RoleBridge || e.Role == topology.RoleHostVeth
}

// parented lists the container interfaces of macvlan and ipvlan networks
// (there is no veth: the container's own interface is the only place to
// see its packets) and the host interfaces they sit on, sorted.
func parented(s *topology.Snapshot, sel Selection) []Interface {
	var out []Interface
	parents := map[string]bool{}
	for _, e := range s.Endpoints {
		if e.Parent == "" || e.NetnsIno == s.HostNetnsIno {
			continue
		}
		if sel.Limit && !slices.Contains(sel.Networks, e.Network) {
			continue
		}
		out = append(out, ifaceOf(s, e))
		parents[e.Parent] = true
	}
	for _, e := range s.Endpoints {
		if e.NetnsIno == s.HostNetnsIno && parents[e.Name] {
			out = append(out, ifaceOf(s, e))
		}
	}
	return out
}

func ifaceOf(s *topology.Snapshot, e topology.Endpoint) Interface {
	i := Interface{Key: e.Key(), Name: e.Name, Role: e.Role, Bridge: e.Bridge}
	if e.NetnsIno != s.HostNetnsIno {
		if ns, ok := s.Netns(e.NetnsIno); ok {
			i.NetnsPath = ns.Path
		}
	}
	if e.Container != nil {
		i.ContainerID, i.ContainerName = e.Container.ID, e.Container.Name
	}
	return i
}

func sortInterfaces(is []Interface) {
	sort.Slice(is, func(a, b int) bool {
		if is[a].Key.NetnsIno != is[b].Key.NetnsIno {
			return is[a].Key.NetnsIno < is[b].Key.NetnsIno
		}
		return is[a].Key.Ifindex < is[b].Key.Ifindex
	})
}

// DiffInterfaces says what to attach and detach going from old to new. An
// interface whose name changed at the same key (ifindex reuse) is both.
func DiffInterfaces(old, new []Interface) (added, removed []Interface) {
	type id struct {
		k    topology.Key
		name string
		port uint16 // an underlay is attached differently
	}
	was := map[id]bool{}
	for _, i := range old {
		was[id{i.Key, i.Name, i.TunnelPort}] = true
	}
	is := map[id]bool{}
	for _, i := range new {
		is[id{i.Key, i.Name, i.TunnelPort}] = true
		if !was[id{i.Key, i.Name, i.TunnelPort}] {
			added = append(added, i)
		}
	}
	for _, i := range old {
		if !is[id{i.Key, i.Name, i.TunnelPort}] {
			removed = append(removed, i)
		}
	}
	return added, removed
}

// Interfaces lists the interfaces to trace now.
func (r *Resolver) Interfaces(sel Selection) []Interface {
	return InterfacesOf(r.Snapshot(), sel)
}
