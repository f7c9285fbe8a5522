package main

import (
	"slices"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// TestTraceNetnsWithoutDocker runs the binary against a plain bridge with
// two namespaces and no Docker (as on a host without docker0, and in the
// VM tests on every kernel): a ping's journeys name the namespaces and the
// veths, in order, both ways.
func TestTraceNetnsWithoutDocker(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	for _, mode := range []string{"auto", "legacy"} {
		t.Run(mode, func(t *testing.T) {
			// The default selection hooks every bridge (this plain one too),
			// its ports and the namespace sides.
			args := []string{"trace", "-o", "json", "--no-docker"}
			if mode == "legacy" {
				args = append(args, "--legacy")
			}
			run := startHoptrace(t, args...)
			id := uint16(0x5100 + len(mode))
			if got := a.Ping(t, b.IP, 3, id); got != 3 {
				t.Fatalf("ping: %d/3 replies", got)
			}
			time.Sleep(300 * time.Millisecond)
			if err := run.stop(t); err != nil {
				t.Fatalf("trace: %v\n%s", err, run.stderr)
			}
			js, sum := jsonLines(t, run.stdout.Bytes())
			want := map[string][]string{
				"echo request": {a.Name + ":eth0", a.HostVeth, b.HostVeth, b.Name + ":eth0"},
				"echo reply":   {b.Name + ":eth0", b.HostVeth, a.HostVeth, a.Name + ":eth0"},
			}
			seen := map[string]int{}
			for _, j := range js {
				p := j.Packet
				if p == nil || p.Proto != "ICMP" || p.ICMPID != id {
					continue
				}
				kind := "echo reply"
				if p.Src == a.IP.String() {
					kind = "echo request"
				}
				seen[kind]++
				if got := labels(&j); !slices.Equal(got, want[kind]) || j.Verdict != "delivered" {
					t.Errorf("%s seq %d: path %v verdict %s, want %v delivered", kind, p.ICMPSeq, got, j.Verdict, want[kind])
				}
			}
			if seen["echo request"] != 3 || seen["echo reply"] != 3 {
				t.Errorf("journeys: %v, want 3 requests and 3 replies\n%s", seen, run.stdout)
			}
			if sum == nil || sum.Lost != 0 {
				t.Errorf("summary %+v", sum)
			}
		})
	}
}
