package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/exchange"
	"github.com/hoptrace/hoptrace/tracer/latency"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// slowCGI installs /www/cgi-bin/slow in the web container: a CGI script
// that sleeps 50ms before it answers (busybox httpd runs CGI scripts from
// <home>/cgi-bin and sends nothing before the script's first output).
func slowCGI(t *testing.T, web string) {
	t.Helper()
	script := "#!/bin/sh\nsleep 0.05\necho Content-Type: text/plain\necho\necho ok\n"
	if _, err := testenv.Exec(web, "sh", "-c",
		`busybox mkdir -p /www/cgi-bin && printf '%s' "$0" >/www/cgi-bin/slow && busybox chmod 755 /www/cgi-bin/slow`, script); err != nil {
		t.Fatal(err)
	}
}

// latencyJSON is the part of `latency -o json` these tests read.
type latencyJSON struct {
	Type        string                     `json:"type"`
	Exchanges   []latency.ExchangeReport   `json:"exchanges"`
	Retransmits []latency.RetransmitReport `json:"retransmits"`
}

func parseLatency(t *testing.T, out []byte) latencyJSON {
	t.Helper()
	var r latencyJSON
	if err := json.Unmarshal(out, &r); err != nil || r.Type != "latency" {
		t.Fatalf("latency JSON: %v\n%s", err, out)
	}
	return r
}

// exchangeOf finds the exchanges client -> server:port over TCP.
func exchangeOf(t *testing.T, r latencyJSON, client, server string, port uint16) latency.ExchangeReport {
	t.Helper()
	for _, e := range r.Exchanges {
		if e.Client == client && e.Server == server && e.Port == port && e.Proto == "tcp" {
			return e
		}
	}
	t.Fatalf("no exchanges %s -> %s:%d in %+v", client, server, port, r.Exchanges)
	return latency.ExchangeReport{}
}

// TestExchangesSlowCGI: ten fetches of a CGI that takes 50ms, recorded.
// From the recording, latency's exchanges client -> web:8080 put the time
// in the server (p50 >= 40ms), not in the network (p50 <= 5ms); a live
// latency running alongside counts the same exchanges, and trace
// --exchanges prints one line for each.
func TestExchangesSlowCGI(t *testing.T) {
	web, client := webAndClient(t)
	slowCGI(t, web.Name)
	file := filepath.Join(t.TempDir(), "cgi.hop")
	rec := startHoptrace(t, "record", "-w", file, "-q", "-C", client.Name, "-C", web.Name)
	live := startHoptrace(t, "latency", "-o", "json", "-C", client.Name, "-C", web.Name)
	lines := startHoptrace(t, "trace", "--exchanges", "-o", "json", "-C", client.Name)
	const n = 10
	url := fmt.Sprintf("http://%s:8080/cgi-bin/slow", web.IP())
	for i := 0; i < n; i++ {
		if err := wget(client.Name, url); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // let the journeys finish (grace + drain)
	for _, p := range []*proc{rec, live, lines} {
		if err := p.stop(t); err != nil {
			t.Fatalf("%v: %v\n%s", p.cmd.Args, err, p.stderr)
		}
	}

	var stderr strings.Builder
	cmd := exec.Command(hoptraceBinary(t), "latency", "-o", "json", file)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("latency %s: %v\n%s", file, err, stderr.String())
	}
	recorded := exchangeOf(t, parseLatency(t, out), client.Name, web.Name, 8080)
	t.Logf("from the recording: %+v", recorded)
	if recorded.Count != n || recorded.NetworkCount != n || recorded.Handshakes != n {
		t.Errorf("%d exchanges (%d with network time), %d handshakes; want %d each", recorded.Count, recorded.NetworkCount, recorded.Handshakes, n)
	}
	if p50 := recorded.ServerTime.P50; p50 < 40*time.Millisecond {
		t.Errorf("server time p50 %v, want >= 40ms (the CGI sleeps 50ms)", p50)
	}
	if p50 := recorded.Network.P50; p50 > 5*time.Millisecond {
		t.Errorf("network time p50 %v, want <= 5ms", p50)
	}
	if h := recorded.Handshake; h == nil || h.P50 > 5*time.Millisecond {
		t.Errorf("handshake %+v: want SYN in -> SYN-ACK out well under 5ms", h)
	}

	// Live, the same exchanges (the two captures' clocks read a few ns
	// apart at each hook, so the times agree closely, not to the ns).
	lv := exchangeOf(t, parseLatency(t, live.stdout.Bytes()), client.Name, web.Name, 8080)
	if lv.Count != recorded.Count || lv.Handshakes != recorded.Handshakes || lv.NetworkCount != recorded.NetworkCount {
		t.Errorf("live %+v, recorded %+v: want the same counts", lv, recorded)
	}
	if d := lv.ServerTime.P50 - recorded.ServerTime.P50; d > 2*time.Millisecond || d < -2*time.Millisecond {
		t.Errorf("server p50 live %v, recorded %v", lv.ServerTime.P50, recorded.ServerTime.P50)
	}

	// trace --exchanges: a line per request and per handshake.
	var requests, handshakes int
	for _, line := range splitLines(lines.stdout.Bytes()) {
		var e exchange.JSONLine
		if err := json.Unmarshal(line, &e); err != nil || e.Type != "exchange" {
			t.Fatalf("not an exchange line: %q (%v)", line, err)
		}
		if e.Client != client.Name || e.Server != web.Name || e.Port != 8080 {
			continue
		}
		switch e.Kind {
		case "request":
			requests++
			if e.ServerNS < int64(40*time.Millisecond) || e.ResponseNS == nil {
				t.Errorf("exchange line %+v: want a server time >= 40ms and the response seen", e)
			}
		case "handshake":
			handshakes++
		}
	}
	if requests != n || handshakes != n {
		t.Errorf("trace --exchanges: %d requests, %d handshakes, want %d each:\n%s", requests, handshakes, n, lines.stdout)
	}
}
