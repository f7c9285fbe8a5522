package resolver

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

func startResolver(t *testing.T, opts Options) *Resolver {
	t.Helper()
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); r.Close() })
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// checkTopology asserts the resolver maps every port of topo to its
// namespace host, named after /run/netns.
func checkTopology(t *testing.T, r *Resolver, topo *testenv.Topology) {
	t.Helper()
	s := r.Snapshot()
	br, ok := topology.NewIndex(s).Lookup(topology.Key{NetnsIno: topo.HostNetnsIno, Ifindex: uint32(topo.BridgeIndex)})
	if !ok || br.Role != topology.RoleBridge || br.Name != topo.Bridge {
		t.Fatalf("bridge %s: got %+v %v", topo.Bridge, br, ok)
	}
	for _, h := range topo.Hosts {
		port, ok := r.Lookup(topology.Key{NetnsIno: topo.HostNetnsIno, Ifindex: uint32(h.HostVethIndex)})
		if !ok {
			t.Fatalf("port %s not found", h.HostVeth)
		}
		if port.Role != topology.RoleHostVeth || port.Bridge != topo.Bridge || port.NetnsName != h.Name ||
			port.PeerNetnsIno != h.NetnsIno || port.PeerIfindex != uint32(h.IfaceIndex) {
			t.Errorf("port %s: got %+v, want peer %s ino %d ifindex %d", h.HostVeth, port, h.Name, h.NetnsIno, h.IfaceIndex)
		}
		in, ok := r.Peer(port.Key())
		if !ok {
			t.Fatalf("peer of %s not found", h.HostVeth)
		}
		if in.Label() != h.Name+":eth0" || in.Role != topology.RoleNetns || in.MAC != h.MAC.String() || in.Bridge != topo.Bridge {
			t.Errorf("inside %s: got %+v (label %s)", h.Name, in, in.Label())
		}
		if !hasAddr(in, h.IP.String()) {
			t.Errorf("inside %s: addrs %v lack %s", h.Name, in.Addrs, h.IP)
		}
		ns, ok := s.Netns(h.NetnsIno)
		if !ok || ns.Source != topology.NetnsNamed || ns.Path != h.Path {
			t.Errorf("netns %s: %+v %v", h.Name, ns, ok)
		}
	}
}

func hasAddr(e topology.Endpoint, ip string) bool {
	for _, a := range e.Addrs {
		if a.Addr().String() == ip {
			return true
		}
	}
	return false
}

func TestNetnsTopologyWithoutDocker(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"disabled", Options{Docker: NoDocker{}}},
		{"socket missing", Options{DockerHost: "unix://" + t.TempDir() + "/docker.sock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startResolver(t, tc.opts)
			checkTopology(t, r, topo)
			s := r.Snapshot()
			if s.DockerAvailable || s.DockerError == "" {
				t.Errorf("docker available %v, error %q", s.DockerAvailable, s.DockerError)
			}
			is := r.Interfaces(Selection{Limit: true, Bridges: []string{topo.Bridge}, ContainerSide: true})
			if len(is) != 1+2*len(topo.Hosts) {
				t.Errorf("interfaces: %+v", is)
			}
			for _, i := range is {
				if i.Role == topology.RoleNetns && !strings.HasPrefix(i.NetnsPath, "/run/netns/") {
					t.Errorf("container side %s has netns path %q", i.Name, i.NetnsPath)
				}
			}
		})
	}
}

// A namespace added while the resolver runs shows up, and a removed one goes.
func TestNetnsTopologyLive(t *testing.T) {
	r := startResolver(t, Options{Docker: NoDocker{}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snaps := r.Subscribe(ctx)

	topo := testenv.NewTopology(t, 1)
	h := topo.Hosts[0]
	want := topology.Key{NetnsIno: topo.HostNetnsIno, Ifindex: uint32(h.HostVethIndex)}
	start := time.Now()
	for !resolved(r, want, h) {
		select {
		case <-snaps:
		case <-ctx.Done():
			t.Fatalf("port %s never resolved to %s:eth0", h.HostVeth, h.Name)
		}
	}
	t.Logf("netns port resolved %v after the topology was built", time.Since(start))
	checkTopology(t, r, topo)
}

// resolved reports whether port k leads to h's eth0 with its address.
func resolved(r *Resolver, k topology.Key, h *testenv.NSHost) bool {
	in, ok := r.Peer(k)
	return ok && in.Label() == h.Name+":eth0" && hasAddr(in, h.IP.String())
}

// A daemon socket that accepts but never answers does not hang Start.
func TestDockerHung(t *testing.T) {
	testenv.RequireRoot(t)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	r := startResolver(t, Options{DockerHost: "unix://" + sock})
	if took := time.Since(start); took > 2*dockerConnectTimeout {
		t.Errorf("Start took %v with a hung daemon", took)
	}
	if s := r.Snapshot(); s.DockerAvailable || s.DockerError == "" {
		t.Errorf("hung daemon: available %v, error %q", s.DockerAvailable, s.DockerError)
	}
}
