package main

import (
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// TestTraceFilter: with 'tcp port 8080' the wget's TCP journeys show, and
// the ping and ARP between the same containers do not.
func TestTraceFilter(t *testing.T) {
	web, client := webAndClient(t)
	run := startHoptrace(t, "trace", "-o", "json", "-C", client.Name, "tcp", "port", "8080")
	if out, err := testenv.Exec(client.Name, "busybox", "ping", "-c", "2", "-W", "1", web.IP().String()); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	if err := wget(client.Name, "http://"+web.IP().String()+":8080/"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	js, sum := run.jsonOut(t)
	if sum == nil {
		t.Fatalf("no summary in\n%s", run.stdout)
	}
	cip, wip := client.IP().String(), web.IP().String()
	if len(findTCP(js, cip, wip, "S")) != 1 || len(findTCP(js, wip, cip, "S.")) != 1 {
		t.Fatalf("want the wget's SYN and SYN-ACK journeys in\n%s", run.stdout)
	}
	for _, j := range js {
		p := j.Packet
		if p == nil || p.Proto != "TCP" || (p.SrcPort != 8080 && p.DstPort != 8080) {
			t.Errorf("journey outside 'tcp port 8080': %s", j.Summary)
		}
	}
	t.Logf("%d journeys, all TCP port 8080", len(js))
}
