package resolver

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// Links is the `hoptrace links` view of a snapshot: per bridge, each port
// veth and what is at its other end; containers without a veth; and
// namespaces Docker does not own.
type Links struct {
	Time            time.Time    `json:"time"`
	DockerAvailable bool         `json:"docker_available"`
	DockerError     string       `json:"docker_error,omitempty"`
	Bridges         []LinkBridge `json:"bridges"`
	// Parented are the macvlan and ipvlan networks: the host interface each
	// sits on and the containers' interfaces on it.
	Parented []LinkParented `json:"parented_networks"`
	// NoVeth are containers without any veth (--network host or none).
	NoVeth []LinkContainer `json:"containers_without_veth"`
	// Namespaces are the network namespaces not owned by a container.
	Namespaces []LinkNetns `json:"namespaces"`
}

// LinkBridge is one bridge and its ports: a host bridge, or an overlay
// network's (Driver "overlay") in the sandbox namespace NetnsIno.
type LinkBridge struct {
	Name     string     `json:"name"`
	Ifindex  uint32     `json:"ifindex"`
	Network  string     `json:"network,omitempty"`
	Driver   string     `json:"driver,omitempty"`
	NetnsIno uint32     `json:"netns_ino,omitempty"`
	Ports    []LinkPort `json:"ports"`
}

// LinkPort is a bridge port and its peer.
type LinkPort struct {
	Veth         string         `json:"veth"`
	Ifindex      uint32         `json:"ifindex"`
	PeerIfindex  uint32         `json:"peer_ifindex,omitempty"`
	PeerNetnsIno uint32         `json:"peer_netns_ino,omitempty"`
	PeerName     string         `json:"peer_name,omitempty"` // eth0
	Container    *LinkContainer `json:"container,omitempty"`
	// Netns names a non-Docker namespace at the other end.
	Netns string         `json:"netns,omitempty"`
	MAC   string         `json:"mac,omitempty"` // of the peer (eth0)
	Addrs []netip.Prefix `json:"addrs,omitempty"`
	// Tunnel is set for an overlay's vxlan0.
	Tunnel *LinkTunnel `json:"tunnel,omitempty"`
}

// LinkTunnel is an overlay's VXLAN device: the other nodes it sends to and
// the host interfaces those packets leave by.
type LinkTunnel struct {
	VNI     uint32       `json:"vni"`
	Port    uint16       `json:"port"`
	Remotes []netip.Addr `json:"remotes"`
	// Nodes name the remotes the overlay's peer list knows, by address.
	Nodes     map[string]string `json:"nodes,omitempty"`
	Underlays []string          `json:"underlays"` // host interface names
}

// LinkParented is a macvlan or ipvlan network and its containers.
type LinkParented struct {
	Network string            `json:"network"`
	Driver  string            `json:"driver"`
	Parent  string            `json:"parent"`
	Members []LinkParentedEnd `json:"members"`
}

// LinkParentedEnd is one container's interface on such a network.
type LinkParentedEnd struct {
	Iface     string         `json:"iface"`
	Ifindex   uint32         `json:"ifindex"`
	Container *LinkContainer `json:"container,omitempty"`
	MAC       string         `json:"mac,omitempty"`
	Addrs     []netip.Prefix `json:"addrs,omitempty"`
}

// LinkContainer identifies a container.
type LinkContainer struct {
	Name        string `json:"name"`
	ID          string `json:"id"`
	Image       string `json:"image,omitempty"`
	NetworkMode string `json:"network_mode,omitempty"`
}

// LinkNetns is a namespace not owned by Docker, and its interfaces.
type LinkNetns struct {
	Ino        uint32   `json:"ino"`
	Name       string   `json:"name"`
	Source     string   `json:"source"`
	PID        int      `json:"pid,omitempty"`
	Interfaces []string `json:"interfaces,omitempty"` // "eth0(2)"
}

// LinksOf builds the links view of a snapshot.
//
// Namespaces leaves out overlay sandboxes (their bridges are in Bridges).
func LinksOf(s *topology.Snapshot) Links {
	l := Links{Time: s.Time, DockerAvailable: s.DockerAvailable, DockerError: s.DockerError,
		Bridges: []LinkBridge{}, NoVeth: []LinkContainer{}, Namespaces: []LinkNetns{}}
	ix := topology.NewIndex(s)
	hasVeth := map[string]bool{}
	for _, b := range s.Bridges {
		lb := LinkBridge{Name: b.Name, Ifindex: b.Ifindex, Network: b.Network, Driver: b.Driver, NetnsIno: b.NetnsIno, Ports: []LinkPort{}}
		ino := b.NetnsIno
		if ino == 0 {
			ino = s.HostNetnsIno
		}
		for _, p := range b.Ports {
			e, ok := ix.Lookup(topology.Key{NetnsIno: ino, Ifindex: p})
			if !ok {
				continue
			}
			lp := LinkPort{Veth: e.Name, Ifindex: e.Ifindex, PeerIfindex: e.PeerIfindex, PeerNetnsIno: e.PeerNetnsIno, Netns: e.NetnsName}
			if e.Container != nil {
				lp.Container = linkContainer(e.Container)
				hasVeth[e.Container.ID] = true
			}
			if peer, ok := ix.Peer(e.Key()); ok {
				lp.PeerName, lp.MAC, lp.Addrs = peer.Name, peer.MAC, peer.Addrs
			}
			if t, ok := s.Tunnel(e.Key()); ok {
				lt := &LinkTunnel{VNI: t.VNI, Port: t.Port, Remotes: append([]netip.Addr{}, t.Remotes...), Underlays: []string{}}
				for _, r := range t.Remotes {
					if name, ok := ix.NodeName(r); ok {
						if lt.Nodes == nil {
							lt.Nodes = map[string]string{}
						}
						lt.Nodes[r.String()] = name
					}
				}
				for _, u := range t.Underlays {
					name := fmt.Sprintf("if%d", u)
					if h, ok := ix.Lookup(topology.Key{NetnsIno: s.HostNetnsIno, Ifindex: u}); ok {
						name = h.Name
					}
					lt.Underlays = append(lt.Underlays, name)
				}
				lp.Tunnel = lt
			}
			lb.Ports = append(lb.Ports, lp)
		}
		l.Bridges = append(l.Bridges, lb)
	}
	for _, e := range s.Endpoints {
		if e.Role == topology.RoleContainer && e.Container != nil && e.PeerIfindex != 0 {
			hasVeth[e.Container.ID] = true
		}
	}
	l.Parented = parentedOf(s, hasVeth)
	for i := range s.Containers {
		if c := &s.Containers[i]; !hasVeth[c.ID] {
			l.NoVeth = append(l.NoVeth, *linkContainer(c))
		}
	}
	ifaces := map[uint32][]string{}
	for _, e := range s.Endpoints {
		ifaces[e.NetnsIno] = append(ifaces[e.NetnsIno], fmt.Sprintf("%s(%d)", e.Name, e.Ifindex))
	}
	for _, n := range s.Namespaces {
		if n.Source == topology.NetnsHost || n.Source == topology.NetnsContainer || n.Source == topology.NetnsOverlay {
			continue // an overlay's sandbox shows as its bridge
		}
		l.Namespaces = append(l.Namespaces, LinkNetns{Ino: n.Ino, Name: n.Name, Source: n.Source, PID: n.PID, Interfaces: ifaces[n.Ino]})
	}
	sort.SliceStable(l.Namespaces, func(i, j int) bool {
		a, b := l.Namespaces[i], l.Namespaces[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Name < b.Name
	})
	return l
}

// parentedOf groups the containers' macvlan and ipvlan interfaces by
// network; their containers count as placed (hasVeth).
func parentedOf(s *topology.Snapshot, placed map[string]bool) []LinkParented {
	out := []LinkParented{}
	at := map[string]int{}
	for _, e := range s.Endpoints {
		if e.Parent == "" || e.NetnsIno == s.HostNetnsIno {
			continue
		}
		i, ok := at[e.Network]
		if !ok {
			i = len(out)
			at[e.Network] = i
			out = append(out, LinkParented{Network: e.Network, Driver: e.Driver, Parent: e.Parent})
		}
		m := LinkParentedEnd{Iface: e.Name, Ifindex: e.Ifindex, MAC: e.MAC, Addrs: e.Addrs}
		if e.Container != nil {
			m.Container = linkContainer(e.Container)
			placed[e.Container.ID] = true
		}
		out[i].Members = append(out[i].Members, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Network < out[j].Network })
	return out
}

func linkContainer(c *topology.Container) *LinkContainer {
	return &LinkContainer{Name: c.Name, ID: c.ID, Image: c.Image, NetworkMode: c.NetworkMode}
}

// DockerNote is the one line to print when Docker was not reachable, or "".
func (l Links) DockerNote() string {
	if l.DockerAvailable {
		return ""
	}
	if l.DockerError == "docker disabled" {
		return "Docker disabled: names come from network namespaces only"
	}
	return "Docker was not reachable (" + l.DockerError + "): names come from network namespaces only"
}

// WriteText prints the view for people: one block per bridge, then the
// containers without a veth and the other namespaces.
func (l Links) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, b := range l.Bridges {
		net := b.Network
		if net == "" {
			net = "-"
		}
		if b.Driver == topology.DriverOverlay {
			fmt.Fprintf(tw, "%s (ifindex %d, overlay network %s, in its sandbox netns ino %d)\n", b.Name, b.Ifindex, net, b.NetnsIno)
		} else {
			fmt.Fprintf(tw, "%s (ifindex %d, network %s)\n", b.Name, b.Ifindex, net)
		}
		if len(b.Ports) == 0 {
			fmt.Fprintf(tw, "  no ports\n")
		}
		for _, p := range b.Ports {
			who, id := "?", ""
			switch {
			case p.Container != nil:
				who, id = p.Container.Name, shortID(p.Container.ID)
			case p.Netns != "":
				who = "netns " + p.Netns
			}
			peer := "?"
			switch {
			case p.PeerIfindex != 0:
				peer = fmt.Sprintf("%s(%d)", orDash(p.PeerName), p.PeerIfindex)
			case b.Driver == topology.DriverOverlay:
				peer, who = "other nodes", "-" // vxlan0: the tunnel
			}
			fmt.Fprintf(tw, "  %s(%d)\t<->\t%s\t%s\t%s\t%s\t%s\n", p.Veth, p.Ifindex, peer, who, orDash(id), orDash(p.MAC), orDash(joinPrefixes(p.Addrs)))
			if t := p.Tunnel; t != nil {
				nodes := "no other node yet"
				if len(t.Remotes) > 0 {
					nodes = fmt.Sprintf("to %s via %s", joinRemotes(t), orDash(strings.Join(t.Underlays, ",")))
				}
				fmt.Fprintf(tw, "    VXLAN VNI %d, UDP %d, %s\n", t.VNI, t.Port, nodes)
			}
		}
	}
	for _, n := range l.Parented {
		fmt.Fprintf(tw, "%s network %s on %s\n", n.Driver, n.Network, n.Parent)
		for _, m := range n.Members {
			who, id := "?", ""
			if m.Container != nil {
				who, id = m.Container.Name, shortID(m.Container.ID)
			}
			fmt.Fprintf(tw, "  %s(%d)\t%s\t%s\t%s\t%s\n", m.Iface, m.Ifindex, who, orDash(id), orDash(m.MAC), orDash(joinPrefixes(m.Addrs)))
		}
	}
	if len(l.NoVeth) > 0 {
		fmt.Fprintf(tw, "containers without a veth\n")
		for _, c := range l.NoVeth {
			fmt.Fprintf(tw, "  %s\t%s\tnetwork %s\n", c.Name, shortID(c.ID), orDash(c.NetworkMode))
		}
	}
	if len(l.Namespaces) > 0 {
		fmt.Fprintf(tw, "namespaces not owned by Docker\n")
		for _, n := range l.Namespaces {
			fmt.Fprintf(tw, "  %s\t%s\tino %d\t%s\n", orDash(n.Name), n.Source, n.Ino, strings.Join(n.Interfaces, " "))
		}
	}
	return tw.Flush()
}

// joinRemotes lists a tunnel's remotes, each after its node's name when
// known: "node-b 10.0.0.2, 10.0.0.3".
func joinRemotes(t *LinkTunnel) string {
	s := make([]string, len(t.Remotes))
	for i, a := range t.Remotes {
		s[i] = a.String()
		if n := t.Nodes[s[i]]; n != "" {
			s[i] = n + " " + s[i]
		}
	}
	return strings.Join(s, ", ")
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinPrefixes(ps []netip.Prefix) string {
	var b strings.Builder
	for _, p := range ps {
		if p.Addr().IsLinkLocalUnicast() {
			continue // fe80:: on every veth says nothing
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	return b.String()
}
