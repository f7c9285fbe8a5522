package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A testbed is the pair of endpoints the workloads run between: a client and a
// server network namespace joined by a bridge, and the interfaces whose packet
// counters are the ground truth for the tracers' hop counts.
type testbed interface {
	name() string
	setup(ctx context.Context) error
	teardown() error
	// inClient and inServer run a command inside that namespace, pinned to cpu.
	inClient(ctx context.Context, cpu int, args ...string) *exec.Cmd
	inServer(ctx context.Context, cpu int, args ...string) *exec.Cmd
	serverIP() string
	// hoptraceArgs are the flags that make hoptrace trace this bed.
	hoptraceArgs() []string
	// counters sums rx+tx packets over the interfaces hoptrace hooks here
	// (all) and over those in the host's namespace only (host, what tcpdump
	// -i any sees).
	counters() (all, host uint64, err error)
	// describe says which interfaces are counted and how many of them a
	// packet between the two endpoints crosses.
	describe() string
	notes() []string
	// hookPoints are the interfaces hoptrace hooks here, for the floor.
	hookPoints() []hookPoint
	// healthy says whether the bed is still there (something may restart
	// dockerd, which stops every container).
	healthy(ctx context.Context) error
	// others counts the containers running beside the bed's own: hoptrace
	// traces them too, and their packets are not in the counters.
	others(ctx context.Context) int
}

// iface is one interface whose counters count: in the host's namespace when
// h is nil.
type iface struct {
	name string
	h    *netlink.Handle
}

func (i iface) packets() (uint64, error) {
	var l netlink.Link
	var err error
	if i.h == nil {
		l, err = netlink.LinkByName(i.name)
	} else {
		l, err = i.h.LinkByName(i.name)
	}
	if err != nil {
		return 0, fmt.Errorf("read counters of %s: %w", i.name, err)
	}
	s := l.Attrs().Statistics
	if s == nil {
		return 0, fmt.Errorf("read counters of %s: no statistics", i.name)
	}
	return s.RxPackets + s.TxPackets, nil
}

func sumCounters(ifs []iface) (all, host uint64, err error) {
	for _, i := range ifs {
		n, err := i.packets()
		if err != nil {
			return 0, 0, err
		}
		all += n
		if i.h == nil {
			host += n
		}
	}
	return all, host, nil
}

// sh runs a command for setup or teardown and returns its error with its output.
func sh(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func shOut(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// dockerBed: two busybox:local containers on docker0; hoptrace as a user runs
// it (every Docker bridge, veths and each container's eth0).
type dockerBed struct {
	cliPID, srvPID int
	srvAddr        string
	handles        []*netlink.Handle
	nss            []netns.NsHandle
	ifs            []iface
	ifNames        []string
	points         []hookPoint
	othersAtStart  int
}

const (
	benchClient = "ht-bench-client"
	benchServer = "ht-bench-server"
)

func (d *dockerBed) name() string {
	return "Docker: containers " + benchClient + " and " + benchServer + " on docker0"
}

func (d *dockerBed) setup(ctx context.Context) error {
	if err := sh(ctx, "docker", "image", "inspect", "busybox:local"); err != nil {
		return fmt.Errorf("no busybox:local image or no Docker (run make testbed): %w", err)
	}
	_ = sh(ctx, "docker", "rm", "-f", benchClient, benchServer)
	for _, c := range []string{benchServer, benchClient} {
		if err := sh(ctx, "docker", "run", "-d", "--name", c, "--network", "bridge", "busybox:local", "sleep", "86400"); err != nil {
			return err
		}
	}
	var err error
	if d.srvPID, err = containerPID(ctx, benchServer); err != nil {
		return err
	}
	if d.cliPID, err = containerPID(ctx, benchClient); err != nil {
		return err
	}
	if d.srvAddr, err = shOut(ctx, "docker", "inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", benchServer); err != nil {
		return err
	}
	d.othersAtStart = d.others(ctx)
	d.ifs = []iface{{name: "docker0"}}
	d.ifNames = []string{"docker0"}
	d.points = []hookPoint{{name: "docker0"}}
	for _, c := range []struct {
		name string
		pid  int
	}{{benchClient, d.cliPID}, {benchServer, d.srvPID}} {
		ns, err := netns.GetFromPid(c.pid)
		if err != nil {
			return fmt.Errorf("netns of %s: %w", c.name, err)
		}
		d.nss = append(d.nss, ns)
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			return fmt.Errorf("netlink in %s: %w", c.name, err)
		}
		d.handles = append(d.handles, h)
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("eth0 of %s: %w", c.name, err)
		}
		peer, err := netlink.LinkByIndex(eth0.Attrs().ParentIndex)
		if err != nil {
			return fmt.Errorf("host veth of %s (ifindex %d): %w", c.name, eth0.Attrs().ParentIndex, err)
		}
		d.ifs = append(d.ifs, iface{name: peer.Attrs().Name}, iface{name: "eth0", h: h})
		d.ifNames = append(d.ifNames, peer.Attrs().Name, c.name+":eth0")
		d.points = append(d.points, hookPoint{name: peer.Attrs().Name},
			hookPoint{netns: fmt.Sprintf("/proc/%d/ns/net", c.pid), name: "eth0"})
	}
	_, _, err = d.counters()
	return err
}

func containerPID(ctx context.Context, name string) (int, error) {
	s, err := shOut(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", name)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("container %s: no PID (%q)", name, s)
	}
	return pid, nil
}

func (d *dockerBed) teardown() error {
	for _, h := range d.handles {
		h.Close()
	}
	for _, ns := range d.nss {
		ns.Close()
	}
	d.handles, d.nss, d.ifs, d.ifNames, d.points = nil, nil, nil, nil, nil
	return sh(context.Background(), "docker", "rm", "-f", benchClient, benchServer)
}

func nsenter(ctx context.Context, pid, cpu int, args []string) *exec.Cmd {
	a := append([]string{"-t", strconv.Itoa(pid), "-n", "taskset", "-c", strconv.Itoa(cpu)}, args...)
	return exec.CommandContext(ctx, "nsenter", a...)
}

func (d *dockerBed) inClient(ctx context.Context, cpu int, args ...string) *exec.Cmd {
	return nsenter(ctx, d.cliPID, cpu, args)
}

func (d *dockerBed) inServer(ctx context.Context, cpu int, args ...string) *exec.Cmd {
	return nsenter(ctx, d.srvPID, cpu, args)
}

func (d *dockerBed) serverIP() string        { return d.srvAddr }
func (d *dockerBed) hookPoints() []hookPoint { return d.points }
func (d *dockerBed) hoptraceArgs() []string  { return nil }
func (d *dockerBed) counters() (uint64, uint64, error) {
	return sumCounters(d.ifs)
}

func (d *dockerBed) describe() string {
	return "rx+tx packets of " + strings.Join(d.ifNames, ", ") +
		" (every hooked interface these two containers use; a packet between them crosses four hooks: client eth0 egress, its host veth ingress, the server's host veth egress, server eth0 ingress; tcpdump -i any sees the two host veths)"
}

func (d *dockerBed) notes() []string {
	if d.othersAtStart > 0 {
		return []string{fmt.Sprintf("%d other containers were running at the start; hoptrace traced them too, so their packets (if any) count in its hops but not in the counters", d.othersAtStart)}
	}
	return nil
}

func (d *dockerBed) healthy(ctx context.Context) error {
	for _, c := range []struct {
		name string
		pid  int
	}{{benchClient, d.cliPID}, {benchServer, d.srvPID}} {
		pid, err := containerPID(ctx, c.name)
		if err != nil {
			return err
		}
		if pid != c.pid {
			return fmt.Errorf("container %s restarted (PID %d, was %d)", c.name, pid, c.pid)
		}
	}
	_, _, err := d.counters()
	return err
}

func (d *dockerBed) others(ctx context.Context) int {
	ids, err := shOut(ctx, "docker", "ps", "-q")
	if err != nil {
		return 0
	}
	return max(0, len(strings.Fields(ids))-2)
}

// netnsBed: two network namespaces on a bridge of the harness's own, no
// Docker; hoptrace traces the two host veths with --no-docker -i.
type netnsBed struct{}

const (
	nsClient  = "htbench-cli"
	nsServer  = "htbench-srv"
	nsBridge  = "htbench0"
	vethCli   = "htbench-c"
	vethSrv   = "htbench-s"
	nsCliAddr = "10.231.77.1"
	nsSrvAddr = "10.231.77.2"
)

func (n *netnsBed) name() string {
	return "network namespaces " + nsClient + " and " + nsServer + " on bridge " + nsBridge + " (no Docker)"
}

func (n *netnsBed) setup(ctx context.Context) error {
	n.teardown() // leftovers of a killed run: all named ours
	steps := [][]string{
		{"ip", "netns", "add", nsClient},
		{"ip", "netns", "add", nsServer},
		{"ip", "link", "add", nsBridge, "type", "bridge"},
		{"ip", "link", "set", nsBridge, "up"},
		// Docker's FORWARD policy is DROP and br_netfilter may pass bridged
		// packets through it: let our bridge's own traffic through.
		{"iptables", "-w", "-I", "FORWARD", "-i", nsBridge, "-o", nsBridge, "-j", "ACCEPT"},
	}
	for _, s := range steps {
		if err := sh(ctx, s...); err != nil {
			return err
		}
	}
	for _, e := range []struct{ ns, veth, addr string }{{nsClient, vethCli, nsCliAddr}, {nsServer, vethSrv, nsSrvAddr}} {
		for _, s := range [][]string{
			{"ip", "link", "add", e.veth, "type", "veth", "peer", "name", "eth0", "netns", e.ns},
			{"ip", "link", "set", e.veth, "master", nsBridge, "up"},
			{"ip", "-n", e.ns, "addr", "add", e.addr + "/24", "dev", "eth0"},
			{"ip", "-n", e.ns, "link", "set", "eth0", "up"},
			{"ip", "-n", e.ns, "link", "set", "lo", "up"},
		} {
			if err := sh(ctx, s...); err != nil {
				return err
			}
		}
	}
	_, _, err := n.counters()
	return err
}

func (n *netnsBed) teardown() error {
	ctx := context.Background()
	var errs []error
	// Delete the veths first: a deleted namespace lets go of its end of a
	// veth only when the kernel gets round to freeing it, which can take a
	// while (the name stays taken until then).
	for _, v := range []string{vethCli, vethSrv} {
		if _, err := netlink.LinkByName(v); err == nil {
			if err := sh(ctx, "ip", "link", "del", v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, ns := range []string{nsClient, nsServer} {
		if sh(ctx, "ip", "netns", "pids", ns) == nil {
			if err := sh(ctx, "ip", "netns", "del", ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if _, err := netlink.LinkByName(nsBridge); err == nil {
		if err := sh(ctx, "ip", "link", "del", nsBridge); err != nil {
			errs = append(errs, err)
		}
	}
	for sh(ctx, "iptables", "-w", "-C", "FORWARD", "-i", nsBridge, "-o", nsBridge, "-j", "ACCEPT") == nil {
		if err := sh(ctx, "iptables", "-w", "-D", "FORWARD", "-i", nsBridge, "-o", nsBridge, "-j", "ACCEPT"); err != nil {
			errs = append(errs, err)
			break
		}
	}
	return errors.Join(errs...)
}

func ipNetnsExec(ctx context.Context, ns string, cpu int, args []string) *exec.Cmd {
	a := append([]string{"netns", "exec", ns, "taskset", "-c", strconv.Itoa(cpu)}, args...)
	return exec.CommandContext(ctx, "ip", a...)
}

func (n *netnsBed) inClient(ctx context.Context, cpu int, args ...string) *exec.Cmd {
	return ipNetnsExec(ctx, nsClient, cpu, args)
}

func (n *netnsBed) inServer(ctx context.Context, cpu int, args ...string) *exec.Cmd {
	return ipNetnsExec(ctx, nsServer, cpu, args)
}

func (n *netnsBed) serverIP() string { return nsSrvAddr }
func (n *netnsBed) hookPoints() []hookPoint {
	return []hookPoint{{name: vethCli}, {name: vethSrv}}
}
func (n *netnsBed) hoptraceArgs() []string {
	return []string{"--no-docker", "-i", vethCli, "-i", vethSrv}
}

func (n *netnsBed) counters() (uint64, uint64, error) {
	return sumCounters([]iface{{name: vethCli}, {name: vethSrv}})
}

func (n *netnsBed) describe() string {
	return "rx+tx packets of " + vethCli + " and " + vethSrv + " (the host veths hoptrace hooks with -i; a packet between the namespaces crosses two hooks)"
}

func (n *netnsBed) notes() []string            { return nil }
func (n *netnsBed) others(context.Context) int { return 0 }
func (n *netnsBed) healthy(context.Context) error {
	_, _, err := n.counters()
	return err
}
