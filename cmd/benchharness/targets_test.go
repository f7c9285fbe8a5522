package main

import (
	"strings"
	"testing"
	"time"
)

// TestReportTargets: each target of a condition that ran gets a row with
// this run's median, the floor's in the same workload and whether it is
// met; a target against tcpdump takes tcpdump's median as its bound; the
// targets of conditions that did not run are left out.
func TestReportTargets(t *testing.T) {
	r := &report{rounds: 1, duration: 5 * time.Second, skipped: map[string]string{}}
	for _, c := range allConditions() {
		switch c.name {
		case "none", "tcpdump", "floor", "record", "trace-nomatch":
			r.conds = append(r.conds, c)
		}
	}
	r.samples = []*sample{
		{round: 1, cond: "none", w1Gbit: 10, w2RxKpps: 100, w3TPS: 10000, w3P50: 50},
		{round: 1, cond: "floor", w1Gbit: 9.9, w2RxKpps: 90, w3TPS: 9900, w3P50: 51, hops: -1, lost: -1, evicted: -1},
		{round: 1, cond: "tcpdump", w1Gbit: 9, w2RxKpps: 80, w3TPS: 9600, w3P50: 52, hops: -1, lost: -1, evicted: -1},
		{round: 1, cond: "trace-nomatch", w1Gbit: 9.6, w2RxKpps: 94, w3TPS: 9800, w3P50: 51, filtered: true},
		{round: 1, cond: "record", w1Gbit: 9.3, w2RxKpps: 85, w3TPS: 9500, w3P50: 55, hops: 995, truth: 1000},
	}
	r.finish()
	md := r.targetsMarkdown()
	for _, want := range []string{
		"| condition | measure | target | this run | the floor | met |",
		"| hoptrace trace, filter matching nothing (udp port 9) | W1 | ≥ 0.95 | 0.96 | 0.99 | yes |",
		"| hoptrace trace, filter matching nothing (udp port 9) | W2 | ≥ 0.95 | 0.94 | 0.90 | no |",
		"| hoptrace trace, filter matching nothing (udp port 9) | W3 p50 | ≤ 1.03 | 1.02 | 1.02 | yes |",
		"| hoptrace record -w FILE | W2 | ≥ 0.90 | 0.85 | 0.90 | no |",
		"| hoptrace record -w FILE | hops seen | ≥ 0.99 | 0.99 | - | yes |",
		"| hoptrace record -w FILE | W3 p50 | ≤ 1.06 | 1.10 | 1.02 | no |",
		"| hoptrace record -w FILE | W1 | ≥ tcpdump (0.90) | 0.93 | 0.99 | yes |",
		"| hoptrace record -w FILE | W3 tps | ≥ tcpdump (0.96) | 0.95 | 0.99 | no |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("targets lack %q:\n%s", want, md)
		}
	}
	for _, absent := range []string{"trace -o json", "serve"} {
		if strings.Contains(md, absent) {
			t.Errorf("a target of %s, which did not run:\n%s", absent, md)
		}
	}
	if !strings.Contains(r.markdown(), "## Targets") {
		t.Error("the report has no targets section")
	}
	if (&report{skipped: map[string]string{}}).targetsMarkdown() != "" {
		t.Error("a run of no condition with a target has a targets section")
	}
}
