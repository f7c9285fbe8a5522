package main

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/resolver"
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
