package main

import "strings"

type tracerKind int

const (
	kindNone tracerKind = iota
	kindTcpdump
	kindHoptrace
	kindFloor // this binary's -floor: a TC program that only counts
)

// A condition is what runs beside the workloads.
type condition struct {
	name  string // short name, for -conditions
	label string // for the report
	kind  tracerKind
	// hoptrace: the subcommand and flags; "FILE" is replaced by the output
	// file. filter is the trailing expression.
	args   []string
	filter []string
	// stdoutToFile: the output (JSON lines) goes to FILE; else FILE is the
	// recording and stdout is discarded.
	stdoutToFile bool
	// needs: a hoptrace subcommand that must exist, else the condition is
	// skipped (a slot for what is not there yet).
	needs string
	// bin: the hoptrace binary, when not -hoptrace (-baseline's twins).
	bin string
	// optIn: runs only when -conditions names it, not by default (a
	// variant to weigh, not one of the issues' rows).
	optIn bool
	// hostSideOnly: the floor at the host's hook points only, where
	// --no-container-side hooks.
	hostSideOnly bool
}

// baselineSuffix names a condition's twin run with the -baseline binary.
const baselineSuffix = "@base"

// kindName is the condition's name without baselineSuffix: what it runs.
func (c condition) kindName() string { return strings.TrimSuffix(c.name, baselineSuffix) }

// isServe: the condition runs hoptrace serve, which has no per-packet
// output and may lack --ready-file.
func (c condition) isServe() bool {
	return c.kind == kindHoptrace && len(c.args) > 0 && c.args[0] == "serve"
}

// hoptraceBin is the binary a hoptrace condition runs.
func (c condition) hoptraceBin(o options) string {
	if c.bin != "" {
		return c.bin
	}
	return o.hoptrace
}

// withBaseline puts after each hoptrace condition its twin run with the
// binary base, so that the rounds interleave the two builds.
func withBaseline(conds []condition, base string) []condition {
	if base == "" {
		return conds
	}
	var out []condition
	for _, c := range conds {
		out = append(out, c)
		if c.kind == kindHoptrace {
			t := c
			t.name += baselineSuffix
			t.label += " [baseline build]"
			t.bin = base
			out = append(out, t)
		}
	}
	return out
}

// serveAddr is where the serve slot listens: loopback only.
const serveAddr = "127.0.0.1:19477"

func allConditions() []condition {
	return []condition{
		{name: "none", label: "none (no tracer)"},
		{name: "tcpdump", label: "tcpdump -i any -s 128 -w /dev/null", kind: kindTcpdump},
		{name: "floor", label: "tcx program that only counts, at hoptrace's hooks (the floor)", kind: kindFloor},
		{name: "floor-host", label: "the floor at the host side only (--no-container-side's hooks)", kind: kindFloor,
			hostSideOnly: true, optIn: true},
		{name: "trace-nomatch", label: "hoptrace trace, filter matching nothing (udp port 9)", kind: kindHoptrace,
			args: []string{"trace", "-o", "json"}, filter: []string{"udp", "port", "9"}, stdoutToFile: true},
		// The host side of the veths only (--no-container-side): two hooks
		// a packet between two containers instead of four, for what that
		// trades (the hop inside each container) against cost.
		{name: "trace-nomatch-host", label: "hoptrace trace --no-container-side, filter matching nothing", kind: kindHoptrace,
			args: []string{"trace", "-o", "json", "--no-container-side"}, filter: []string{"udp", "port", "9"}, stdoutToFile: true,
			optIn: true},
		{name: "record", label: "hoptrace record -w FILE", kind: kindHoptrace,
			args: []string{"record", "-w", "FILE"}},
		{name: "record-s128", label: "hoptrace record -s 128 -w FILE", kind: kindHoptrace,
			args: []string{"record", "-s", "128", "-w", "FILE"}},
		{name: "trace-json", label: "hoptrace trace -o json >FILE", kind: kindHoptrace,
			args: []string{"trace", "-o", "json"}, stdoutToFile: true},
		// SLOT: hoptrace serve (issue 12 asks for it once it exists). It is
		// skipped while `hoptrace serve --help` fails. It has no per-packet
		// output, so only the ratios and its CPU are reported.
		{name: "serve", label: "hoptrace serve --listen " + serveAddr, kind: kindHoptrace,
			args: []string{"serve", "--listen", serveAddr}, needs: "serve"},
		{name: "serve-host", label: "hoptrace serve --no-container-side", kind: kindHoptrace,
			args: []string{"serve", "--listen", serveAddr, "--no-container-side"}, needs: "serve", optIn: true},
	}
}

// floorPoints are the points the floor hooks: all the bed's, or with
// hostSideOnly those in the host's namespace.
func floorPoints(all []hookPoint, hostSideOnly bool) []hookPoint {
	if !hostSideOnly {
		return all
	}
	var out []hookPoint
	for _, p := range all {
		if p.netns == "" {
			out = append(out, p)
		}
	}
	return out
}

// selectConditions is what a run measures: the conditions named (none
// always among them), or with no names all but the opt-in ones.
func selectConditions(all []condition, named []string) []condition {
	var out []condition
	for _, c := range all {
		if named == nil && !c.optIn || named != nil && contains(named, c.kindName()) {
			out = append(out, c)
		}
	}
	return out
}

// optInNames are the conditions that run only when named.
func optInNames() []string {
	var n []string
	for _, c := range allConditions() {
		if c.optIn {
			n = append(n, c.name)
		}
	}
	return n
}

func conditionNames() []string {
	var n []string
	for _, c := range allConditions() {
		n = append(n, c.name)
	}
	return n
}
