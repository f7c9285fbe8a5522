// Package topology is the pure model of a host's container networking:
// bridges, veth pairs, network namespaces and the containers behind them.
//
// The resolver fills it from netlink and Docker; recordings store it; the
// journey assembler and printers read it. It imports nothing from the kernel
// or Docker, so all of those can be tested anywhere.
package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Role says what an interface is in the bridge networking picture.
type Role uint8

const (
	RoleUnknown   Role = iota
	RoleContainer      // the container side of a veth (eth0 inside the container)
	RoleHostVeth       // the host side of a veth, a bridge port
	RoleBridge         // a Linux bridge (docker0, br-xxxx)
	RoleHost           // another host interface (eth0, lo, ...)
	RoleNetns          // an interface in a non-Docker network namespace
)

func (r Role) String() string {
	switch r {
	case RoleContainer:
		return "container"
	case RoleHostVeth:
		return "host-veth"
	case RoleBridge:
		return "bridge"
	case RoleHost:
		return "host"
	case RoleNetns:
		return "netns"
	}
	return "unknown"
}

// Key identifies an interface on the host: its namespace inode and ifindex.
type Key struct {
	NetnsIno uint32
	Ifindex  uint32
}

// Container is what Docker knows of a container.
type Container struct {
	ID    string `json:"id"`
	Name  string `json:"name"` // without the leading "/"
	Image string `json:"image,omitempty"`
	PID   int    `json:"pid,omitempty"`
	// NetworkMode is "bridge", "host", "none", "container:<id>" or a network name.
	NetworkMode string             `json:"network_mode,omitempty"`
	SandboxKey  string             `json:"sandbox_key,omitempty"`
	NetnsIno    uint32             `json:"netns_ino,omitempty"`
	Networks    []ContainerNetwork `json:"networks,omitempty"`
}

// ShortID is the 12-character form Docker prints.
func (c Container) ShortID() string {
	if len(c.ID) > 12 {
		return c.ID[:12]
	}
	return c.ID
}

// ContainerNetwork is one network a container is attached to.
type ContainerNetwork struct {
	Network    string     `json:"network"`
	NetworkID  string     `json:"network_id,omitempty"`
	Bridge     string     `json:"bridge,omitempty"` // docker0, br-xxxx
	IP         netip.Addr `json:"ip,omitempty"`
	IPv6       netip.Addr `json:"ipv6,omitempty"`
	MAC        string     `json:"mac,omitempty"`
	EndpointID string     `json:"endpoint_id,omitempty"`
}

// Endpoint is one interface, with everything known about what it belongs to.
type Endpoint struct {
	NetnsIno uint32         `json:"netns_ino"`
	Ifindex  uint32         `json:"ifindex"`
	Name     string         `json:"name"` // interface name, e.g. eth0, veth3c4d, docker0
	Role     Role           `json:"role"`
	MAC      string         `json:"mac,omitempty"`
	Addrs    []netip.Prefix `json:"addrs,omitempty"`
	// Bridge is the bridge this interface is a port of (RoleHostVeth), or
	// its own name for a bridge.
	Bridge string `json:"bridge,omitempty"`
	// Network is the Docker network name of the bridge or port, if known.
	Network string `json:"network,omitempty"`
	// Peer is the other end of a veth pair, when known.
	PeerNetnsIno uint32 `json:"peer_netns_ino,omitempty"`
	PeerIfindex  uint32 `json:"peer_ifindex,omitempty"`
	// Container is the container owning this interface (RoleContainer) or at
	// the other end of this veth (RoleHostVeth); nil when none.
	Container *Container `json:"container,omitempty"`
	// NetnsName names a non-Docker namespace (from /run/netns, or a process name).
	NetnsName string `json:"netns_name,omitempty"`
	// Driver and Parent describe a container interface that sits on a host
	// interface rather than a veth: Docker's macvlan and ipvlan networks
	// (Driver "macvlan" or "ipvlan", Parent the host interface, e.g. eth1).
	// Driver "overlay" marks an interface inside an overlay network's
	// sandbox (its br0, the veth ports and vxlan0), Network naming it.
	Driver string `json:"driver,omitempty"`
	Parent string `json:"parent,omitempty"`
}

// Tunnel is an overlay's VXLAN device (vxlan0, at Key in the overlay
// Network's sandbox): its VNI and UDP port, the other nodes its forwarding
// table sends to, and the host interfaces the routes to them leave by (its
// underlay). Not in Endpoint: every hop copies one.
type Tunnel struct {
	Key       Key          `json:"key"`
	Network   string       `json:"network"`
	VNI       uint32       `json:"vni"`
	Port      uint16       `json:"port"`
	Remotes   []netip.Addr `json:"remotes,omitempty"`
	Underlays []uint32     `json:"underlays,omitempty"` // host ifindexes
}

// Key returns the endpoint's lookup key.
func (e Endpoint) Key() Key { return Key{NetnsIno: e.NetnsIno, Ifindex: e.Ifindex} }

// Label is the short name shown in a journey: "web:eth0" for a container
// interface, the interface name for host interfaces, "ns1:veth0" for an
// interface in a named non-Docker namespace.
func (e Endpoint) Label() string {
	if p, ok := e.LabelPrefix(); ok {
		return p + ":" + e.Name
	}
	return e.Name
}

// AppendLabel appends Label to b, for printers that build lines without
// allocating.
func (e *Endpoint) AppendLabel(b []byte) []byte {
	if p, ok := e.LabelPrefix(); ok {
		b = append(b, p...)
		b = append(b, ':')
	}
	return append(b, e.Name...)
}

// LabelPrefix is what Label puts before a colon and the interface name;
// false for the name alone.
func (e *Endpoint) LabelPrefix() (string, bool) {
	switch {
	case e.Role == RoleContainer && e.Container != nil:
		return e.Container.Name, true
	case e.Driver == DriverOverlay && e.Network != "":
		return e.Network, true // br0 and veth0 are in every overlay sandbox
	case e.NetnsName != "" && e.Role != RoleHostVeth && e.Role != RoleBridge && e.Role != RoleHost:
		return e.NetnsName, true
	}
	return "", false
}

// DriverOverlay is Endpoint.Driver and Bridge.Driver inside an overlay
// network's sandbox.
const DriverOverlay = "overlay"

// Bridge is a Linux bridge used for container networking, and its ports.
type Bridge struct {
	Name    string `json:"name"`
	Ifindex uint32 `json:"ifindex"`
	Network string `json:"network,omitempty"` // Docker network name (bridge, mynet, ...)
	// Ports are the ifindexes (in the bridge's netns) of the bridge's ports.
	Ports []uint32 `json:"ports,omitempty"`
	// NetnsIno is the namespace of a bridge that is not in the host's:
	// an overlay network's br0 in its sandbox (Driver "overlay").
	NetnsIno uint32 `json:"netns_ino,omitempty"`
	Driver   string `json:"driver,omitempty"`
}

// Snapshot is the whole picture at one moment. Recordings store snapshots so
// names at record time survive; replay resolves from them without Docker.
type Snapshot struct {
	Time         time.Time   `json:"time"`
	HostNetnsIno uint32      `json:"host_netns_ino"`
	Bridges      []Bridge    `json:"bridges,omitempty"`
	Endpoints    []Endpoint  `json:"endpoints,omitempty"`
	Containers   []Container `json:"containers,omitempty"`
	// DockerAvailable is false when Docker could not be reached; names then
	// come from namespaces only.
	DockerAvailable bool `json:"docker_available"`
	// DockerError says why Docker could not be reached, when it could not.
	DockerError string `json:"docker_error,omitempty"`
	// Namespaces are the network namespaces seen, the host's included.
	Namespaces []Netns `json:"namespaces,omitempty"`
	// Tunnels are the overlay networks' VXLAN devices.
	Tunnels []Tunnel `json:"tunnels,omitempty"`
	// Nodes are the other Swarm nodes of the overlay networks, by the
	// address their VXLAN packets go to.
	Nodes []Node `json:"nodes,omitempty"`
}

// Tunnel returns the VXLAN device at k, when it is an overlay's.
func (s *Snapshot) Tunnel(k Key) (Tunnel, bool) {
	for _, t := range s.Tunnels {
		if t.Key == k {
			return t, true
		}
	}
	return Tunnel{}, false
}

// Node is a Swarm node as an overlay network's peer list names it.
type Node struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"addr"`
}

// NodeNamer names the node at a tunnel's other end.
type NodeNamer interface {
	NodeName(addr netip.Addr) (string, bool)
}

// Netns is one network namespace and where its name came from.
type Netns struct {
	Ino uint32 `json:"ino"`
	// Name is the name under /run/netns, the Docker sandbox ID, or the name
	// of a process inside; empty for the host.
	Name string `json:"name,omitempty"`
	// Source says where the namespace was found: NetnsHost, NetnsNamed, ...
	Source string `json:"source"`
	// Path opens the namespace (for setns or netlink.NewHandleAt); empty
	// for the host.
	Path string `json:"path,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// Nsid is the namespace's id as seen from the host namespace, -1 if none.
	Nsid        int    `json:"nsid"`
	ContainerID string `json:"container_id,omitempty"`
}

// Where a namespace was found (Netns.Source).
const (
	NetnsHost      = "host"           // the host (initial) namespace
	NetnsContainer = "container"      // a Docker container's namespace
	NetnsNamed     = "named"          // /run/netns/<name> (ip netns)
	NetnsSandbox   = "docker-sandbox" // /var/run/docker/netns/<id>, no container known
	NetnsOverlay   = "docker-overlay" // /var/run/docker/netns/1-<network id>: an overlay's bridge
	NetnsIngress   = "docker-ingress" // /var/run/docker/netns/ingress_sbox: Swarm's routing mesh
	NetnsProcess   = "process"        // held only by a process
)

// Netns returns the namespace with the given inode.
func (s *Snapshot) Netns(ino uint32) (Netns, bool) {
	for _, n := range s.Namespaces {
		if n.Ino == ino {
			return n, true
		}
	}
	return Netns{}, false
}

// Namer resolves an interface seen by a hook to an endpoint. Implementations
// must be cheap and safe for concurrent use: it runs once per hop.
type Namer interface {
	Lookup(k Key) (Endpoint, bool)
}

// Index is an immutable Namer built from a snapshot.
type Index struct {
	byKey map[Key]*Endpoint
	host  uint32
	ns    map[uint32]Netns
	nodes []Node
}

// NewIndex builds a lookup index over a snapshot's endpoints.
func NewIndex(s *Snapshot) *Index {
	ix := &Index{
		byKey: make(map[Key]*Endpoint, len(s.Endpoints)),
		host:  s.HostNetnsIno,
		ns:    make(map[uint32]Netns, len(s.Namespaces)),
		nodes: s.Nodes,
	}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		ix.byKey[e.Key()] = e
	}
	for _, n := range s.Namespaces {
		ix.ns[n.Ino] = n
	}
	return ix
}

// NodeName is the name of the node at addr, the other end of a tunnel.
func (ix *Index) NodeName(addr netip.Addr) (string, bool) {
	for _, n := range ix.nodes {
		if n.Addr == addr {
			return n.Name, true
		}
	}
	return "", false
}

// Naming says how final an interface's name is.
type Naming uint8

const (
	// NameFinal: named after its container, or a namespace Docker does
	// not own (the host, /run/netns), or Docker is not involved.
	NameFinal Naming = iota
	// NameProvisional: unknown, or in (for a host veth: facing) a namespace
	// found only through a process; Docker may still name it, or never.
	NameProvisional
	// NamePending: in (or facing) a Docker sandbox of a container Docker
	// has not listed yet (it is starting, or hoptrace is reconnecting to
	// a restarted daemon): Docker will name it.
	NamePending
)

// Naming tells how final the name of interface k is in this snapshot.
func (ix *Index) Naming(k Key) Naming {
	e, ok := ix.byKey[k]
	if !ok {
		return NameProvisional
	}
	if e.Container != nil {
		return NameFinal
	}
	ns := e.NetnsIno
	if e.Role == RoleHostVeth {
		if e.PeerNetnsIno == 0 {
			return NameProvisional // a new port whose other end is not placed yet
		}
		ns = e.PeerNetnsIno
	}
	if ns == ix.host {
		return NameFinal
	}
	n, ok := ix.ns[ns]
	switch {
	case !ok || n.Source == NetnsProcess:
		return NameProvisional
	case n.Source == NetnsSandbox && isContainerSandbox(n.Path):
		return NamePending
	}
	return NameFinal
}

// isContainerSandbox reports whether a Docker netns file is a container's
// sandbox: Docker names those by 12 hex digits of the sandbox ID, and its
// own (overlay "1-<id>", "ingress_sbox", "lb_<id>") otherwise.
func isContainerSandbox(path string) bool {
	base := path[strings.LastIndexByte(path, '/')+1:]
	if len(base) != 12 {
		return false
	}
	for _, c := range base {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Lookup implements Namer.
func (ix *Index) Lookup(k Key) (Endpoint, bool) {
	if e, ok := ix.byKey[k]; ok {
		return *e, true
	}
	return Endpoint{}, false
}

// Peer returns the other end of the veth identified by k, when known.
func (ix *Index) Peer(k Key) (Endpoint, bool) {
	e, ok := ix.byKey[k]
	if !ok || e.PeerIfindex == 0 {
		return Endpoint{}, false
	}
	return ix.Lookup(Key{NetnsIno: e.PeerNetnsIno, Ifindex: e.PeerIfindex})
}

// ErrNoSuchContainer: no container answers to a selection word.
var ErrNoSuchContainer = errors.New("no such container")

// AmbiguousError: a selection word is the prefix of several containers' IDs.
type AmbiguousError struct {
	Word       string
	Candidates []Container
}

func (e *AmbiguousError) Error() string {
	names := make([]string, len(e.Candidates))
	for i, c := range e.Candidates {
		names[i] = c.Name + " (" + c.ShortID() + ")"
	}
	return fmt.Sprintf("container %q is ambiguous: it starts the IDs of %s; give a name or a longer ID", e.Word, strings.Join(names, ", "))
}

// MinIDPrefix is the shortest ID prefix that selects a container.
const MinIDPrefix = 3

// MatchContainer is the one rule by which a selection word (--container)
// names a container, used both to decide what to hook and what to show:
// the container with that name, else the one with that ID, else the one
// whose ID starts with it (MinIDPrefix characters or more). It returns
// ErrNoSuchContainer (wrapped) or an *AmbiguousError.
func MatchContainer(cs []Container, word string) (Container, error) {
	want := strings.TrimPrefix(word, "/")
	for _, c := range cs {
		if c.Name == want {
			return c, nil
		}
	}
	for _, c := range cs {
		if c.ID == want {
			return c, nil
		}
	}
	var found []Container
	if len(want) >= MinIDPrefix {
		for _, c := range cs {
			if strings.HasPrefix(c.ID, want) {
				found = append(found, c)
			}
		}
	}
	switch len(found) {
	case 0:
		return Container{}, fmt.Errorf("container %q: %w", word, ErrNoSuchContainer)
	case 1:
		return found[0], nil
	}
	return Container{}, &AmbiguousError{Word: word, Candidates: found}
}
