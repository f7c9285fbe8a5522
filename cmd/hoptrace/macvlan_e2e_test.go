package main

import (
	"encoding/json"
	"os/exec"
	"slices"
	"testing"

	"github.com/hoptrace/hoptrace/resolver"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// TestTraceMacvlan: two containers on a macvlan network (its parent one end
// of a veth pair the test makes; the other end goes nowhere, so nothing
// leaves the machine). There is no veth to a bridge: hoptrace hooks the
// containers' own interfaces and the parent, names both containers and
// the step between them, and `links` lists the network with its parent.
func TestTraceMacvlan(t *testing.T) {
	testenv.RequireDocker(t)
	parent, peer := "htmv"+testenv.UniqueName("")[1:], ""
	peer = parent + "p"
	testenv.Command(t, "ip", "link", "add", parent, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", parent).Run() })
	testenv.Command(t, "ip", "link", "set", parent, "up")
	testenv.Command(t, "ip", "link", "set", peer, "up")
	net := testenv.UniqueName("ht-mv")
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", net).Run() })
	testenv.Command(t, "docker", "network", "create", "-d", "macvlan", "-o", "parent="+parent, "--subnet", "10.213.77.0/24", net)
	web := testenv.RunContainer(t, testenv.UniqueName("ht-web"), []string{"--network", net}, "httpd", "-f", "-p", "8080", "-h", "/www")
	client := testenv.RunContainer(t, testenv.UniqueName("ht-client"), []string{"--network", net}, "sleep", "600")

	run := startHoptrace(t, "trace", "-o", "json", "-C", web.Name)
	if err := wget(client.Name, "http://"+web.IP().String()+":8080/"); err != nil {
		t.Fatal(err)
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	js, _ := run.jsonOut(t)
	syns := findTCP(js, client.IP().String(), web.IP().String(), "S")
	if len(syns) == 0 {
		t.Fatalf("no SYN journey client -> web on the macvlan network:\n%s\n%s", run.stdout, run.stderr)
	}
	j := syns[0]
	// The macvlan driver hands the packet to the parent's queue (its TC
	// egress hook sees it) and from there to web's interface.
	if got, want := labels(&j), []string{client.Name + ":eth0", parent, web.Name + ":eth0"}; !slices.Equal(got, want) || j.Verdict != "delivered" {
		t.Errorf("SYN path %v verdict %s, want %v delivered", got, j.Verdict, want)
	}
	if len(j.Hops) == 3 && j.Hops[1].Action != "through macvlan on "+parent {
		t.Errorf("parent hop says %q, want through macvlan on %s", j.Hops[1].Action, parent)
	}

	out := testenv.Command(t, hoptraceBinary(t), "links", "-o", "json")
	var l resolver.Links
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	var members []string
	for _, n := range l.Parented {
		if n.Network == net && n.Parent == parent && n.Driver == "macvlan" {
			for _, m := range n.Members {
				if m.Container != nil {
					members = append(members, m.Container.Name)
				}
			}
		}
	}
	slices.Sort(members)
	if want := []string{client.Name, web.Name}; !slices.Equal(members, sortedCopy(want)) {
		t.Errorf("links: network %s on %s has %v, want %v", net, parent, members, want)
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	slices.Sort(c)
	return c
}
