package testenv

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// Image is the local image every Docker test uses; vmtests/testbed.sh imports
// it from Debian's busybox-static (there is no registry).
const Image = "busybox:local"

// NoDockerEnv names the environment variable that declares "no Docker here".
const NoDockerEnv = "HOPTRACE_NO_DOCKER"

// Container is a real Docker container made for a test.
type Container struct {
	Name string
	ID   string
	PID  int
	// IPs by network name.
	IPs map[string]netip.Addr
}

// IP is the container's address on docker0's "bridge" network, or on its only network.
func (c Container) IP() netip.Addr {
	if ip, ok := c.IPs["bridge"]; ok {
		return ip
	}
	for _, ip := range c.IPs {
		return ip
	}
	return netip.Addr{}
}

// RequireDocker skips (or fails under CI) unless root and a Docker daemon
// answers; it imports busybox:local if missing.
//
// NoDockerEnv set to 1 skips Docker tests; under CI only where "docker" is
// declared absent ($HOPTRACE_ABSENT), as the vmtests VMs do: they have no
// Docker and no network, and run with CI=true so the netns tests there
// still fail rather than skip.
func RequireDocker(t testing.TB) {
	t.Helper()
	if os.Getenv(NoDockerEnv) == "1" {
		Lacks(t, "docker", NoDockerEnv+"=1: no Docker here; Docker tests run on the host")
	}
	RequireRoot(t)
	RequireCommand(t, "docker")
	if out, err := exec.Command("docker", "info", "-f", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		SkipOrFail(t, "no Docker daemon answers (run vmtests/testbed.sh): "+strings.TrimSpace(string(out)))
	}
	if exec.Command("docker", "image", "inspect", Image).Run() != nil {
		importBusybox(t)
	}
}

func importBusybox(t testing.TB) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		SkipOrFail(t, "image "+Image+" missing and no busybox to build it (run vmtests/testbed.sh)")
	}
	d := t.TempDir()
	for _, sub := range []string{"bin", "tmp", "www"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "www", "index.html"), []byte("hello from hoptrace test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Command(t, "cp", bb, filepath.Join(d, "bin", "busybox"))
	for _, c := range []string{"sh", "ping", "nc", "wget", "httpd", "sleep", "ip", "cat", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(d, "bin", c)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("sh", "-c", "tar -C "+d+" -c . | docker import - "+Image)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import %s: %v: %s", Image, err, out)
	}
}

// UniqueName returns a container/network name unique to this test run.
func UniqueName(prefix string) string { return prefix + "-" + randHex(3) }

// RunContainer starts a detached container from busybox:local and removes it
// (forcefully) when the test ends. dockerArgs go before the image (e.g.
// "--network", "mynet"); cmd is the container's command.
func RunContainer(t testing.TB, name string, dockerArgs []string, cmd ...string) Container {
	t.Helper()
	args := append([]string{"run", "-d", "--name", name}, dockerArgs...)
	args = append(args, Image)
	args = append(args, cmd...)
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	Command(t, "docker", args...)
	return InspectContainer(t, name)
}

// InspectContainer reads a running container's ID, PID and addresses.
func InspectContainer(t testing.TB, name string) Container {
	t.Helper()
	var out string
	// The network may still be coming up right after start.
	for i := 0; i < 50; i++ {
		out = strings.TrimSpace(Command(t, "docker", "inspect", "-f",
			`{{.Id}} {{.State.Pid}}{{range $k, $v := .NetworkSettings.Networks}} {{$k}}={{$v.IPAddress}}{{end}}`, name))
		if !strings.Contains(out, "=<no value>") && !strings.HasSuffix(out, "=") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	f := strings.Fields(out)
	if len(f) < 2 {
		t.Fatalf("docker inspect %s: unexpected %q", name, out)
	}
	pid, _ := strconv.Atoi(f[1])
	c := Container{Name: name, ID: f[0], PID: pid, IPs: map[string]netip.Addr{}}
	for _, kv := range f[2:] {
		k, v, _ := strings.Cut(kv, "=")
		if ip, err := netip.ParseAddr(v); err == nil {
			c.IPs[k] = ip
		}
	}
	return c
}

// CreateNetwork creates a user-defined bridge network, removed when the test ends.
func CreateNetwork(t testing.TB, name string) {
	t.Helper()
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", name).Run() })
	Command(t, "docker", "network", "create", "--driver", "bridge", name)
}

// Exec runs a command inside a container and returns its combined output.
func Exec(name string, cmd ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"exec", name}, cmd...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker exec %s %v: %w: %s", name, cmd, err, out)
	}
	return string(out), nil
}

// NetnsPath is the path of a running container's network namespace.
func (c Container) NetnsPath() string { return fmt.Sprintf("/proc/%d/ns/net", c.PID) }

// SwarmNode makes this Docker a single-node Swarm manager for the test:
// `docker swarm init` advertising the host's own address (a node alone
// sends nothing anywhere), with its networks from 10.213.0.0/16. When the
// test ends it leaves the swarm and removes docker_gwbridge, which leaving
// keeps. A Docker already in a swarm is used as it is, and left so.
func SwarmNode(t testing.TB) {
	t.Helper()
	state := strings.TrimSpace(Command(t, "docker", "info", "-f", "{{.Swarm.LocalNodeState}}"))
	if state == "active" {
		return
	}
	addr := ownAddr(t)
	t.Cleanup(func() {
		_ = exec.Command("docker", "swarm", "leave", "--force").Run()
		_ = exec.Command("docker", "network", "rm", "docker_gwbridge").Run()
	})
	Command(t, "docker", "swarm", "init", "--advertise-addr", addr.String(), "--default-addr-pool", "10.213.0.0/16")
}

// ownAddr is an IPv4 address of this host's own: the one of the interface
// of its default route, else of any up interface but loopback.
func ownAddr(t testing.TB) netip.Addr {
	t.Helper()
	var links []int
	if routes, err := netlink.RouteList(nil, netlink.FAMILY_V4); err == nil {
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				links = append(links, r.LinkIndex)
			}
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list addresses: %v", err)
	}
	var any netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok || ip.IsLoopback() || !ip.IsGlobalUnicast() {
			continue
		}
		for _, l := range links {
			if a.LinkIndex == l {
				return ip
			}
		}
		if !any.IsValid() {
			any = ip
		}
	}
	if !any.IsValid() {
		t.Fatal("no IPv4 address of this host's own to advertise a swarm on")
	}
	return any
}
