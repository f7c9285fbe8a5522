package main

import (
	"fmt"
	"strings"
)

// A target of issues 12 and 13: a condition's median per-round ratio to no
// tracer in one workload, at least (or at most) a bound, or at least
// another condition's ratio in the same run.
type target struct {
	cond   string
	metric string  // w1, w2, w3, p50, share (of hops seen)
	most   bool    // the bound is a ceiling (latency), not a floor
	bound  float64 // 0 with versus
	versus string  // a condition whose median this one must reach
}

var targets = []target{
	{cond: "trace-nomatch", metric: "w1", bound: 0.95},
	{cond: "trace-nomatch", metric: "w2", bound: 0.95},
	{cond: "trace-nomatch", metric: "w3", bound: 0.97},
	{cond: "trace-nomatch", metric: "p50", most: true, bound: 1.03},
	{cond: "record", metric: "w1", bound: 0.92},
	{cond: "record", metric: "w2", bound: 0.90},
	{cond: "record", metric: "share", bound: 0.99},
	{cond: "record", metric: "w3", bound: 0.95},
	{cond: "record", metric: "p50", most: true, bound: 1.06},
	{cond: "record", metric: "w1", versus: "tcpdump"},
	{cond: "record", metric: "w2", versus: "tcpdump"},
	{cond: "record", metric: "w3", versus: "tcpdump"},
	{cond: "trace-json", metric: "w1", bound: 0.85},
	{cond: "serve", metric: "w1", bound: 0.95},
	{cond: "serve", metric: "w2", bound: 0.95},
	{cond: "serve", metric: "w3", bound: 0.97},
}

var metricNames = map[string]string{
	"w1": "W1", "w2": "W2", "w3": "W3 tps", "p50": "W3 p50", "share": "hops seen",
}

// metric is a condition's median for one of the targets' metrics, and
// whether it has one.
func (r *report) metric(cond, m string) (float64, bool) {
	if _, skipped := r.skipped[cond]; skipped {
		return 0, false
	}
	var v []float64
	switch m {
	case "w1":
		v = r.ratios(cond, func(s *sample) float64 { return s.w1Gbit })
	case "w2":
		v = r.ratios(cond, func(s *sample) float64 { return s.w2RxKpps })
	case "w3":
		v = r.ratios(cond, func(s *sample) float64 { return s.w3TPS })
	case "p50":
		v = r.ratios(cond, func(s *sample) float64 { return s.w3P50 })
	case "share":
		v = r.values(cond, func(s *sample) float64 { return s.share() })
	}
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

// targetsMarkdown tells, for each target whose condition ran, its median
// in this run, whether it is met, and the floor's median in the same
// workload: a tracer cannot do better than a program that only counts,
// and on a noisy machine the floor itself may miss a bound.
func (r *report) targetsMarkdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	for _, t := range targets {
		got, ok := r.metric(t.cond, t.metric)
		if !ok {
			continue
		}
		if b.Len() == 0 {
			p("\n## Targets\n\n")
			p("The targets of issues 12 and 13 against this run's medians. The floor (a program that only\n")
			p("counts) ran in the same rounds: a bound it misses too is beyond what this run can show.\n\n")
			p("| condition | measure | target | this run | the floor | met |\n")
			p("| --- | --- | --- | --- | --- | --- |\n")
		}
		label := t.cond
		for _, c := range r.conds {
			if c.name == t.cond {
				label = c.label
			}
		}
		want, bound := "", t.bound
		switch {
		case t.versus != "":
			v, ok := r.metric(t.versus, t.metric)
			if !ok {
				continue
			}
			want, bound = fmt.Sprintf("≥ %s (%.2f)", t.versus, v), v
		case t.most:
			want = fmt.Sprintf("≤ %.2f", t.bound)
		default:
			want = fmt.Sprintf("≥ %.2f", t.bound)
		}
		met := got >= bound
		if t.most {
			met = got <= bound
		}
		floor := "-"
		if t.metric != "share" {
			if v, ok := r.metric("floor", t.metric); ok {
				floor = fmt.Sprintf("%.2f", v)
			}
		}
		verdict := "no"
		if met {
			verdict = "yes"
		}
		p("| %s | %s | %s | %.2f | %s | %s |\n", label, metricNames[t.metric], want, got, floor, verdict)
	}
	return b.String()
}
