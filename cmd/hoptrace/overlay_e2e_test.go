package main

import (
	"encoding/json"
	gonet "net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/resolver"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// TestTraceOverlay: on a single-node Swarm, two containers on an attachable
// overlay network talk HTTP. Their packets cross the overlay's bridge (br0)
// inside its sandbox namespace, not a host bridge: the journeys name both
// containers, the sandbox's ports after the network, and the bridge; links
// places both containers on the overlay's bridge.
func TestTraceOverlay(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.SwarmNode(t)
	net := testenv.UniqueName("ht-ov")
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", net).Run() })
	testenv.Command(t, "docker", "network", "create", "-d", "overlay", "--attachable", net)
	web := testenv.RunContainer(t, testenv.UniqueName("ht-web"), []string{"--network", net}, "httpd", "-f", "-p", "8080", "-h", "/www")
	client := testenv.RunContainer(t, testenv.UniqueName("ht-client"), []string{"--network", net}, "sleep", "600")
	webIP, clientIP := web.IPs[net], client.IPs[net]
	if !webIP.IsValid() || !clientIP.IsValid() {
		t.Fatalf("no addresses on %s: web %v, client %v", net, web.IPs, client.IPs)
	}

	run := startHoptrace(t, "trace", "-o", "json", "-C", web.Name, "host", webIP.String())
	if err := wget(client.Name, "http://"+webIP.String()+":8080/"); err != nil {
		t.Fatal(err)
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	js, _ := run.jsonOut(t)
	syns := findTCP(js, clientIP.String(), webIP.String(), "S")
	if len(syns) == 0 {
		t.Fatalf("no SYN journey client -> web on the overlay:\n%s\n%s", run.stdout, run.stderr)
	}
	j := syns[0]
	got := labels(&j)
	if len(got) != 4 || got[0] != client.Name+":eth0" || got[3] != web.Name+":eth0" ||
		!strings.HasPrefix(got[1], net+":veth") || !strings.HasPrefix(got[2], net+":veth") || j.Verdict != "delivered" {
		t.Fatalf("SYN path %v verdict %s, want %s:eth0 -> %s:vethN -> %s:vethM -> %s:eth0 delivered", got, j.Verdict, client.Name, net, net, web.Name)
	}
	for _, h := range j.Hops {
		if h.Network != net || h.Bridge != "br0" {
			t.Errorf("hop %s: network %q bridge %q, want %s and br0", h.Label, h.Network, h.Bridge, net)
		}
	}
	if b := j.Hops[2].Bridged; b == nil || b.Label != "br0("+net+")" {
		t.Errorf("the step between the sandbox's ports: %+v, want br0(%s)", b, net)
	}

	out := testenv.Command(t, hoptraceBinary(t), "links", "-o", "json")
	var l resolver.Links
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	var on []string
	for _, b := range l.Bridges {
		if b.Driver == "overlay" && b.Network == net && b.Name == "br0" && b.NetnsIno != 0 {
			for _, p := range b.Ports {
				if p.Container != nil {
					on = append(on, p.Container.Name)
				}
			}
		}
	}
	slices.Sort(on)
	if want := sortedCopy([]string{client.Name, web.Name}); !slices.Equal(on, want) {
		t.Errorf("links: overlay %s's bridge has %v, want %v:\n%s", net, on, want, out)
	}
	for _, n := range l.Namespaces {
		if n.Source == "docker-overlay" {
			t.Errorf("overlay sandbox %s listed as a namespace not owned by Docker", n.Name)
		}
	}
}

// TestTraceOverlayUnderlay: an overlay network with another node on it.
// The "node" is a namespace of the test's own behind a test bridge, with a
// VXLAN device on the overlay's VNI and a made-up container address; the
// overlay's sandbox is told, as Docker tells it of a peer, that this
// address is at that node (a neighbour and a forwarding entry on vxlan0).
// A ping from the client to it leaves through vxlan0 and crosses the test
// bridge inside VXLAN: the journey ends "left host toward <node> (VNI n)"
// there, the reply's starts "arrived from <node>", with the VNI and the
// node's address decoded from the outer headers. With the tunnel's port
// blocked toward the node, the ping's journey ends dropped at vxlan0.
func TestTraceOverlayUnderlay(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.SwarmNode(t)
	net := testenv.UniqueName("ht-ovu")
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", net).Run() })
	testenv.Command(t, "docker", "network", "create", "-d", "overlay", "--attachable", net)
	client := testenv.RunContainer(t, testenv.UniqueName("ht-client"), []string{"--network", net}, "sleep", "600")
	clientIP := client.IPs[net]
	inspect := func(format string) string {
		return strings.TrimSpace(testenv.Command(t, "docker", "network", "inspect", "-f", format, net))
	}
	vni, err := strconv.Atoi(inspect(`{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}`))
	if err != nil {
		t.Fatalf("the overlay's VNI: %v", err)
	}
	subnet := netip.MustParsePrefix(inspect(`{{(index .IPAM.Config 0).Subnet}}`))
	id := inspect(`{{.Id}}`)
	sandboxes, _ := filepath.Glob("/var/run/docker/netns/*-" + id[:10])
	if len(sandboxes) != 1 || !clientIP.IsValid() || !subnet.Contains(clientIP) {
		t.Fatalf("overlay %s: sandboxes %v, client address %v in %v", net, sandboxes, clientIP, subnet)
	}
	clientMAC, err := gonet.ParseMAC(strings.TrimSpace(testenv.Command(t, "docker", "inspect", "-f",
		`{{(index .NetworkSettings.Networks "`+net+`").MacAddress}}`, client.Name)))
	if err != nil {
		t.Fatalf("client's MAC: %v", err)
	}

	// The other node, and a container address of its.
	topo := testenv.NewTopology(t, 1)
	node, hostSide := topo.Hosts[0], topo.BridgeIP()
	far := subnet.Addr().As4()
	far[3] = 250
	remote := netip.AddrFrom4(far)
	remoteMAC := gonet.HardwareAddr{0x02, 0x42, 0x0a, 0xfa, 0xfa, 0xfa}
	if err := node.Do(func() error {
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx0", HardwareAddr: remoteMAC}, VxlanId: vni,
			VtepDevIndex: node.IfaceIndex, SrcAddr: node.IP.AsSlice(), Group: hostSide.AsSlice(), Port: 4789}
		if err := netlink.LinkAdd(vx); err != nil {
			return err
		}
		lnk, err := netlink.LinkByName("vx0")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(lnk, &netlink.Addr{IPNet: &gonet.IPNet{IP: remote.AsSlice(), Mask: gonet.CIDRMask(subnet.Bits(), 32)}}); err != nil {
			return err
		}
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: lnk.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: clientIP.AsSlice(), HardwareAddr: clientMAC}); err != nil {
			return err
		}
		return netlink.LinkSetUp(lnk)
	}); err != nil {
		t.Fatalf("the other node's vxlan: %v", err)
	}
	if err := testenv.Do(sandboxes[0], func() error {
		lnk, err := netlink.LinkByName("vxlan0")
		if err != nil {
			return err
		}
		i := lnk.Attrs().Index
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: i, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: remote.AsSlice(), HardwareAddr: remoteMAC}); err != nil {
			return err
		}
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: i, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT,
			IP: node.IP.AsSlice(), HardwareAddr: remoteMAC})
	}); err != nil {
		t.Fatalf("telling the sandbox of the other node: %v", err)
	}

	run := startHoptrace(t, "trace", "-o", "json", "-C", client.Name, "icmp and host "+remote.String())
	if _, err := testenv.Exec(client.Name, "ping", "-c", "2", "-W", "2", remote.String()); err != nil {
		t.Fatalf("ping across the tunnel: %v", err)
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	js, _ := run.jsonOut(t)
	var req, rep *render.JourneyJSON
	for i := range js {
		p := js[i].Packet
		switch {
		case p == nil || p.ICMPType == nil:
		case *p.ICMPType == 8 && p.Src == clientIP.String() && p.Dst == remote.String() && req == nil:
			req = &js[i]
		case *p.ICMPType == 0 && p.Src == remote.String() && p.Dst == clientIP.String() && rep == nil:
			rep = &js[i]
		}
	}
	if req == nil || rep == nil {
		t.Fatalf("no echo request or reply journey (%v, %v):\n%s\n%s", req != nil, rep != nil, run.stdout, run.stderr)
	}
	for _, j := range []*render.JourneyJSON{req, rep} {
		for _, h := range j.Hops {
			t.Logf("%s %s: %s", h.Label, h.Dir, h.Action)
		}
	}
	tunnelOK := func(h render.HopJSON, dir string) bool {
		return h.Dir == dir && h.Tunnel != nil && h.Tunnel.Type == "vxlan" && h.Tunnel.VNI == uint32(vni) && h.Tunnel.Peer == node.IP.String()
	}
	got := labels(req)
	last := req.Hops[len(req.Hops)-1]
	if len(got) != 4 || got[0] != client.Name+":eth0" || got[2] != net+":vxlan0" || !tunnelOK(last, "egress") || req.Verdict != "left-host" ||
		!strings.Contains(last.Action, "left host toward "+node.IP.String()+" (VNI "+strconv.Itoa(vni)+")") {
		t.Fatalf("echo request: path %v verdict %s, last hop %+v tunnel %+v; want %s:eth0 -> %s:vethN -> %s:vxlan0 -> the test bridge, left toward %s (VNI %d)",
			got, req.Verdict, last, last.Tunnel, client.Name, net, net, node.IP, vni)
	}
	got = labels(rep)
	first := rep.Hops[0]
	if len(got) != 4 || got[1] != net+":vxlan0" || got[3] != client.Name+":eth0" || !tunnelOK(first, "ingress") || rep.Verdict != "delivered" ||
		!strings.Contains(first.Action, "arrived from "+node.IP.String()) {
		t.Fatalf("echo reply: path %v verdict %s, first hop %+v tunnel %+v; want the test bridge -> %s:vxlan0 -> %s:vethN -> %s:eth0, arrived from %s",
			got, rep.Verdict, first, first.Tunnel, net, net, client.Name, node.IP)
	}

	// A firewall that blocks the tunnel toward that node: the ping's
	// journey ends in a drop at vxlan0, where its VXLAN packet went.
	rule := []string{"OUTPUT", "-d", node.IP.String(), "-p", "udp", "--dport", "4789", "-j", "DROP"}
	testenv.Command(t, "iptables", append([]string{"-w", "-I"}, rule...)...)
	t.Cleanup(func() { _ = exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).Run() })
	run = startHoptrace(t, "trace", "-o", "json", "-C", client.Name, "icmp and host "+remote.String())
	if _, err := testenv.Exec(client.Name, "ping", "-c", "1", "-W", "1", remote.String()); err == nil {
		t.Fatalf("ping across a blocked tunnel was answered")
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	js, _ = run.jsonOut(t)
	var dropped *render.JourneyJSON
	for i := range js {
		if p := js[i].Packet; p != nil && p.ICMPType != nil && *p.ICMPType == 8 && p.Dst == remote.String() {
			dropped = &js[i]
		}
	}
	if dropped == nil {
		t.Fatalf("no echo request journey through the blocked tunnel:\n%s\n%s", run.stdout, run.stderr)
	}
	if d := dropped.Drop; dropped.Verdict != "dropped" || d == nil || d.Reason != "NETFILTER_DROP" || d.Where != net+":vxlan0" {
		t.Fatalf("echo request through a blocked tunnel: path %v verdict %s drop %+v; want dropped at %s:vxlan0 (NETFILTER_DROP)", labels(dropped), dropped.Verdict, d, net)
	}

	out := testenv.Command(t, hoptraceBinary(t), "links", "-o", "json")
	var l resolver.Links
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	var tun *resolver.LinkTunnel
	for _, b := range l.Bridges {
		for _, p := range b.Ports {
			if b.Network == net && p.Tunnel != nil {
				tun = p.Tunnel
			}
		}
	}
	if tun == nil || tun.VNI != uint32(vni) || !slices.Contains(tun.Remotes, node.IP) || len(tun.Underlays) != 1 {
		t.Errorf("links: the overlay's tunnel %+v, want VNI %d to %s via the test bridge", tun, vni, node.IP)
	}
}
