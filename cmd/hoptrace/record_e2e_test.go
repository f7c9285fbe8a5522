package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/render"
)

// journeyKey is what must agree between a live view and a replay: the
// packet, the path with names, and the fate.
func journeyKey(j render.JourneyJSON) string {
	reason := ""
	if j.Drop != nil {
		reason = j.Drop.Reason
	}
	return fmt.Sprintf("%s | %s | %s %s", j.Summary, strings.Join(labels(&j), " -> "), j.Verdict, reason)
}

func between(js []render.JourneyJSON, a, b string) []string {
	var out []string
	for _, j := range js {
		if p := j.Packet; p != nil && (p.Src == a && p.Dst == b || p.Src == b && p.Dst == a) {
			out = append(out, journeyKey(j))
		}
	}
	return out
}

// TestRecordReplayMatchesLive: record while client fetches from web, with a
// live trace running alongside; replay -o json gives the same journeys as
// the live views (record --print and trace) for that traffic.
func TestRecordReplayMatchesLive(t *testing.T) {
	web, client := webAndClient(t)
	file := filepath.Join(t.TempDir(), "x.hop")
	rec := startHoptrace(t, "record", "-w", file, "--print", "-o", "json", "-C", client.Name, "--snaplen", "128")
	live := startHoptrace(t, "trace", "-o", "json", "-C", client.Name)
	for i := 0; i < 3; i++ {
		if err := wget(client.Name, "http://"+web.IP().String()+":8080/"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, p := range []*proc{rec, live} {
		if err := p.stop(t); err != nil {
			t.Fatalf("%v: %v\n%s", p.cmd.Args, err, p.stderr)
		}
	}
	var replayErr strings.Builder
	cmd := exec.Command(hoptraceBinary(t), "replay", "-o", "json", file)
	cmd.Stderr = &replayErr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, replayErr.String())
	}
	replayed, _ := jsonLines(t, out)
	printed, _ := jsonLines(t, rec.stdout.Bytes())
	traced, _ := jsonLines(t, live.stdout.Bytes())

	cip, wip := client.IP().String(), web.IP().String()
	r, p, tr := between(replayed, cip, wip), between(printed, cip, wip), between(traced, cip, wip)
	if len(r) < 3*6 { // at least handshake + request + response + close per fetch
		t.Fatalf("replay has only %d journeys between client and web:\n%s", len(r), strings.Join(r, "\n"))
	}
	if strings.Join(r, "\n") != strings.Join(p, "\n") {
		t.Errorf("replay differs from record --print:\nreplay:\n%s\nlive:\n%s", strings.Join(r, "\n"), strings.Join(p, "\n"))
	}
	if strings.Join(r, "\n") != strings.Join(tr, "\n") {
		t.Errorf("replay differs from a concurrent trace:\nreplay:\n%s\ntrace:\n%s", strings.Join(r, "\n"), strings.Join(tr, "\n"))
	}
	if strings.Contains(string(out), "cut short") {
		t.Errorf("a cleanly stopped recording says it was cut short")
	}
}

// TestRecordSIGKILL: a recording whose hoptrace was killed replays up to the
// kill and says it was cut short; the network keeps working; in legacy mode
// `hoptrace cleanup` then removes the filters the dead process left behind.
func TestRecordSIGKILL(t *testing.T) {
	web, client := webAndClient(t)
	url := "http://" + web.IP().String() + ":8080/"
	for _, mode := range []string{"tcx", "legacy"} {
		t.Run(mode, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "killed.hop")
			args := []string{"record", "-w", file, "-C", client.Name}
			if mode == "legacy" {
				args = append(args, "--legacy")
			}
			rec := startHoptrace(t, args...)
			if err := wget(client.Name, url); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond) // past one periodic flush
			if err := rec.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-rec.done

			// The network still works with the dead tracer's hooks (if any) in place.
			if err := wget(client.Name, url); err != nil {
				t.Fatalf("traffic broken after SIGKILL of hoptrace: %v", err)
			}
			cmd := exec.Command(hoptraceBinary(t), "replay", "-o", "json", file)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("replay of killed recording: %v\n%s", err, stderr.String())
			}
			js, _ := jsonLines(t, out)
			if len(between(js, client.IP().String(), web.IP().String())) == 0 {
				t.Errorf("killed recording replays no client<->web journeys")
			}
			if !strings.Contains(stderr.String(), "cut short") && !strings.Contains(stderr.String(), "truncated") {
				t.Errorf("replay does not say the recording was cut short: %q", stderr.String())
			}
			clean, err := exec.Command(hoptraceBinary(t), "cleanup").CombinedOutput()
			if err != nil {
				t.Fatalf("cleanup: %v\n%s", err, clean)
			}
			if mode == "legacy" && strings.HasPrefix(string(clean), "removed 0 ") {
				t.Errorf("cleanup after a killed legacy hoptrace removed nothing: %s", clean)
			}
			// Other hoptrace processes may be tracing this veth too: only the
			// dead one's filters must be gone.
			veth := hostVethOf(t, client.Name)
			dead := fmt.Sprintf("hoptrace-%d.", rec.cmd.Process.Pid)
			for _, dir := range []string{"ingress", "egress"} {
				tc, _ := exec.Command("tc", "filter", "show", "dev", veth, dir).CombinedOutput()
				if strings.Contains(string(tc), dead) {
					t.Errorf("the killed hoptrace's filters remain on %s %s after cleanup:\n%s", veth, dir, tc)
				}
			}
		})
	}
}
