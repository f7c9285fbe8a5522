// Command benchharness measures hoptrace's whole-system overhead side by side
// with tcpdump and with no tracer, in one run, interleaved (issue 12).
//
// It starts two throwaway containers on docker0 (or, with -netns, two network
// namespaces on a bridge of its own, no Docker), runs an iperf3 server and a
// pingpong server (cmd/pingpong) inside the server's network namespace pinned
// to CPU 1, and then, for each round, for each condition in an order rotated
// by one every two rounds and reversed in the second of the two, each after a run with
// no tracer (-bracket):
//
//  1. starts the tracer of that condition and waits until it is attached
//     (hoptrace: --ready-file; tcpdump: "listening on" on stderr);
//  2. runs the workloads from inside the client's network namespace, pinned
//     to CPU 0: W1 iperf3 TCP, W2 iperf3 UDP with 64-byte datagrams,
//     W3 a 1-byte TCP ping-pong (transactions/s, p50, p99);
//  3. stops the tracer with SIGINT and takes its CPU time (rusage of the
//     child), its summary (hops, events lost, packets evicted in flight) and
//     the packet counters of the traced interfaces over the same window, the
//     ground truth the hop count is compared with.
//
// Conditions: none; tcpdump -i any -s 128 -w /dev/null; the floor (a tcx
// program that only counts, at the hooks hoptrace uses); hoptrace record -w
// FILE; record -s 128; trace -o json >FILE; trace with a filter matching
// nothing; and hoptrace serve once that subcommand exists (skipped before).
//
// With bpf_stats switched on for the run (-kernel-stats), it also takes the
// kernel ns per hook call of the condition's BPF programs in each workload.
//
// It prints a markdown report (medians and ranges of per-round ratios to no
// tracer: to the mean of the no-tracer runs just before and after, which
// cancels the machine's drift over minutes; tracer CPU, hops recorded against the counters, events lost, the
// absolute baseline and every round's raw numbers) and with -out writes it to
// a file (make bench writes docs/BENCHMARKS.md). Everything it starts is
// stopped and removed at the end, also on Ctrl-C. Traffic flows only between
// the two containers (or namespaces) it made. Needs root.
//
//	go run ./cmd/benchharness -hoptrace ./hoptrace            # 5 rounds x 5 s per workload
//	go run ./cmd/benchharness -quick                          # 2 rounds x 2 s, to try it
//	go run ./cmd/benchharness -netns -conditions none,trace-nomatch
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	hoptrace   string
	baseline   string // -baseline: a second hoptrace binary, run as each condition's twin
	pingpong   string
	rounds     int
	duration   time.Duration // of each workload
	out        string
	netns      bool
	conditions []string      // names to run; nil: all
	bracket    bool          // a none run before each other condition (and after the last)
	kstats     bool          // kernel ns per hook call, from extra runs with bpf_stats on
	kstatsDur  time.Duration // of each workload's extra run
	command    string        // how the run was started, for the report
	// floor: run as the floor condition's tracer (see floor.go) at these
	// comma-separated hook points, not as the harness.
	floor      string
	floorReady string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "benchharness: %v\n", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchharness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.hoptrace, "hoptrace", "./hoptrace", "the hoptrace binary to measure")
	fs.StringVar(&o.baseline, "baseline", "", "another hoptrace binary: each hoptrace condition also runs with it, interleaved, as NAME"+baselineSuffix+" (an A/B of two builds in one run)")
	fs.StringVar(&o.pingpong, "pingpong", "", "the pingpong binary (default: build ./cmd/pingpong with go build)")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every condition once")
	fs.BoolVar(&o.kstats, "kernel-stats", true, "report the tracers' kernel ns per hook call in each workload, from extra runs of each workload with bpf_stats on (BPF_ENABLE_STATS) after the measured ones, which run with it off: it adds ~40 ns to each call")
	fs.DurationVar(&o.kstatsDur, "kernel-stats-duration", 2*time.Second, "length of each workload's extra run with bpf_stats on")
	fs.BoolVar(&o.bracket, "bracket", true, "run no tracer before each condition and after the last, and take each condition's ratios to the mean of the two no-tracer runs around it (-bracket=false: one no-tracer run a round, half the time)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each workload run")
	quick := fs.Bool("quick", os.Getenv("QUICK") == "1", "2 rounds of 2 s, to try the harness (also QUICK=1)")
	fs.StringVar(&o.out, "out", "", "also write the markdown report to this file (e.g. docs/BENCHMARKS.md)")
	fs.BoolVar(&o.netns, "netns", false, "no Docker: two network namespaces on a bridge of the harness's own, hoptrace with --no-docker -i")
	conds := fs.String("conditions", "", "comma-separated conditions to run (default all but "+strings.Join(optInNames(), " and ")+"): "+strings.Join(conditionNames(), ","))
	fs.StringVar(&o.command, "command", "", "the command line to name in the report (default: this one)")
	fs.StringVar(&o.floor, "floor", "", "internal: be the floor condition, a TC program that only counts at these hook points (IFNAME or NETNS-PATH:IFNAME, comma-separated), until SIGINT")
	fs.StringVar(&o.floorReady, "floor-ready", "", "internal: with -floor, the file to create once attached")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *quick {
		o.rounds, o.duration, o.kstatsDur = 2, 2*time.Second, time.Second
	}
	if o.rounds < 1 || o.duration < time.Second || o.kstats && o.kstatsDur < time.Second {
		return o, fmt.Errorf("need at least 1 round and 1s per workload run")
	}
	if *conds != "" {
		known := map[string]bool{}
		for _, n := range conditionNames() {
			known[n] = true
		}
		o.conditions = []string{"none"}
		for _, c := range strings.Split(*conds, ",") {
			c = strings.TrimSpace(c)
			if !known[c] {
				return o, fmt.Errorf("unknown condition %q (known: %s)", c, strings.Join(conditionNames(), ", "))
			}
			if c != "none" {
				o.conditions = append(o.conditions, c)
			}
		}
	}
	if o.command == "" {
		o.command = "go run ./cmd/benchharness " + strings.Join(args, " ")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (BPF, network namespaces, Docker): run it with sudo")
	}
	if o.floor != "" {
		var points []hookPoint
		for _, s := range strings.Split(o.floor, ",") {
			p, err := parseHookPoint(s)
			if err != nil {
				return err
			}
			points = append(points, p)
		}
		return runFloor(ctx, points, o.floorReady)
	}
	for _, tool := range []string{"iperf3", "taskset", "nsenter", "tcpdump", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install iperf3 util-linux tcpdump iproute2", tool)
		}
	}
	if o.hoptrace, err = filepath.Abs(o.hoptrace); err != nil {
		return err
	}
	if _, err := os.Stat(o.hoptrace); err != nil {
		return fmt.Errorf("hoptrace binary: %w (run make build)", err)
	}
	if o.baseline != "" {
		if o.baseline, err = filepath.Abs(o.baseline); err != nil {
			return err
		}
		if _, err := os.Stat(o.baseline); err != nil {
			return fmt.Errorf("baseline binary: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "hoptrace-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.pingpong == "" {
		o.pingpong = filepath.Join(tmp, "pingpong")
		build := exec.CommandContext(ctx, "go", "build", "-o", o.pingpong, "./cmd/pingpong")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build pingpong (run from the repository, or pass -pingpong): %v: %s", err, out)
		}
	}

	var bed testbed
	if o.netns {
		bed = &netnsBed{}
	} else {
		bed = &dockerBed{}
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }
	logf("setting up the test bed (%s)", bed.name())
	// Cleanup runs on every way out, Ctrl-C included (ctx is cancelled, the
	// workload commands die with it, and run returns through here).
	defer func() {
		logf("cleaning up")
		if cerr := bed.teardown(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()
	if err := bed.setup(ctx); err != nil {
		return fmt.Errorf("set up %s: %w", bed.name(), err)
	}
	h := &harness{o: o, bed: bed, tmp: tmp, logf: logf}
	if o.kstats {
		if err := probeKernelStats(); err != nil {
			logf("bpf_stats: %v: no kernel ns per hook in the report", err)
		} else {
			h.kernelStats = true
		}
	}
	if err := h.startServers(ctx); err != nil {
		return err
	}
	defer h.stopServers()

	rep, err := h.measure(ctx)
	if err != nil {
		return err
	}
	md := rep.markdown()
	if _, err := io.WriteString(stdout, md); err != nil {
		return err
	}
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		logf("report written to %s", o.out)
	}
	return nil
}
