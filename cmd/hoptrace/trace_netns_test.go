package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
			// Only this test's pings: other traffic on the host (another
			// test's flood) must not fill the ring it counts on.
			args = append(args, "icmp", "and", "host", a.IP.String())
			run := startHoptrace(t, args...)
			t.Cleanup(func() {
				if t.Failed() { // everything hoptrace said, to tell why
					t.Logf("hoptrace stdout:\n%s\nstderr:\n%s", run.stdout, run.stderr)
				}
			})
			id := uint16(0x5100 + len(mode))
			if got := a.Ping(t, b.IP, 3, id); got != 3 {
				t.Fatalf("ping: %d/3 replies", got)
			}
			time.Sleep(300 * time.Millisecond)
			if err := run.stop(t); err != nil {
				t.Fatalf("trace: %v\n%s", err, run.stderr)
			}
			js, sum := run.jsonOut(t)
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
				t.Errorf("journeys: %v, want 3 requests and 3 replies", seen)
			}
			if sum == nil || sum.Lost != 0 {
				t.Errorf("summary %+v", sum)
			}
		})
	}
}

// TestTraceClosedPipe: `hoptrace trace --legacy | head -1` ends hoptrace
// cleanly once head exits: exit status 0, nothing on stderr, and no filter
// of ours left behind; so do trace -o json and record -w - (whose reader
// goes away).
func TestTraceClosedPipe(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	for i, args := range [][]string{
		{"trace", "--legacy"},
		{"trace", "-o", "json"},
		{"record", "-w", "-", "--legacy"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			ready := filepath.Join(t.TempDir(), "ready")
			cmd := exec.Command(hoptraceBinary(t), append(args, "--no-docker", "-q", "--ready-file", ready)...)
			var stderr lockedBuffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			for i := 0; i < 200; i++ {
				if _, err := os.Stat(ready); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			id := uint16(0x5200 + 0x10*i)
			a.Ping(t, b.IP, 1, id)
			first, err := bufio.NewReader(out).ReadString('\n')
			if args[0] == "trace" && (err != nil || first == "") {
				t.Fatalf("no journey line: %q %v", first, err)
			}
			out.Close() // as head does after one line
			// The next write fails with EPIPE and ends the capture.
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			for i := 0; i < 50; i++ {
				a.Ping(t, b.IP, 1, id+1)
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("hoptrace after its stdout closed: %v (want exit status 0)\n%s", err, &stderr)
					}
					if stderr.String() != "" {
						t.Errorf("stderr after its stdout closed: %q, want nothing", stderr.String())
					}
					for _, dev := range []string{a.HostVeth, topo.Bridge} {
						for _, dir := range []string{"ingress", "egress"} {
							tc, _ := exec.Command("tc", "filter", "show", "dev", dev, dir).CombinedOutput()
							if strings.Contains(string(tc), fmt.Sprintf("hoptrace-%d.", cmd.Process.Pid)) {
								t.Errorf("filters left on %s %s:\n%s", dev, dir, tc)
							}
						}
					}
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			t.Fatal("hoptrace still running 5s after its stdout was closed")
		})
	}
}
