package resolver

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

const (
	hostIno = 4026531840
	webIno  = 4026532001
	dbIno   = 4026532002
	nsIno   = 4026532003
)

// fakeScan is a host with docker0 (web), br-0123456789ab (web, db), a
// plain named namespace on its own bridge, and a host-network container.
func fakeScan() (scanResult, dockerState) {
	sc := scanResult{
		Host: nsInfo{Netns: topology.Netns{Ino: hostIno, Source: topology.NetnsHost, Nsid: -1}, Links: []linkInfo{
			{Name: "lo", Index: 1, Type: "device", PeerNsid: -1},
			{Name: "eth0", Index: 2, Type: "device", MAC: "52:54:00:00:00:01", PeerNsid: -1},
			{Name: "docker0", Index: 3, Type: "bridge", PeerNsid: -1, Addrs: []netip.Prefix{netip.MustParsePrefix("172.17.0.1/16")}},
			{Name: "br-0123456789ab", Index: 4, Type: "bridge", PeerNsid: -1},
			{Name: "vethweb0", Index: 10, Type: "veth", Master: 3, Peer: 5, PeerNsid: 0},
			{Name: "vethweb1", Index: 11, Type: "veth", Master: 4, Peer: 6, PeerNsid: 0},
			// db's nsid is unknown: found by the pair pointing at each other.
			{Name: "vethdb", Index: 12, Type: "veth", Master: 4, Peer: 5, PeerNsid: 7},
			{Name: "htbr", Index: 20, Type: "bridge", PeerNsid: -1},
			{Name: "htv0", Index: 21, Type: "veth", Master: 20, Peer: 2, PeerNsid: 1},
		}},
		Others: []nsInfo{
			{Netns: topology.Netns{Ino: webIno, Source: topology.NetnsContainer, Path: "/proc/100/ns/net", PID: 100, Nsid: 0, Name: "web", ContainerID: "aaaa"}, Links: []linkInfo{
				{Name: "lo", Index: 1, Type: "device", PeerNsid: -1},
				{Name: "eth0", Index: 5, Type: "veth", MAC: "02:42:ac:11:00:02", Peer: 10, PeerNsid: 0, Addrs: []netip.Prefix{netip.MustParsePrefix("172.17.0.2/16")}},
				{Name: "eth1", Index: 6, Type: "veth", MAC: "02:42:ac:12:00:02", Peer: 11, PeerNsid: 0},
			}},
			{Netns: topology.Netns{Ino: dbIno, Source: topology.NetnsContainer, Path: "/proc/200/ns/net", PID: 200, Nsid: -1, Name: "db", ContainerID: "bbbb"}, Links: []linkInfo{
				{Name: "eth0", Index: 5, Type: "veth", MAC: "02:42:ac:12:00:03", Peer: 12, PeerNsid: 3},
			}},
			{Netns: topology.Netns{Ino: nsIno, Source: topology.NetnsNamed, Path: "/run/netns/blue", Nsid: 1, Name: "blue"}, Links: []linkInfo{
				{Name: "eth0", Index: 2, Type: "veth", Peer: 21, PeerNsid: 0},
			}},
		},
		ContainerIno: map[string]uint32{"aaaa": webIno, "bbbb": dbIno, "cccc": hostIno},
	}
	ds := dockerState{
		Available: true,
		Networks: []Network{
			{ID: "n1", Name: "bridge", Driver: "bridge", Bridge: "docker0"},
			{ID: "0123456789abcdef", Name: "backend", Driver: "bridge", Bridge: "br-0123456789ab"},
			{ID: "n3", Name: "host", Driver: "host"},
		},
		Containers: []topology.Container{
			{ID: "aaaa", Name: "web", PID: 100, NetworkMode: "bridge", Networks: []topology.ContainerNetwork{
				{Network: "backend", NetworkID: "0123456789abcdef", MAC: "02:42:ac:12:00:02"},
				{Network: "bridge", NetworkID: "n1", MAC: "02:42:ac:11:00:02"},
			}},
			{ID: "bbbb", Name: "db", PID: 200, NetworkMode: "backend"},
			{ID: "cccc", Name: "hostnet", PID: 300, NetworkMode: "host"},
			{ID: "dddd", Name: "stopped", PID: 400}, // namespace gone
		},
	}
	return sc, ds
}

func TestBuild(t *testing.T) {
	sc, ds := fakeScan()
	s := build(sc, ds, time.Unix(0, 0))
	ix := topology.NewIndex(s)

	tests := []struct {
		key                    topology.Key
		name, container, label string
		role                   topology.Role
		bridge, network        string
		peer                   topology.Key
	}{
		{key(hostIno, 3), "docker0", "", "docker0", topology.RoleBridge, "docker0", "bridge", key(0, 0)},
		{key(hostIno, 10), "vethweb0", "web", "vethweb0", topology.RoleHostVeth, "docker0", "bridge", key(webIno, 5)},
		{key(hostIno, 11), "vethweb1", "web", "vethweb1", topology.RoleHostVeth, "br-0123456789ab", "backend", key(webIno, 6)},
		{key(hostIno, 12), "vethdb", "db", "vethdb", topology.RoleHostVeth, "br-0123456789ab", "backend", key(dbIno, 5)},
		{key(webIno, 5), "eth0", "web", "web:eth0", topology.RoleContainer, "docker0", "bridge", key(hostIno, 10)},
		{key(webIno, 6), "eth1", "web", "web:eth1", topology.RoleContainer, "br-0123456789ab", "backend", key(hostIno, 11)},
		{key(dbIno, 5), "eth0", "db", "db:eth0", topology.RoleContainer, "br-0123456789ab", "backend", key(hostIno, 12)},
		{key(nsIno, 2), "eth0", "", "blue:eth0", topology.RoleNetns, "htbr", "", key(hostIno, 21)},
		{key(hostIno, 2), "eth0", "", "eth0", topology.RoleHost, "", "", key(0, 0)},
	}
	for _, tt := range tests {
		e, ok := ix.Lookup(tt.key)
		if !ok {
			t.Errorf("%v: not found", tt.key)
			continue
		}
		cname := ""
		if e.Container != nil {
			cname = e.Container.Name
		}
		got := [...]any{e.Name, cname, e.Label(), e.Role, e.Bridge, e.Network, key(e.PeerNetnsIno, e.PeerIfindex)}
		want := [...]any{tt.name, tt.container, tt.label, tt.role, tt.bridge, tt.network, tt.peer}
		if got != want {
			t.Errorf("%v:\n got %v\nwant %v", tt.key, got, want)
		}
	}
	if p, ok := ix.Peer(key(hostIno, 10)); !ok || p.Label() != "web:eth0" {
		t.Errorf("Peer(vethweb0) = %v, %v", p.Label(), ok)
	}
	var names []string
	for _, c := range s.Containers {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "db,hostnet,web" {
		t.Errorf("containers = %s, want db,hostnet,web (stopped dropped)", got)
	}
	for _, c := range s.Containers {
		if c.Name == "web" && (c.Networks[0].Bridge != "br-0123456789ab" || c.Networks[1].Bridge != "docker0") {
			t.Errorf("web networks lack bridges: %+v", c.Networks)
		}
	}
	// A host-network container owns no namespace: host interfaces stay host.
	if e, _ := ix.Lookup(key(hostIno, 1)); e.Container != nil {
		t.Errorf("host lo belongs to %s", e.Container.Name)
	}
	if br := s.Bridges[1]; br.Name != "br-0123456789ab" || len(br.Ports) != 2 || br.Ports[0] != 11 || br.Ports[1] != 12 {
		t.Errorf("bridge = %+v", br)
	}
}

func TestLinksOf(t *testing.T) {
	sc, ds := fakeScan()
	l := LinksOf(build(sc, ds, time.Unix(0, 0)))
	var buf bytes.Buffer
	if err := l.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"docker0 (ifindex 3, network bridge)",
		"vethweb0(10)  <->  eth0(5)  web",
		"172.17.0.2/16",
		"vethdb(12)",
		"htv0(21)",
		"netns blue",
		"containers without a veth\n  hostnet",
		"network host",
		"namespaces not owned by Docker\n  blue",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if len(l.NoVeth) != 1 || l.NoVeth[0].Name != "hostnet" {
		t.Errorf("NoVeth = %+v", l.NoVeth)
	}
	if l.DockerNote() != "" {
		t.Errorf("note with Docker up: %q", l.DockerNote())
	}
	l.DockerAvailable, l.DockerError = false, "dial unix /x: no such file"
	if n := l.DockerNote(); !strings.Contains(n, "not reachable") || !strings.Contains(n, "/x") {
		t.Errorf("note = %q", n)
	}
}

func TestInterfacesOf(t *testing.T) {
	sc, ds := fakeScan()
	s := build(sc, ds, time.Unix(0, 0))
	s.Namespaces = append(s.Namespaces[:0:0], s.Namespaces...)
	names := func(is []Interface) string {
		var b []string
		for _, i := range is {
			b = append(b, i.Name+"@"+i.NetnsPath)
		}
		return strings.Join(b, " ")
	}
	got := names(InterfacesOf(s, Selection{Limit: true, Bridges: []string{"docker0"}}))
	if got != "docker0@ vethweb0@" {
		t.Errorf("docker0 only: %s", got)
	}
	got = names(InterfacesOf(s, Selection{Limit: true, Bridges: []string{"docker0"}, ContainerSide: true}))
	if got != "docker0@ vethweb0@ eth0@/proc/100/ns/net" {
		t.Errorf("with container side: %s", got)
	}
	all := InterfacesOf(s, Selection{ContainerSide: true})
	if len(all) != 11 {
		t.Errorf("all: %d interfaces: %s", len(all), names(all))
	}
}

func TestDiffInterfaces(t *testing.T) {
	a := Interface{Key: key(1, 10), Name: "veth1"}
	b := Interface{Key: key(1, 11), Name: "veth2"}
	reused := Interface{Key: key(1, 10), Name: "veth9"} // ifindex reused
	add, rm := DiffInterfaces([]Interface{a, b}, []Interface{b, reused})
	if len(add) != 1 || add[0] != reused || len(rm) != 1 || rm[0] != a {
		t.Errorf("add %v rm %v", add, rm)
	}
	add, rm = DiffInterfaces(nil, []Interface{a})
	if len(add) != 1 || len(rm) != 0 {
		t.Errorf("from nothing: add %v rm %v", add, rm)
	}
}

func TestBridgeName(t *testing.T) {
	if got := bridgeName("bridge", "ad0e2390f771aaaa", map[string]string{"com.docker.network.bridge.name": "docker0"}); got != "docker0" {
		t.Errorf("docker0: %s", got)
	}
	if got := bridgeName("bridge", "861f00c9ef19bbbbcccc", nil); got != "br-861f00c9ef19" {
		t.Errorf("user network: %s", got)
	}
	if got := bridgeName("host", "x", nil); got != "" {
		t.Errorf("host: %s", got)
	}
}

func TestParseNsLink(t *testing.T) {
	if ino, ok := parseNsLink("net:[4026531840]"); !ok || ino != 4026531840 {
		t.Errorf("got %d %v", ino, ok)
	}
	for _, bad := range []string{"mnt:[1]", "net:[x]", "net:[1"} {
		if _, ok := parseNsLink(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// fakeDocker is a scripted Docker source.
type fakeDocker struct {
	NoDocker
	containers map[string]topology.Container
	running    map[string]bool
	nets       []Network
}

func (f *fakeDocker) Container(_ context.Context, id string) (topology.Container, bool, error) {
	c, ok := f.containers[id]
	if !ok {
		return c, false, errNotFound{}
	}
	return c, f.running[id], nil
}
func (f *fakeDocker) Ping(context.Context) error                  { return nil }
func (f *fakeDocker) Networks(context.Context) ([]Network, error) { return f.nets, nil }
func (f *fakeDocker) Containers(context.Context) ([]topology.Container, error) {
	var out []topology.Container
	for id, c := range f.containers {
		if f.running[id] {
			out = append(out, c)
		}
	}
	return out, nil
}
func (f *fakeDocker) Events(context.Context) (<-chan DockerEvent, <-chan error) {
	return make(chan DockerEvent), make(chan error)
}

type errNotFound struct{}

func (errNotFound) Error() string { return "no such container" }
func (errNotFound) NotFound()     {}

func TestApplyEvents(t *testing.T) {
	f := &fakeDocker{
		containers: map[string]topology.Container{"a": {ID: "a", Name: "web"}, "b": {ID: "b", Name: "db"}},
		running:    map[string]bool{"a": true},
	}
	r := &Resolver{docker: f, cs: map[string]topology.Container{}, kick: make(chan struct{}, 1)}
	ctx := context.Background()
	if _, err := r.dockerConnect(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.cs["a"]; !ok || len(r.cs) != 1 || !r.ds.Available {
		t.Fatalf("after list: %v %v", r.cs, r.ds)
	}
	step := func(ev DockerEvent, want string) {
		t.Helper()
		if err := r.apply(ctx, ev); err != nil {
			t.Fatalf("%v: %v", ev, err)
		}
		var got []string
		for _, id := range []string{"a", "b"} {
			if _, ok := r.cs[id]; ok {
				got = append(got, id)
			}
		}
		if strings.Join(got, ",") != want {
			t.Errorf("after %s %s: %v, want %s", ev.Type, ev.Action, got, want)
		}
		select {
		case <-r.kick:
		default:
			t.Errorf("after %s %s: no rescan asked", ev.Type, ev.Action)
		}
	}
	f.running["b"] = true
	step(DockerEvent{Type: "container", Action: "start", ContainerID: "b"}, "a,b")
	f.containers["b"] = topology.Container{ID: "b", Name: "db", Networks: []topology.ContainerNetwork{{Network: "x"}}}
	step(DockerEvent{Type: "network", Action: "connect", ContainerID: "b"}, "a,b")
	if len(r.cs["b"].Networks) != 1 {
		t.Errorf("connect not applied: %+v", r.cs["b"])
	}
	step(DockerEvent{Type: "container", Action: "die", ContainerID: "a"}, "b")
	delete(f.containers, "b")
	step(DockerEvent{Type: "network", Action: "disconnect", ContainerID: "b"}, "")
	f.nets = []Network{{ID: "n", Name: "new", Driver: "bridge", Bridge: "br-n"}}
	step(DockerEvent{Type: "network", Action: "create"}, "")
	if len(r.ds.Networks) != 1 {
		t.Errorf("networks not refreshed: %v", r.ds.Networks)
	}
}

func TestSetDockerDownOnce(t *testing.T) {
	var logs bytes.Buffer
	r := &Resolver{docker: &fakeDocker{}, cs: map[string]topology.Container{}, kick: make(chan struct{}, 1), log: newTestLogger(&logs)}
	for i := 0; i < 3; i++ {
		r.setDockerDown(errNotFound{})
	}
	if n := strings.Count(logs.String(), "not reachable"); n != 1 {
		t.Errorf("logged %d times:\n%s", n, logs.String())
	}
	if r.ds.Available || r.ds.Err == "" {
		t.Errorf("state %+v", r.ds)
	}
}

func key(ino, ifindex uint32) topology.Key { return topology.Key{NetnsIno: ino, Ifindex: ifindex} }

const (
	sboxIno    = 4026532101
	ingressIno = 4026532102
	ovCliIno   = 4026532103
	ovWebIno   = 4026532104
)

// overlayScan is a single Swarm node: overlay network ht-ov's sandbox (br0
// with vxlan0 and a veth per container), its two containers (whose eth0
// have the same ifindex, each in its own namespace), and the routing
// mesh's sandbox.
func overlayScan() (scanResult, dockerState) {
	sc := scanResult{
		Host: nsInfo{Netns: topology.Netns{Ino: hostIno, Source: topology.NetnsHost, Nsid: -1}, Links: []linkInfo{
			{Name: "lo", Index: 1, Type: "device", PeerNsid: -1},
			{Name: "docker_gwbridge", Index: 3, Type: "bridge", PeerNsid: -1},
		}},
		Others: []nsInfo{
			{Netns: topology.Netns{Ino: sboxIno, Source: topology.NetnsSandbox, Path: "/var/run/docker/netns/1-abcdef0123", Nsid: 4, Name: "1-abcdef0123"}, Links: []linkInfo{
				{Name: "lo", Index: 1, Type: "device", PeerNsid: -1},
				{Name: "br0", Index: 2, Type: "bridge", PeerNsid: -1, Addrs: []netip.Prefix{netip.MustParsePrefix("10.7.0.1/24")}},
				{Name: "vxlan0", Index: 30, Type: "vxlan", Master: 2, PeerNsid: -1},
				{Name: "veth0", Index: 31, Type: "veth", Master: 2, Peer: 40, PeerNsid: 0},
				{Name: "veth1", Index: 32, Type: "veth", Master: 2, Peer: 40, PeerNsid: 1},
			}},
			{Netns: topology.Netns{Ino: ingressIno, Source: topology.NetnsSandbox, Path: "/var/run/docker/netns/ingress_sbox", Nsid: 5, Name: "ingress_sbox"}, Links: []linkInfo{
				{Name: "lo", Index: 1, Type: "device", PeerNsid: -1},
			}},
			{Netns: topology.Netns{Ino: ovCliIno, Source: topology.NetnsContainer, Path: "/proc/500/ns/net", PID: 500, Nsid: 6, Name: "cli", ContainerID: "eeee"}, Links: []linkInfo{
				{Name: "eth0", Index: 40, Type: "veth", MAC: "02:42:0a:07:00:02", Peer: 31, PeerNsid: 0, Addrs: []netip.Prefix{netip.MustParsePrefix("10.7.0.2/24")}},
			}},
			{Netns: topology.Netns{Ino: ovWebIno, Source: topology.NetnsContainer, Path: "/proc/600/ns/net", PID: 600, Nsid: 7, Name: "web", ContainerID: "ffff"}, Links: []linkInfo{
				{Name: "eth0", Index: 40, Type: "veth", MAC: "02:42:0a:07:00:03", Peer: 32, PeerNsid: 0, Addrs: []netip.Prefix{netip.MustParsePrefix("10.7.0.3/24")}},
			}},
		},
		ContainerIno: map[string]uint32{"eeee": ovCliIno, "ffff": ovWebIno},
	}
	ds := dockerState{
		Available: true,
		Networks: []Network{
			{ID: "abcdef0123456789", Name: "ht-ov", Driver: "overlay"},
			{ID: "ingressid0123456", Name: "ingress", Driver: "overlay"},
			{ID: "gw0123456789abcd", Name: "docker_gwbridge", Driver: "bridge", Bridge: "docker_gwbridge"},
		},
		Containers: []topology.Container{
			{ID: "eeee", Name: "cli", PID: 500, NetworkMode: "ht-ov"},
			{ID: "ffff", Name: "web", PID: 600, NetworkMode: "ht-ov"},
		},
	}
	return sc, ds
}

func TestBuildOverlay(t *testing.T) {
	sc, ds := overlayScan()
	s := build(sc, ds, time.Unix(0, 0))
	ix := topology.NewIndex(s)
	for _, tc := range []struct {
		key          topology.Key
		label, br    string
		role         topology.Role
		container    string
		peer         topology.Key
		wantPeerName string
	}{
		{key(sboxIno, 2), "ht-ov:br0", "br0", topology.RoleBridge, "", topology.Key{}, ""},
		{key(sboxIno, 30), "ht-ov:vxlan0", "br0", topology.RoleHost, "", topology.Key{}, ""},
		{key(sboxIno, 31), "ht-ov:veth0", "br0", topology.RoleHostVeth, "cli", key(ovCliIno, 40), "eth0"},
		{key(sboxIno, 32), "ht-ov:veth1", "br0", topology.RoleHostVeth, "web", key(ovWebIno, 40), "eth0"},
		{key(ovCliIno, 40), "cli:eth0", "br0", topology.RoleContainer, "cli", key(sboxIno, 31), "veth0"},
		{key(ovWebIno, 40), "web:eth0", "br0", topology.RoleContainer, "web", key(sboxIno, 32), "veth1"},
	} {
		e, ok := ix.Lookup(tc.key)
		if !ok {
			t.Errorf("%v: not found", tc.key)
			continue
		}
		c := ""
		if e.Container != nil {
			c = e.Container.Name
		}
		if e.Label() != tc.label || e.Bridge != tc.br || e.Role != tc.role || c != tc.container || e.Network != "ht-ov" {
			t.Errorf("%v: label %q bridge %q role %v container %q network %q; want %q %q %v %q ht-ov", tc.key, e.Label(), e.Bridge, e.Role, c, e.Network, tc.label, tc.br, tc.role, tc.container)
		}
		if tc.peer != (topology.Key{}) {
			if p, ok := ix.Peer(tc.key); !ok || p.Key() != tc.peer || p.Name != tc.wantPeerName {
				t.Errorf("%v: peer %v %q, want %v %q", tc.key, p.Key(), p.Name, tc.peer, tc.wantPeerName)
			}
		}
		if n := ix.Naming(tc.key); n != topology.NameFinal {
			t.Errorf("%v: naming %v, want final", tc.key, n)
		}
	}
	if len(s.Bridges) != 2 || s.Bridges[1].Name != "br0" || s.Bridges[1].NetnsIno != sboxIno || s.Bridges[1].Network != "ht-ov" ||
		len(s.Bridges[1].Ports) != 3 {
		t.Errorf("bridges %+v", s.Bridges)
	}
	srcs := map[uint32]string{}
	for _, n := range s.Namespaces {
		srcs[n.Ino] = n.Source
	}
	if srcs[sboxIno] != topology.NetnsOverlay || srcs[ingressIno] != topology.NetnsIngress {
		t.Errorf("namespace sources %v", srcs)
	}

	names := func(is []Interface) string {
		var b []string
		for _, i := range is {
			b = append(b, i.Name+"@"+i.NetnsPath)
		}
		return strings.Join(b, " ")
	}
	all := "br0@/var/run/docker/netns/1-abcdef0123 vxlan0@/var/run/docker/netns/1-abcdef0123 veth0@/var/run/docker/netns/1-abcdef0123 veth1@/var/run/docker/netns/1-abcdef0123 eth0@/proc/500/ns/net eth0@/proc/600/ns/net"
	if got := names(InterfacesOf(s, Selection{ContainerSide: true})); got != "docker_gwbridge@ "+all {
		t.Errorf("all:\n got %s\nwant docker_gwbridge@ %s", got, all)
	}
	if got := names(InterfacesOf(s, Selection{Limit: true, Networks: []string{"ht-ov"}, ContainerSide: true})); got != all {
		t.Errorf("ht-ov:\n got %s\nwant %s", got, all)
	}
	if got := names(InterfacesOf(s, Selection{Limit: true, Bridges: []string{"br0"}})); got != "" {
		t.Errorf("a host bridge named br0 selects an overlay's: %s", got)
	}

	l := LinksOf(s)
	var ov *LinkBridge
	for i := range l.Bridges {
		if l.Bridges[i].Driver == topology.DriverOverlay {
			ov = &l.Bridges[i]
		}
	}
	if ov == nil || ov.Network != "ht-ov" || ov.NetnsIno != sboxIno || len(ov.Ports) != 3 ||
		ov.Ports[1].Container == nil || ov.Ports[1].Container.Name != "cli" || ov.Ports[2].Container == nil || ov.Ports[2].Container.Name != "web" {
		t.Fatalf("overlay in links: %+v", ov)
	}
	for _, n := range l.Namespaces {
		if n.Ino == sboxIno {
			t.Errorf("the overlay's sandbox is listed as a namespace not owned by Docker")
		}
	}
	if len(l.NoVeth) != 0 {
		t.Errorf("containers without a veth: %+v", l.NoVeth)
	}
	var buf bytes.Buffer
	if err := l.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "br0 (ifindex 2, overlay network ht-ov") || !strings.Contains(strings.Join(strings.Fields(out), " "), "veth1(32) <-> eth0(40) web") ||
		!strings.Contains(strings.Join(strings.Fields(out), " "), "vxlan0(30) <-> other nodes -") {
		t.Errorf("text:\n%s", out)
	}
}

// TestBuildOverlayUnderlay: a node with another node on the overlay. Its
// vxlan0 sends to 192.0.2.20, routed out of eth0: eth0 is the overlay's
// underlay, traced for VXLAN packets only, and links says so.
func TestBuildOverlayUnderlay(t *testing.T) {
	sc, ds := overlayScan()
	sc.Host.Links = append(sc.Host.Links, linkInfo{Name: "eth0", Index: 2, Type: "device", PeerNsid: -1})
	for i, l := range sc.Others[0].Links {
		if l.Name == "vxlan0" {
			sc.Others[0].Links[i].Tunnel = &topology.Tunnel{VNI: 4097, Port: 4789, Remotes: []netip.Addr{netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("192.0.2.21")}, Underlays: []uint32{2}}
		}
	}
	for i := range ds.Networks {
		if ds.Networks[i].Name == "ht-ov" {
			ds.Networks[i].Nodes = []topology.Node{{Name: "node-b", Addr: netip.MustParseAddr("192.0.2.20")}, {Name: "node-a", Addr: netip.MustParseAddr("192.0.2.10")}}
		}
	}
	s := build(sc, ds, time.Unix(0, 0))
	ix := topology.NewIndex(s)
	if got := fmt.Sprint(s.Nodes); got != "[{node-a 192.0.2.10} {node-b 192.0.2.20}]" {
		t.Errorf("nodes %s, want node-a and node-b by address", got)
	}
	if n, ok := ix.NodeName(netip.MustParseAddr("192.0.2.20")); !ok || n != "node-b" {
		t.Errorf("node at 192.0.2.20: %q %v", n, ok)
	}
	if tun, ok := s.Tunnel(key(sboxIno, 30)); !ok || tun.VNI != 4097 || tun.Network != "ht-ov" || fmt.Sprint(tun.Underlays) != "[2]" {
		t.Errorf("vxlan0's tunnel: %+v", tun)
	}
	if e, ok := ix.Lookup(key(sboxIno, 30)); !ok || e.Driver != topology.DriverOverlay || e.Role != topology.RoleHost {
		t.Errorf("vxlan0: %+v", e)
	}
	underlay := func(is []Interface) string {
		var out []string
		for _, i := range is {
			if i.TunnelPort != 0 {
				out = append(out, fmt.Sprintf("%s@%s:%d", i.Name, i.NetnsPath, i.TunnelPort))
			}
		}
		return strings.Join(out, " ")
	}
	if got := underlay(InterfacesOf(s, Selection{ContainerSide: true})); got != "eth0@:4789" {
		t.Errorf("all: underlays %q, want eth0@:4789", got)
	}
	if got := underlay(InterfacesOf(s, Selection{Limit: true, Networks: []string{"ht-ov"}})); got != "eth0@:4789" {
		t.Errorf("ht-ov: underlays %q, want eth0@:4789", got)
	}
	if got := underlay(InterfacesOf(s, Selection{Limit: true, Bridges: []string{"docker_gwbridge"}})); got != "" {
		t.Errorf("docker_gwbridge alone: underlays %q, want none", got)
	}
	// Becoming an underlay changes how an interface is attached.
	plain := Interface{Key: key(hostIno, 2), Name: "eth0"}
	under := plain
	under.TunnelPort = 4789
	if added, removed := DiffInterfaces([]Interface{plain}, []Interface{under}); len(added) != 1 || len(removed) != 1 {
		t.Errorf("diff plain -> underlay: added %v removed %v", added, removed)
	}

	l := LinksOf(s)
	var tun *LinkTunnel
	for _, b := range l.Bridges {
		for _, p := range b.Ports {
			if p.Tunnel != nil {
				tun = p.Tunnel
			}
		}
	}
	if tun == nil || tun.VNI != 4097 || tun.Port != 4789 || fmt.Sprint(tun.Remotes) != "[192.0.2.20 192.0.2.21]" || fmt.Sprint(tun.Underlays) != "[eth0]" ||
		fmt.Sprint(tun.Nodes) != "map[192.0.2.20:node-b]" {
		t.Fatalf("links tunnel: %+v", tun)
	}
	var buf bytes.Buffer
	if err := l.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if out := strings.Join(strings.Fields(buf.String()), " "); !strings.Contains(out, "VXLAN VNI 4097, UDP 4789, to node-b 192.0.2.20, 192.0.2.21 via eth0") {
		t.Errorf("text:\n%s", buf.String())
	}
}
