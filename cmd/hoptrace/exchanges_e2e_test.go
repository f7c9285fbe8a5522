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

// linkJSON is the part of a journey line the retransmission test reads.
type linkJSON struct {
	Type         string  `json:"type"`
	ID           uint64  `json:"id"`
	Summary      string  `json:"summary"`
	Verdict      string  `json:"verdict"`
	RetransmitOf *uint64 `json:"retransmit_of"`
	AfterNS      *int64  `json:"retransmit_after_ns"`
	Packet       *struct {
		Src, Dst string
		SrcPort  uint16 `json:"src_port"`
		DstPort  uint16 `json:"dst_port"`
		TCPFlags string `json:"tcp_flags"`
		Seq      uint32
	} `json:"packet"`
	Drop *struct {
		Reason string `json:"reason"`
	} `json:"drop"`
}

func linkLines(t *testing.T, out []byte) []linkJSON {
	t.Helper()
	var js []linkJSON
	for _, line := range splitLines(out) {
		var j linkJSON
		if err := json.Unmarshal(line, &j); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		if j.Type == "journey" {
			js = append(js, j)
		}
	}
	return js
}

// links checks every retransmit_of in js and returns them as text that
// does not depend on journey IDs: "retransmission -> what it repeats".
func links(t *testing.T, js []linkJSON) []string {
	t.Helper()
	byID := map[uint64]*linkJSON{}
	for i := range js {
		byID[js[i].ID] = &js[i]
	}
	var out []string
	for _, j := range js {
		if j.RetransmitOf == nil {
			continue
		}
		of := byID[*j.RetransmitOf]
		switch {
		case of == nil:
			t.Errorf("journey %d (%s) retransmits #%d, which is not in the output", j.ID, j.Summary, *j.RetransmitOf)
			continue
		case *j.RetransmitOf >= j.ID || j.AfterNS == nil || *j.AfterNS <= 0:
			t.Errorf("journey %d (%s): retransmit_of %d after %v: want an earlier journey, a positive delay", j.ID, j.Summary, *j.RetransmitOf, j.AfterNS)
		case j.Packet == nil || of.Packet == nil || j.Packet.Seq != of.Packet.Seq || j.Packet.Src != of.Packet.Src ||
			j.Packet.SrcPort != of.Packet.SrcPort || j.Packet.Dst != of.Packet.Dst || j.Packet.DstPort != of.Packet.DstPort:
			t.Errorf("journey %d (%s) links to %d (%s): not the same segment", j.ID, j.Summary, of.ID, of.Summary)
		}
		out = append(out, j.Summary+" -> "+of.Summary+" "+of.Verdict)
	}
	return out
}

// TestRetransmitsLinkToDrops: an iptables rule drops every third packet
// from client to web:8080; the journeys of their retransmissions link to
// the dropped journeys (JSON retransmit_of, and the text note), live and
// in a replay of the recording.
func TestRetransmitsLinkToDrops(t *testing.T) {
	web, client := webAndClient(t)
	testenv.RequireCommand(t, "iptables")
	rule := []string{"DOCKER-USER", "-s", client.IP().String(), "-d", web.IP().String(), "-p", "tcp", "--dport", "8080",
		"-m", "statistic", "--mode", "nth", "--every", "3", "--packet", "0", "-j", "DROP"}
	testenv.Command(t, "iptables", append([]string{"-I"}, rule...)...)
	t.Cleanup(func() {
		if out, err := exec.Command("iptables", append([]string{"-D"}, rule...)...).CombinedOutput(); err != nil {
			t.Errorf("remove the DOCKER-USER rule: %v: %s", err, out)
		}
	})
	// The recorder prints what it records (the live view of the very
	// events the replay reads); a text trace runs alongside.
	file := filepath.Join(t.TempDir(), "drops.hop")
	live := startHoptrace(t, "record", "-w", file, "-q", "--print", "-o", "json", "-C", client.Name, "-C", web.Name)
	text := startHoptrace(t, "trace", "--no-color", "-C", client.Name, "-C", web.Name)
	url := fmt.Sprintf("http://%s:8080/", web.IP())
	for i := 0; i < 5; i++ {
		if err := wget(client.Name, url); err != nil {
			t.Logf("wget %d: %v (a fetch may give up while its packets are dropped)", i, err)
		}
	}
	time.Sleep(time.Second) // retransmissions still on their way, then grace and drain
	for _, p := range []*proc{live, text} {
		if err := p.stop(t); err != nil {
			t.Fatalf("%v: %v\n%s", p.cmd.Args, err, p.stderr)
		}
	}

	js := linkLines(t, live.stdout.Bytes())
	got := links(t, js)
	toDrops := 0
	for _, l := range got {
		if strings.HasSuffix(l, " dropped") {
			toDrops++
		}
	}
	t.Logf("%d retransmissions linked, %d of them to a dropped journey", len(got), toDrops)
	if toDrops == 0 {
		t.Fatalf("no retransmission links to a dropped journey; links:\n%s", strings.Join(got, "\n"))
	}
	// Every dropped SYN or data segment from client to web was sent again,
	// and its retransmission says so.
	linked := map[uint64]bool{}
	for _, j := range js {
		if j.RetransmitOf != nil {
			linked[*j.RetransmitOf] = true
		}
	}
	for _, j := range js {
		p := j.Packet
		if j.Drop == nil || j.Verdict != "dropped" || p == nil || p.Dst != web.IP().String() || p.DstPort != 8080 {
			continue
		}
		if j.Drop.Reason != "NETFILTER_DROP" {
			t.Errorf("journey %d (%s) dropped for %s, want NETFILTER_DROP", j.ID, j.Summary, j.Drop.Reason)
		}
		if (strings.Contains(p.TCPFlags, "S") || strings.Contains(p.TCPFlags, "P")) && !linked[j.ID] {
			t.Errorf("dropped journey %d (%s) has no retransmission linked to it", j.ID, j.Summary)
		}
	}

	// The text says it on the retransmission's line.
	found := false
	for _, line := range strings.Split(text.stdout.String(), "\n") {
		if strings.Contains(line, "retransmit of #") && strings.Contains(line, "DROPPED at ") && strings.Contains(line, ": NETFILTER_DROP)") {
			found = true
			break
		}
	}
	if !found {
		t.Errorf("no text line says 'retransmit of #N after ... (#N DROPPED at ...: NETFILTER_DROP)':\n%s", text.stdout)
	}

	// A replay of the recording links the same segments. (The recording
	// holds whatever else crossed the bridge: select as the trace did.)
	sel := []string{"-C", client.Name, "-C", web.Name}
	var stderr strings.Builder
	cmd := exec.Command(hoptraceBinary(t), append([]string{"replay", "-o", "json", file}, sel...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	replayed := links(t, linkLines(t, out))
	if strings.Join(replayed, "\n") != strings.Join(got, "\n") {
		t.Errorf("replay links differ from the live view's:\nreplay:\n%s\nlive:\n%s", strings.Join(replayed, "\n"), strings.Join(got, "\n"))
	}

	// latency counts them, per path and in the exchanges' connections.
	stderr.Reset()
	cmd = exec.Command(hoptraceBinary(t), append([]string{"latency", "-o", "json", file}, sel...)...)
	cmd.Stderr = &stderr
	if out, err = cmd.Output(); err != nil {
		t.Fatalf("latency: %v\n%s", err, stderr.String())
	}
	r := parseLatency(t, out)
	var counted uint64
	var cost int64
	for _, rt := range r.Retransmits {
		counted += rt.Count
		cost += rt.TotalNS
	}
	if counted != uint64(len(got)) || cost <= 0 {
		t.Errorf("latency counts %d retransmissions costing %v, want %d: %+v", counted, time.Duration(cost), len(got), r.Retransmits)
	}
}
