package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// The tracer's tests log the features each Load found, e.g.
// "tracer_test.go:171: features: tcx=yes skb-key=yes drops=yes". Tests that
// force a fallback (legacy attach, no skb key) log less than the kernel has,
// so the kernel's features are the best value seen for each key.
var featuresRE = regexp.MustCompile(`\bfeatures: ((?:[a-z-]+=[a-z0-9]+\s*)+)$`)

// kernelFeature is what a kernel must offer, by version, and which skip
// reasons mean a test skipped for lack of it.
type kernelFeature struct {
	key    string // in the features line
	minVer [2]int // first kernel that has it
	why    string
	skipRE *regexp.Regexp // skip reasons that claim the kernel lacks it
}

var kernelFeatures = []kernelFeature{
	{"tcx", [2]int{6, 6}, "TCX links", regexp.MustCompile(`(?i)\bno tcx\b|tcx (is )?not supported`)},
	{"skb-key", [2]int{6, 3}, "bpf_cast_to_kern_ctx (skb key)", regexp.MustCompile(`(?i)kern(el)?_?ctx|no skb.?key`)},
	{"drops", [2]int{5, 17}, "tp_btf/kfree_skb with drop reasons", regexp.MustCompile(`(?i)no tp_btf|kfree_skb`)},
}

// kernelVersion reads "6.12" from a release like 6.12.117+deb12-cloud-amd64.
func kernelVersion(release string) [2]int {
	n := numbers(release)
	if len(n) < 2 {
		return [2]int{}
	}
	return [2]int{n[0], n[1]}
}

func verAtLeast(v, min [2]int) bool { return v[0] > min[0] || v[0] == min[0] && v[1] >= min[1] }

// observedFeatures folds every features line into the best value per key
// ("yes" beats "no") and the distinct lines seen.
func observedFeatures(lines []string) (best map[string]string, distinct []string) {
	best = map[string]string{}
	seen := map[string]bool{}
	for _, l := range lines {
		m := featuresRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v := strings.TrimSpace(m[1])
		if !seen[v] {
			seen[v] = true
			distinct = append(distinct, v)
		}
		for _, kv := range strings.Fields(v) {
			k, val, _ := strings.Cut(kv, "=")
			if best[k] != "yes" {
				best[k] = val
			}
		}
	}
	sort.Strings(distinct)
	return best, distinct
}

// featureProblems compares what the tests saw with what the kernel version
// promises: a feature missing where the kernel has it, present where it
// cannot be, or a test skipped for lack of a feature the kernel has.
func (r *kernelResult) featureProblems() []string {
	best, _ := observedFeatures(r.Features)
	ver := kernelVersion(r.K.Release)
	var why []string
	for _, f := range kernelFeatures {
		want := "no"
		if verAtLeast(ver, f.minVer) {
			want = "yes"
		}
		if got, ok := best[f.key]; ok && got != want {
			why = append(why, fmt.Sprintf("%s=%s but kernel %d.%d should give %s=%s (%s needs >= %d.%d)",
				f.key, got, ver[0], ver[1], f.key, want, f.why, f.minVer[0], f.minVer[1]))
		}
		if want != "yes" {
			continue
		}
		for _, t := range r.Tests {
			if t.Status == "SKIP" && f.skipRE.MatchString(t.Reason()) {
				why = append(why, fmt.Sprintf("%s %s skipped (%q) but kernel %d.%d has %s", t.Pkg, t.Name, t.Reason(), ver[0], ver[1], f.why))
			}
		}
	}
	return why
}

// featureSummary is one line for the report: the kernel's features as seen.
func (r *kernelResult) featureSummary() string {
	best, _ := observedFeatures(r.Features)
	if len(best) == 0 {
		return "no features line in the test output (tracer tests did not run)"
	}
	var parts []string
	for _, f := range kernelFeatures {
		if v, ok := best[f.key]; ok {
			parts = append(parts, f.key+"="+v)
		}
	}
	attach, key := "legacy clsact + cls_bpf", "content key"
	if best["tcx"] == "yes" {
		attach = "TCX"
	}
	if best["skb-key"] == "yes" {
		key = "skb key"
	}
	drops := "no drop reasons"
	if best["drops"] == "yes" {
		drops = "drop reasons"
	}
	return fmt.Sprintf("%s: %s, %s, %s", strings.Join(parts, " "), attach, key, drops)
}
