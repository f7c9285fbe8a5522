package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

type report struct {
	started, ended time.Time
	kernel         string
	cpuModel       string
	nproc          int
	memGB          float64
	load           [][3]float64 // 1, 5, 15 min: at the start, after each condition, at the end
	versions       []string
	command        string
	bed, counted   string
	notes          []string
	rounds         int
	duration       time.Duration
	kstatsDur      time.Duration // each workload's extra run with bpf_stats on
	conds          []condition
	skipped        map[string]string
	samples        []*sample
	bracketed      bool     // a none run before each condition and after the last (ratiosTo)
	rebuilds       int      // times the bed was set up again
	repeated       []string // runs repeated because the bed broke under them
}

// statsRuns describes the extra runs for kernel ns a hook, if any.
func (r *report) statsRuns() string {
	if r.kstatsDur <= 0 {
		return ""
	}
	return fmt.Sprintf("; a tracer with BPF programs then runs each again for %s with bpf_stats on, for its kernel ns a hook only", r.kstatsDur)
}

func newReport(h *harness) *report {
	r := &report{
		started:  time.Now(),
		nproc:    runtime.NumCPU(),
		command:  h.o.command,
		bed:      h.bed.name(),
		counted:  h.bed.describe(),
		notes:    h.bed.notes(),
		rounds:   h.o.rounds,
		duration: h.o.duration,
		skipped:  map[string]string{},
	}
	if h.kernelStats {
		r.kstatsDur = h.o.kstatsDur
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.kernel = strings.TrimSpace(string(b))
	}
	r.cpuModel = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseFloat(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 64); err == nil {
		r.memGB = kb / (1 << 20)
	}
	ctx := context.Background()
	for _, v := range [][]string{
		{h.o.hoptrace, "version"},
		{"tcpdump", "--version"},
		{"iperf3", "--version"},
	} {
		out, _ := exec.CommandContext(ctx, v[0], v[1:]...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if v[0] == h.o.hoptrace && !strings.HasPrefix(line, "hoptrace") {
			line = "hoptrace " + line
		}
		r.versions = append(r.versions, line)
	}
	r.sampleLoad()
	return r
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (r *report) sampleLoad() {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return
	}
	f := strings.Fields(string(b))
	var l [3]float64
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	r.load = append(r.load, l)
}

func (r *report) finish() {
	r.ended = time.Now()
	r.sampleLoad()
	// Anomalies worth a sentence.
	for _, c := range r.conds {
		shares := r.values(c.name, func(s *sample) float64 { return s.share() })
		if len(shares) == 0 {
			continue
		}
		lo := slices.Min(shares)
		var lost, evicted int64
		for _, s := range r.of(c.name) {
			lost += max(s.lost, 0)
			evicted += max(s.evicted, 0)
		}
		switch {
		case lo < 0.95 && lost == 0 && evicted == 0:
			r.notes = append(r.notes, fmt.Sprintf("%s: in one round it counted only %.1f%% of the packets the interface counters saw, and reported no loss.", c.label, 100*lo))
		case lo < 0.95:
			r.notes = append(r.notes, fmt.Sprintf("%s: as little as %.1f%% of the counters' packets in a round; it reported %d events lost and %d packets evicted in flight over all rounds.", c.label, 100*lo, lost, evicted))
		case slices.Max(shares) > 1.05:
			r.notes = append(r.notes, fmt.Sprintf("%s: up to %.1f%% of the counters' packets (more than the counters: traffic the counters do not see, or packets dropped inside veth xmit that the egress hook had seen).", c.label, 100*slices.Max(shares)))
		}
	}
	if r.rebuilds > 0 || len(r.repeated) > 0 {
		r.notes = append(r.notes, fmt.Sprintf("The test bed broke under the run and was set up again %d time(s) (with Docker: something else restarted dockerd, which stops every container); the runs it broke were repeated and only the repeats count: %s.",
			r.rebuilds, strings.Join(r.repeated, ", ")))
	}
	for _, s := range r.samples {
		if s.note != "" {
			r.notes = append(r.notes, fmt.Sprintf("round %d, %s: %s", s.round, s.cond, s.note))
		}
	}
}

func (r *report) of(cond string) []*sample {
	var out []*sample
	for _, s := range r.samples {
		if s.cond == cond {
			out = append(out, s)
		}
	}
	return out
}

// values of f over a condition's samples, leaving out negatives (unknown).
func (r *report) values(cond string, f func(*sample) float64) []float64 {
	var v []float64
	for _, s := range r.of(cond) {
		if x := f(s); x >= 0 && !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	return v
}

// ratios of f, condition over none in the same round.
func (r *report) ratios(cond string, f func(*sample) float64) []float64 {
	return r.ratiosTo(cond, "none", f)
}

// ratiosTo are the per-round ratios of f, condition over base in the same
// round: pairing by round cancels what the machine did in that round. In a
// bracketed run the base none is the mean of the none runs just before and
// just after the condition's, which cancels a drift over the minutes of a
// round as well.
func (r *report) ratiosTo(cond, base string, f func(*sample) float64) []float64 {
	if r.bracketed && base == "none" {
		return r.bracketRatios(cond, f)
	}
	of := map[int]float64{}
	for _, s := range r.of(base) {
		of[s.round] = f(s)
	}
	var v []float64
	for _, s := range r.of(cond) {
		b, x := of[s.round], f(s)
		if b > 0 && x > 0 {
			v = append(v, x/b)
		}
	}
	return v
}

// bracketRatios are f of each run of cond over the mean of f of the none
// runs next to it in the run's order (one of them at the ends).
func (r *report) bracketRatios(cond string, f func(*sample) float64) []float64 {
	bySeq := map[int]*sample{}
	for _, s := range r.samples {
		bySeq[s.seq] = s
	}
	var v []float64
	for _, s := range r.of(cond) {
		var sum float64
		n := 0
		for _, k := range []int{s.seq - 1, s.seq + 1} {
			if b := bySeq[k]; b != nil && b.cond == "none" {
				if x := f(b); x > 0 {
					sum += x
					n++
				}
			}
		}
		if x := f(s); n > 0 && x > 0 {
			v = append(v, x/(sum/float64(n)))
		}
	}
	return v
}

// abMarkdown compares each condition run with both builds (-baseline):
// the per-round ratios of the new build's results over the baseline's. Two
// medians against none, each over noisy rounds, hide a difference of a few
// percent that the paired ratios show. Empty without a baseline.
func (r *report) abMarkdown() string {
	var b strings.Builder
	for _, c := range r.conds {
		base := c.name + baselineSuffix
		if strings.HasSuffix(c.name, baselineSuffix) || len(r.of(base)) == 0 || len(r.of(c.name)) == 0 {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\n## The new build against the baseline build\n\n")
			b.WriteString("Median of the per-round ratios new build / baseline build, same round, range in parentheses.\n")
			b.WriteString("W1, W2, W3 tps: above 1.00 the new build costs the workload less. p50, p99, CPU: below 1.00\n")
			b.WriteString("it is faster or cheaper. Packets seen: the ratio of the shares of hops the two recorded.\n")
			b.WriteString("Kernel ns a hook: the medians of the ratios in W1 / W2 / W3 (bpf_stats), below 1.00 cheaper.\n\n")
			b.WriteString("| condition | W1 | W2 | W3 tps | W3 p50 | W3 p99 | tracer CPU | packets seen | kernel ns a hook |\n")
			b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		}
		ratio := func(f func(*sample) float64) string { return stat(r.ratiosTo(c.name, base, f), "%.3f") }
		var kern [3]string
		for w := range kern {
			kern[w] = "-"
			if v := r.ratiosTo(c.name, base, func(s *sample) float64 { return s.kernNs[w] }); len(v) > 0 {
				kern[w] = fmt.Sprintf("%.2f", median(v))
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.label,
			ratio(func(s *sample) float64 { return s.w1Gbit }),
			ratio(func(s *sample) float64 { return s.w2RxKpps }),
			ratio(func(s *sample) float64 { return s.w3TPS }),
			ratio(func(s *sample) float64 { return s.w3P50 }),
			ratio(func(s *sample) float64 { return s.w3P99 }),
			ratio(func(s *sample) float64 { return s.cpuWindowPct }),
			ratio((*sample).share),
			kernCell(kern))
	}
	return b.String()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// stat is "median (min-max)" with format f, or "-" when there is nothing.
// kernCell joins W1, W2, W3 cells, or is "-" when all are.
func kernCell(k [3]string) string {
	if k[0] == "-" && k[1] == "-" && k[2] == "-" {
		return "-"
	}
	return k[0] + " / " + k[1] + " / " + k[2]
}

// positive is x, or -1 (unknown) when it is not above zero.
func positive(x float64) float64 {
	if x > 0 {
		return x
	}
	return -1
}

func stat(v []float64, f string) string {
	if len(v) == 0 {
		return "-"
	}
	m := fmt.Sprintf(f, median(v))
	if len(v) == 1 {
		return m
	}
	return m + " (" + fmt.Sprintf(f, slices.Min(v)) + "–" + fmt.Sprintf(f, slices.Max(v)) + ")"
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Benchmarks\n\n")
	p("Whole-system overhead of hoptrace next to tcpdump and no tracer, measured side by side in one run\n")
	p("by `make bench` (the harness `cmd/benchharness`, issue 12). The harness writes this file; each run\n")
	p("replaces it. To run it: `sudo make bench BENCH=system` (the harness only; `make bench` runs the Go\n")
	p("benchmarks first), `QUICK=1` for 2 rounds of 2 s to try it. Needs root, Docker and busybox:local\n")
	p("(`make testbed`), iperf3 and tcpdump.\n\n")

	p("## Latest run\n\n")
	p("- **When:** %s, %s to %s (%s)\n", r.started.Format("2006-01-02"), r.started.Format("15:04:05"), r.ended.Format("15:04:05 MST"), r.ended.Sub(r.started).Round(time.Second))
	p("- **Machine:** Linux %s, %d CPUs (%s), %.0f GiB memory\n", r.kernel, r.nproc, r.cpuModel, r.memGB)
	if len(r.load) > 0 {
		first, last := r.load[0], r.load[len(r.load)-1]
		var ones []float64
		for _, l := range r.load {
			ones = append(ones, l[0])
		}
		p("- **Load average** (1, 5, 15 min): %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end; the 1-min load, sampled after every condition, ranged %.2f–%.2f (median %.2f) on %d CPUs. The harness itself keeps about two CPUs busy while a workload runs; a load well above that means something else ran too.\n",
			first[0], first[1], first[2], last[0], last[1], last[2], slices.Min(ones), slices.Max(ones), median(ones), r.nproc)
	}
	p("- **Command:** `%s`\n", r.command)
	p("- **Versions:** %s\n", strings.Join(r.versions, "; "))
	p("- **Test bed:** %s\n", r.bed)
	if r.bracketed {
		p("- **Rounds:** %d, each running every condition once in an order rotated by one every two rounds and reversed in the second of the two, with a run of no tracer before each (and one after the last); each workload runs %s per run%s.\n\n", r.rounds, r.duration, r.statsRuns())
	} else {
		p("- **Rounds:** %d, each running every condition once in an order rotated by one every two rounds and reversed in the second of the two; each workload runs %s per condition%s.\n\n", r.rounds, r.duration, r.statsRuns())
	}

	p("## Throughput and latency, relative to no tracer\n\n")
	if r.bracketed {
		p("Median of the per-round ratios (the condition's result over the mean of the no-tracer runs just before and after it:\n")
		p("the machine's speed drifts over minutes),\n")
	} else {
		p("Median of the per-round ratios (the condition's result over the no-tracer result of the same round),\n")
	}
	p("with the range over the rounds in parentheses. W1, W2, W3 tps: 1.00 is no cost, lower is slower.\n")
	p("p50, p99: W3's latency as a factor, x1.00 is no cost.\n\n")
	p("| condition | W1 iperf3 TCP | W2 iperf3 UDP 64 B | W3 tps | W3 p50 | W3 p99 |\n")
	p("| --- | --- | --- | --- | --- | --- |\n")
	for _, c := range r.conds {
		if c.name == "none" {
			continue
		}
		if why, ok := r.skipped[c.name]; ok {
			p("| %s | %s | | | | |\n", c.label, why)
			continue
		}
		p("| %s | %s | %s | %s | x%s | x%s |\n", c.label,
			stat(r.ratios(c.name, func(s *sample) float64 { return s.w1Gbit }), "%.2f"),
			stat(r.ratios(c.name, func(s *sample) float64 { return s.w2RxKpps }), "%.2f"),
			stat(r.ratios(c.name, func(s *sample) float64 { return s.w3TPS }), "%.2f"),
			stat(r.ratios(c.name, func(s *sample) float64 { return s.w3P50 }), "%.2f"),
			stat(r.ratios(c.name, func(s *sample) float64 { return s.w3P99 }), "%.2f"))
	}

	b.WriteString(r.targetsMarkdown())
	b.WriteString(r.abMarkdown())

	p("\n## The tracer's own cost, and what it saw\n\n")
	p("| condition | CPU while the workloads ran (%% of one CPU) | CPU s per run (start, stop and the bpf_stats runs included) | peak RSS MB | packets seen / counters | events lost per run | packets evicted in flight per run | output per run | kernel ns a hook W1 / W2 / W3 |\n")
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range r.conds {
		if c.name == "none" {
			continue
		}
		if _, ok := r.skipped[c.name]; ok {
			continue
		}
		asFloat := func(f func(*sample) int64) func(*sample) float64 {
			return func(s *sample) float64 { return float64(f(s)) }
		}
		var kern [3]string
		for w := range kern {
			kern[w] = "-"
			if v := r.values(c.name, func(s *sample) float64 { return positive(s.kernNs[w]) }); len(v) > 0 {
				kern[w] = fmt.Sprintf("%.0f", median(v))
			}
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.label,
			stat(r.values(c.name, func(s *sample) float64 { return s.cpuWindowPct }), "%.1f"),
			stat(r.values(c.name, func(s *sample) float64 { return s.cpuTotal }), "%.2f"),
			stat(r.values(c.name, func(s *sample) float64 { return s.maxRSSMB }), "%.0f"),
			stat(r.values(c.name, func(s *sample) float64 { return s.share() }), "%.3f"),
			stat(r.values(c.name, asFloat(func(s *sample) int64 { return s.lost })), "%.0f"),
			stat(r.values(c.name, asFloat(func(s *sample) int64 { return s.evicted })), "%.0f"),
			sizeStat(r.values(c.name, func(s *sample) float64 {
				if s.outBytes == 0 {
					return -1
				}
				return float64(s.outBytes)
			})),
			kernCell(kern))
	}
	p("\nPackets seen / counters: hoptrace's hop count (its summary: `hops`) over the packet counters of\n")
	p("the interfaces it hooks, read when it was attached and again before it was stopped: %s. ", r.counted)
	p("For tcpdump: its \"packets captured\" over the host-side counters only (it captures in the host's\n")
	p("namespace), and its \"dropped by kernel\" as events lost. With GSO and GRO a hook sees a\n")
	p("super-packet, and so do the counters. The tracer's CPU is its process's user and system time\n")
	p("(`/proc/PID/stat` while the workloads ran; rusage over its life); the BPF programs' own time is\n")
	p("charged to the packets' senders and shows in the ratios, not here: kernel ns a hook is that time,\n")
	p("the run time over the run count bpf_stats kept for the condition's hook programs in an extra run\n")
	p("of each workload (%s, after the measured ones; medians over the rounds). It does not depend on\n", r.kstatsDur)
	p("what the workload's throughput did that minute. bpf_stats is on only in those extra runs: it adds\n")
	p("~40 ns to each call (two clock reads), which is in these figures, the floor's row too, and not in\n")
	p("the ratios above.\n\n")

	p("## No tracer, absolute\n\n")
	p("| W1 TCP Gbit/s | W2 UDP 64 B received kpps | W2 sent kpps | W3 tps | W3 p50 µs | W3 p99 µs |\n")
	p("| --- | --- | --- | --- | --- | --- |\n")
	p("| %s | %s | %s | %s | %s | %s |\n\n",
		stat(r.values("none", func(s *sample) float64 { return s.w1Gbit }), "%.2f"),
		stat(r.values("none", func(s *sample) float64 { return s.w2RxKpps }), "%.0f"),
		stat(r.values("none", func(s *sample) float64 { return s.w2TxKpps }), "%.0f"),
		stat(r.values("none", func(s *sample) float64 { return s.w3TPS }), "%.0f"),
		stat(r.values("none", func(s *sample) float64 { return s.w3P50 }), "%.1f"),
		stat(r.values("none", func(s *sample) float64 { return s.w3P99 }), "%.1f"))

	p("## How it is measured\n\n")
	p("- The client runs inside the client's network namespace (`nsenter -t PID -n`, or `ip netns exec`)\n")
	p("  pinned to CPU 0 (`taskset -c 0`); the iperf3 and pingpong servers inside the server's, pinned to\n")
	p("  CPU 1. The tracers are not pinned. Traffic flows only between the two endpoints the harness made.\n")
	p("- W1: `iperf3 -c SERVER -t N` (TCP, the receiver's bits per second). W2: `iperf3 -c SERVER -u -l 64\n")
	p("  -b 0 -t N` (datagrams that arrived per second: sent minus lost). W3: `pingpong client -d N`\n")
	p("  (`cmd/pingpong`): one connection, one byte each way per transaction, back to back.\n")
	p("- A tracer is started before the three workloads and stopped after them with SIGINT; hoptrace is\n")
	p("  known to be attached once its `--ready-file` exists, tcpdump once it says \"listening on\".\n")
	p("  Recordings and JSON output go to a file in a temporary directory and are deleted after each run.\n")
	p("- The floor is the harness's own tcx program that only counts (a per-CPU counter, then the next\n")
	p("  program), attached in both directions at every interface hoptrace hooks here: what any tracer at\n")
	p("  those hooks pays before doing anything. What a hoptrace row costs beyond it is hoptrace's own work.\n")
	p("- A warm-up runs each workload for 1 s before the first round.\n\n")

	if len(r.notes) > 0 {
		p("## Notes from this run\n\n")
		for _, n := range r.notes {
			p("- %s\n", n)
		}
		p("\n")
	}

	p("## Every round\n\n")
	p("| round | condition | W1 Gbit/s | W2 rx kpps | W2 tx kpps | W3 tps | p50 µs | p99 µs | CPU %% | seen | counters | share | lost | evicted |\n")
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range r.samples {
		p("| %d | %s | %.2f | %.0f | %.0f | %.0f | %.1f | %.1f |", s.round, s.cond, s.w1Gbit, s.w2RxKpps, s.w2TxKpps, s.w3TPS, s.w3P50, s.w3P99)
		if s.cond == "none" {
			p(" | | | | | |\n")
			continue
		}
		opt := func(v int64) string {
			if v < 0 {
				return ""
			}
			return strconv.FormatInt(v, 10)
		}
		share := ""
		if x := s.share(); x >= 0 {
			share = fmt.Sprintf("%.3f", x)
		}
		p(" %.1f | %s | %d | %s | %s | %s |\n", s.cpuWindowPct, opt(s.hops), s.truth, share, opt(s.lost), opt(s.evicted))
	}
	return b.String()
}

func sizeStat(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	unit, div, f := "MB", 1e6, "%.0f"
	if median(v) < 1e6 {
		unit, div, f = "kB", 1e3, "%.1f"
	}
	scaled := make([]float64, len(v))
	for i, x := range v {
		scaled[i] = x / div
	}
	return stat(scaled, f) + " " + unit
}
