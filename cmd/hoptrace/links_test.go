package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

func linksJSON(t *testing.T, args ...string) (resolver.Links, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := runLinks(ctx, append([]string{"-o", "json"}, args...), &out, &errb); err != nil {
		t.Fatalf("links: %v\n%s", err, errb.String())
	}
	var l linksObject
	if err := json.Unmarshal(out.Bytes(), &l); err != nil {
		t.Fatalf("decode links output: %v\n%s", err, out.String())
	}
	if l.Type != "links" || l.Schema != linksSchema {
		t.Errorf("links -o json: type %q schema %d, want links and %d", l.Type, l.Schema, linksSchema)
	}
	return l.Links, errb.String()
}

func TestLinksUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := runLinks(context.Background(), []string{"--help"}, &out, &errb); !errors.Is(err, errHelp) {
		t.Errorf("--help: %v", err)
	}
	if !strings.Contains(out.String(), "Usage: hoptrace links") || !strings.Contains(out.String(), "--docker-host") {
		t.Errorf("--help printed:\n%s", out.String())
	}
	for _, args := range [][]string{{"-o", "yaml"}, {"--bogus"}, {"extra"}} {
		err := runLinks(context.Background(), args, &out, &errb)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: got %v, want a usage error", args, err)
		}
	}
}

// dockerNet is what `docker inspect` says of one container on one network.
type dockerNet struct {
	NetworkID, IPAddress, MacAddress string
}

func inspectNetworks(t *testing.T, name string) (id string, nets map[string]dockerNet) {
	t.Helper()
	var v []struct {
		ID              string `json:"Id"`
		NetworkSettings struct{ Networks map[string]dockerNet }
	}
	if err := json.Unmarshal([]byte(testenv.Command(t, "docker", "inspect", name)), &v); err != nil || len(v) != 1 {
		t.Fatalf("docker inspect %s: %v", name, err)
	}
	return v[0].ID, v[0].NetworkSettings.Networks
}

// sysNet reads /sys/class/net/<iface>/<attr> inside a container.
func sysNet(t *testing.T, container, iface, attr string) uint32 {
	t.Helper()
	out, err := testenv.Exec(container, "cat", "/sys/class/net/"+iface+"/"+attr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(out), 10, 32)
	if err != nil {
		t.Fatalf("%s %s/%s: %q", container, iface, attr, out)
	}
	return uint32(n)
}

// Two containers on docker0, two on a user-defined network, one on both:
// every veth maps to the right container and network, as docker inspect
// says, with the peer index read inside the container.
func TestLinksDocker(t *testing.T) {
	testenv.RequireDocker(t)
	netName := testenv.UniqueName("ht-links-net")
	testenv.CreateNetwork(t, netName)
	a, b, c, d := testenv.UniqueName("ht-links-a"), testenv.UniqueName("ht-links-b"), testenv.UniqueName("ht-links-c"), testenv.UniqueName("ht-links-d")
	testenv.RunContainer(t, a, nil, "sleep", "600")
	testenv.RunContainer(t, b, nil, "sleep", "600")
	testenv.RunContainer(t, c, []string{"--network", netName}, "sleep", "600")
	testenv.RunContainer(t, d, []string{"--network", netName}, "sleep", "600")
	testenv.Command(t, "docker", "network", "connect", netName, a)

	netID := strings.TrimSpace(testenv.Command(t, "docker", "network", "inspect", "-f", "{{.Id}}", netName))
	bridgeOf := map[string]string{"bridge": "docker0", netName: "br-" + netID[:12]}

	l, stderr := linksJSON(t)
	if !l.DockerAvailable || stderr != "" {
		t.Errorf("docker available %v, stderr %q", l.DockerAvailable, stderr)
	}
	ports := map[string][]resolver.LinkPort{} // by container ID
	networkOf := map[string]string{}          // bridge -> network
	for _, br := range l.Bridges {
		networkOf[br.Name] = br.Network
		for _, p := range br.Ports {
			if p.Container != nil {
				ports[p.Container.ID] = append(ports[p.Container.ID], p)
			}
		}
	}
	for network, bridge := range bridgeOf {
		if networkOf[bridge] != network {
			t.Errorf("bridge %s: network %q, want %q", bridge, networkOf[bridge], network)
		}
	}

	checked := 0
	for _, name := range []string{a, b, c, d} {
		id, nets := inspectNetworks(t, name)
		if len(ports[id]) != len(nets) {
			t.Errorf("%s: %d ports, docker inspect says %d networks", name, len(ports[id]), len(nets))
		}
		for network, dn := range nets {
			var port *resolver.LinkPort
			for i, p := range ports[id] {
				if p.MAC == dn.MacAddress {
					port = &ports[id][i]
				}
			}
			if port == nil {
				t.Errorf("%s on %s: no port with MAC %s in %+v", name, network, dn.MacAddress, ports[id])
				continue
			}
			checked++
			if port.Container.Name != name {
				t.Errorf("%s: port %s names container %q", name, port.Veth, port.Container.Name)
			}
			onBridge := ""
			for _, br := range l.Bridges {
				for _, p := range br.Ports {
					if p.Ifindex == port.Ifindex {
						onBridge = br.Name
					}
				}
			}
			if onBridge != bridgeOf[network] {
				t.Errorf("%s on %s: port %s is on %s, want %s", name, network, port.Veth, onBridge, bridgeOf[network])
			}
			hasIP := false
			for _, p := range port.Addrs {
				hasIP = hasIP || p.Addr().String() == dn.IPAddress
			}
			if !hasIP {
				t.Errorf("%s on %s: addrs %v lack %s", name, network, port.Addrs, dn.IPAddress)
			}
			// Inside the container: the interface's own index and its
			// peer's (iflink) must be the pair links printed.
			if got := sysNet(t, name, port.PeerName, "ifindex"); got != port.PeerIfindex {
				t.Errorf("%s: %s has ifindex %d inside, links says %d", name, port.PeerName, got, port.PeerIfindex)
			}
			if got := sysNet(t, name, port.PeerName, "iflink"); got != port.Ifindex {
				t.Errorf("%s: %s's peer is %d inside, links says veth %s(%d)", name, port.PeerName, got, port.Veth, port.Ifindex)
			}
		}
	}
	if checked != 5 {
		t.Errorf("checked %d veths, want 5", checked)
	}

	var text, errb bytes.Buffer
	if err := runLinks(context.Background(), nil, &text, &errb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"docker0 (ifindex", "network " + netName + ")", a, d} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
	}
}

// With the Docker socket absent, a plain netns topology still resolves
// with names from /run/netns, and the command says Docker was not reachable.
func TestLinksWithoutDocker(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	sock := "unix://" + filepath.Join(t.TempDir(), "docker.sock")
	l, stderr := linksJSON(t, "--docker-host", sock)
	if l.DockerAvailable || !strings.Contains(stderr, "Docker was not reachable") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("docker available %v; stderr:\n%s", l.DockerAvailable, stderr)
	}
	var br *resolver.LinkBridge
	for i := range l.Bridges {
		if l.Bridges[i].Name == topo.Bridge {
			br = &l.Bridges[i]
		}
	}
	if br == nil {
		t.Fatalf("bridge %s missing: %+v", topo.Bridge, l.Bridges)
	}
	if len(br.Ports) != len(topo.Hosts) {
		t.Fatalf("bridge %s: %d ports, want %d", topo.Bridge, len(br.Ports), len(topo.Hosts))
	}
	for i, h := range topo.Hosts {
		p := br.Ports[i]
		if p.Veth != h.HostVeth || p.Netns != h.Name || p.PeerIfindex != uint32(h.IfaceIndex) || p.PeerName != "eth0" || p.MAC != h.MAC.String() {
			t.Errorf("port %d: %+v, want %s <-> %s:eth0(%d)", i, p, h.HostVeth, h.Name, h.IfaceIndex)
		}
	}
	named := map[string]bool{}
	for _, n := range l.Namespaces {
		named[n.Name] = n.Source == "named"
	}
	for _, h := range topo.Hosts {
		if !named[h.Name] {
			t.Errorf("namespace %s not listed as named: %+v", h.Name, l.Namespaces)
		}
	}
}

// Without root the command fails in one clear line instead of printing a
// topology with holes.
func TestLinksNotPermitted(t *testing.T) {
	testenv.RequireRoot(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hoptrace")
	testenv.Command(t, "cp", hoptraceBinary(t), bin)
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin, "links")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitError {
		t.Fatalf("as nobody: %v, want exit %d; stderr: %s", err, exitError, errb.String())
	}
	if !strings.Contains(errb.String(), "not permitted: run as root") || out.Len() != 0 {
		t.Errorf("stdout %q, stderr %q", out.String(), errb.String())
	}
}
