package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseStatTicks(t *testing.T) {
	// comm with a space and a parenthesis; utime 1234, stime 56.
	stat := "4242 (hop trace)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 9 0 100 1000 10\n"
	n, err := parseStatTicks(stat)
	if err != nil || n != 1290 {
		t.Fatalf("got %d, %v; want 1290", n, err)
	}
	if _, err := parseStatTicks("garbage"); err == nil {
		t.Error("no error for garbage")
	}
}

func TestJSONSummary(t *testing.T) {
	out := `{"type":"journey","id":1}
{"type":"summary","journeys":10,"hops":40,"drops":0,"lost":3,"lost_hops":3,"evicted_in_flight":2}
`
	h, l, e, err := jsonSummary(out)
	if err != nil || h != 40 || l != 3 || e != 2 {
		t.Fatalf("got %d %d %d %v", h, l, e, err)
	}
	// On stderr, between notes; the tail of a big file starts mid-line.
	h, _, _, err = jsonSummary("ney\",\"id\":7}\nhoptrace: tracing: 3 interfaces hooked\n{\"type\":\"summary\",\"hops\":7}\nhoptrace: bye\n")
	if err != nil || h != 7 {
		t.Fatalf("on stderr: got %d %v", h, err)
	}
	if _, _, _, err := jsonSummary(`ney","id":7}` + "\n" + `{"type":"journey"}`); err == nil {
		t.Error("a journey taken for the summary")
	}
}

func TestTextSummary(t *testing.T) {
	stderr := `recording to /tmp/x.hop
WARNING: 12 events lost (ring buffer full): 12 hops, 0 drops
journeys 1000 (delivered 990, incomplete 10), hops 3990 in 17.2s
drops 0
events lost 12, packets evicted in flight 5, journeys evicted 0 (in-flight cap), timed out 10
recorded to /tmp/x.hop
`
	h, l, e, err := textSummary(stderr)
	if err != nil || h != 3990 || l != 12 || e != 5 {
		t.Fatalf("got %d %d %d %v", h, l, e, err)
	}
	h, l, e, err = textSummary("hoptrace: tracing: 7 interfaces hooked\nrecorded to x.hop\nrecorded hops 56 in 1.13s\ndrops 15: NOT_SPECIFIED 6\nevents lost 0, packets evicted in flight 1, journeys evicted 0 (in-flight cap), timed out 0\n")
	if err != nil || h != 56 || l != 0 || e != 1 {
		t.Fatalf("recorded hops: got %d %d %d %v", h, l, e, err)
	}
	if _, _, _, err := textSummary("nothing"); err == nil {
		t.Error("no error without a summary")
	}
}

func TestTcpdumpStats(t *testing.T) {
	stderr := `tcpdump: data link type LINUX_SLL2
tcpdump: listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 128 bytes
123456 packets captured
130000 packets received by filter
6544 packets dropped by kernel
`
	c, d, err := tcpdumpStats(stderr)
	if err != nil || c != 123456 || d != 6544 {
		t.Fatalf("got %d %d %v", c, d, err)
	}
}

func TestMedianStat(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median %v", m)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing")
	}
	if s := stat([]float64{0.9, 0.8, 0.85}, "%.2f"); s != "0.85 (0.80–0.90)" {
		t.Errorf("stat %q", s)
	}
	if s := stat(nil, "%.2f"); s != "-" {
		t.Errorf("stat %q", s)
	}
}

func TestRotate(t *testing.T) {
	s := []int{1, 2, 3}
	if got := rotate(s, 4); got[0] != 2 || got[2] != 1 || len(got) != 3 {
		t.Errorf("rotate %v", got)
	}
}

func TestReport(t *testing.T) {
	r := &report{rounds: 2, duration: 5 * time.Second, skipped: map[string]string{"serve": "skipped: no serve"}}
	for _, c := range allConditions() {
		if c.name == "none" || c.name == "record" || c.name == "serve" || c.name == "trace-nomatch" {
			r.conds = append(r.conds, c)
		}
	}
	for round := 1; round <= 2; round++ {
		r.samples = append(r.samples,
			&sample{round: round, cond: "none", w1Gbit: 10, w2RxKpps: 300, w3TPS: 20000, w3P50: 40, w3P99: 80, hops: -1, lost: -1, evicted: -1},
			&sample{round: round, cond: "record", w1Gbit: 8, w2RxKpps: 150 * float64(round), w3TPS: 18000, w3P50: 44, w3P99: 100,
				hops: 900, truth: 1000, lost: 0, evicted: 0, cpuWindowPct: 50, outBytes: 5e6},
			&sample{round: round, cond: "trace-nomatch", w1Gbit: 9, w2RxKpps: 270, w3TPS: 19000, w3P50: 42, w3P99: 90,
				hops: 0, truth: 1000, lost: 0, evicted: 0, filtered: true, outBytes: 300})
	}
	r.finish()
	md := r.markdown()
	for _, want := range []string{
		"| hoptrace record -w FILE | 0.80 (0.80–0.80) | 0.75 (0.50–1.00) | 0.90 (0.90–0.90) | x1.10 (1.10–1.10) | x1.25 (1.25–1.25) |",
		"| hoptrace serve --listen 127.0.0.1:19477 | skipped: no serve |",
		"0.900 (0.900–0.900)",
		"5 (5–5) MB",
		"counted only 90.0%",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "matching nothing (udp port 9): in one round") {
		t.Errorf("a filtered condition got a share note:\n%s", md)
	}
}

func TestParseFlags(t *testing.T) {
	var sb strings.Builder
	o, err := parseFlags([]string{"-quick", "-conditions", "tcpdump,record"}, &sb)
	if err != nil || o.rounds != 2 || o.duration != 2*time.Second || strings.Join(o.conditions, ",") != "none,tcpdump,record" {
		t.Fatalf("%+v %v", o, err)
	}
	if _, err := parseFlags([]string{"-conditions", "bogus"}, &sb); err == nil {
		t.Error("unknown condition accepted")
	}
}

func TestParseHookPoint(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want hookPoint
	}{
		{"docker0", hookPoint{name: "docker0"}},
		{"/proc/42/ns/net:eth0", hookPoint{netns: "/proc/42/ns/net", name: "eth0"}},
	} {
		got, err := parseHookPoint(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseHookPoint(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
	for _, bad := range []string{"", ":eth0", "/proc/42/ns/net:"} {
		if _, err := parseHookPoint(bad); err == nil {
			t.Errorf("parseHookPoint(%q): no error", bad)
		}
	}
}

// TestReportAB: with a baseline build, the report pairs each condition with
// its twin round by round; without one it has no such section.
func TestReportAB(t *testing.T) {
	r := &report{rounds: 3, duration: 5 * time.Second, skipped: map[string]string{}}
	for _, c := range allConditions() {
		if c.name == "none" || c.name == "record" {
			r.conds = append(r.conds, c)
		}
	}
	plain := &report{rounds: 3, duration: 5 * time.Second, skipped: map[string]string{}, conds: r.conds}
	r.conds = withBaseline(r.conds, "/old/hoptrace")
	// Rounds 1 and 2: the new build is 10% and 20% faster in W1; round 3
	// is slow for both, which the pairing cancels.
	for round, w1 := range []struct{ none, new, base float64 }{{10, 8.8, 8}, {10, 9.6, 8}, {5, 4.4, 4}} {
		r.samples = append(r.samples,
			&sample{round: round + 1, cond: "none", w1Gbit: w1.none, w2RxKpps: 300, w3TPS: 20000, w3P50: 40, w3P99: 80},
			&sample{round: round + 1, cond: "record", w1Gbit: w1.new, w2RxKpps: 200, w3TPS: 18000, w3P50: 44, w3P99: 100,
				hops: 990, truth: 1000, cpuWindowPct: 5, kernNs: [3]float64{300, 400, -1}},
			&sample{round: round + 1, cond: "record" + baselineSuffix, w1Gbit: w1.base, w2RxKpps: 100, w3TPS: 18000, w3P50: 44, w3P99: 50,
				hops: 900, truth: 1000, cpuWindowPct: 10, kernNs: [3]float64{400, 400, 500}})
		plain.samples = append(plain.samples, r.samples[len(r.samples)-3:len(r.samples)-1]...)
	}
	r.finish()
	md := r.markdown()
	want := "| hoptrace record -w FILE | 1.100 (1.100–1.200) | 2.000 (2.000–2.000) | 1.000 (1.000–1.000) | 1.000 (1.000–1.000) | 2.000 (2.000–2.000) | 0.500 (0.500–0.500) | 1.100 (1.100–1.100) | 0.75 / 1.00 / - |"
	if !strings.Contains(md, "## The new build against the baseline build") || !strings.Contains(md, want) {
		t.Errorf("report lacks the A/B row %q:\n%s", want, md)
	}
	// The cost table: kernel ns a hook per workload, unknown ones "-".
	for _, want := range []string{"| 300 / 400 / - |", "| 400 / 400 / 500 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks the kernel ns cell %q:\n%s", want, md)
		}
	}
	plain.finish()
	if md := plain.markdown(); strings.Contains(md, "against the baseline") {
		t.Errorf("a report without a baseline has an A/B section:\n%s", md)
	}
}

// TestScheduleBracketed: each condition runs after a none, in an order
// rotated every two rounds and reversed in the second, and the last round
// ends with a none; without -bracket a round is the conditions in that
// order.
func TestScheduleBracketed(t *testing.T) {
	conds := []condition{{name: "none"}, {name: "a"}, {name: "b"}}
	names := func(cs []condition) string {
		var n []string
		for _, c := range cs {
			n = append(n, c.name)
		}
		return strings.Join(n, ",")
	}
	for _, c := range []struct {
		r       int
		bracket bool
		want    string
	}{
		{0, true, "none,a,none,b"},
		{1, true, "none,b,none,a"},      // reversed
		{2, true, "none,b,none,a,none"}, // rotated by one; the last of 3 rounds
		{1, false, "b,a,none"},
		{2, false, "a,b,none"},
		{3, false, "none,b,a"},
	} {
		if got := names(schedule(conds, c.r, 3, c.bracket)); got != c.want {
			t.Errorf("round %d bracket %v: %s, want %s", c.r, c.bracket, got, c.want)
		}
	}
}

// TestBracketRatios: with the machine's speed drifting through the run, a
// condition that costs 10% shows 0.90 against the none runs around it,
// where against its round's first none it would not.
func TestBracketRatios(t *testing.T) {
	r := &report{bracketed: true}
	speed := func(seq int) float64 { return 10 + float64(seq) } // drifting up
	seq := 0
	add := func(cond string, cost float64) {
		seq++
		r.samples = append(r.samples, &sample{round: 1 + (seq-1)/4, seq: seq, cond: cond, w1Gbit: speed(seq) * cost})
	}
	for range 2 {
		add("none", 1)
		add("a", 0.9)
		add("none", 1)
		add("b", 0.8)
	}
	add("none", 1)
	w1 := func(s *sample) float64 { return s.w1Gbit }
	for cond, want := range map[string]float64{"a": 0.9, "b": 0.8} {
		got := r.ratios(cond, w1)
		if len(got) != 2 {
			t.Fatalf("%s: %d ratios, want 2", cond, len(got))
		}
		for _, x := range got {
			if math.Abs(x-want) > 1e-9 {
				t.Errorf("%s: ratios %v, want %v each", cond, got, want)
			}
		}
	}
	r.bracketed = false
	if got := r.ratios("b", w1); math.Abs(got[0]-0.8) < 0.05 {
		t.Errorf("unbracketed, the drift should show: %v", got)
	}
}

// TestSelectConditions: by default every condition but the opt-in ones
// runs; named ones run whether opt-in or not, none always.
func TestSelectConditions(t *testing.T) {
	names := func(cs []condition) string {
		var n []string
		for _, c := range cs {
			n = append(n, c.name)
		}
		return strings.Join(n, ",")
	}
	def := names(selectConditions(allConditions(), nil))
	for _, want := range []string{"none", "tcpdump", "floor", "trace-nomatch", "record", "serve"} {
		if !strings.Contains(","+def+",", ","+want+",") {
			t.Errorf("default run lacks %s: %s", want, def)
		}
	}
	for _, optIn := range []string{"floor-host", "serve-host", "trace-nomatch-host"} {
		if strings.Contains(","+def+",", ","+optIn+",") {
			t.Errorf("default run has the opt-in %s: %s", optIn, def)
		}
	}
	var sb strings.Builder
	o, err := parseFlags([]string{"-conditions", "serve-host,floor"}, &sb)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(selectConditions(allConditions(), o.conditions)); got != "none,floor,serve-host" {
		t.Errorf("-conditions serve-host,floor ran %s", got)
	}
	// serve-host is a serve: no per-packet output, ready when it listens.
	if c := selectConditions(allConditions(), []string{"serve-host"}); len(c) != 1 || !c[0].isServe() {
		t.Errorf("serve-host: %+v, not one serve condition", c)
	}
}

// TestFloorPoints: the host-side floor leaves out the points inside
// containers' namespaces, where --no-container-side does not hook.
func TestFloorPoints(t *testing.T) {
	all := []hookPoint{{name: "docker0"}, {name: "veth1"}, {netns: "/proc/7/ns/net", name: "eth0"}, {name: "veth2"}}
	if got := floorPoints(all, false); len(got) != 4 {
		t.Errorf("the whole floor hooks %v", got)
	}
	got := floorPoints(all, true)
	if len(got) != 3 || got[0].name != "docker0" || got[2].name != "veth2" {
		t.Errorf("the host-side floor hooks %v", got)
	}
}
