package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	clientCPU    = 0
	serverCPU    = 1
	iperfPort    = "5201"
	pingpongPort = "7777"
	udpLen       = 64
)

type harness struct {
	o                 options
	bed               testbed
	tmp               string
	logf              func(string, ...any)
	servers           []*server
	serveHasReadyFile bool
	kernelStats       bool // bpf_stats works here: kernel ns per hook call measured
	statsOn           bool // this run of the workloads has bpf_stats on
}

type server struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
}

// startServers starts iperf3 and pingpong servers in the server's namespace,
// pinned to the server CPU, in their own process groups (stopped by PID).
func (h *harness) startServers(ctx context.Context) error {
	for _, argv := range [][]string{
		{"iperf3", "-s", "-p", iperfPort},
		{h.o.pingpong, "server", "-l", ":" + pingpongPort},
	} {
		cmd := h.bed.inServer(ctx, serverCPU, argv...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s server: %w", argv[0], err)
		}
		srv := &server{cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(srv.done) }()
		h.servers = append(h.servers, srv)
	}
	time.Sleep(time.Second)
	return h.serversUp()
}

func (h *harness) serversUp() error {
	for _, s := range h.servers {
		select {
		case <-s.done:
			return fmt.Errorf("server %q exited", strings.Join(s.cmd.Args, " "))
		default:
		}
	}
	return nil
}

func (h *harness) stopServers() {
	for _, s := range h.servers {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	h.servers = nil
}

func (h *harness) secs() string {
	return strconv.Itoa(max(1, int(h.o.duration.Round(time.Second).Seconds())))
}

// iperf3 runs an iperf3 client in the client namespace and returns its JSON.
func (h *harness) iperf3(ctx context.Context, args ...string) (map[string]any, error) {
	argv := append([]string{"iperf3", "-c", h.bed.serverIP(), "-p", iperfPort, "-J", "--connect-timeout", "5000"}, args...)
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, h.o.duration+30*time.Second)
		out, err := h.bed.inClient(cctx, clientCPU, argv...).Output()
		cancel()
		var res map[string]any
		if jerr := json.Unmarshal(out, &res); jerr == nil {
			if e, _ := res["error"].(string); e != "" {
				// "the server is busy running a test": the previous test's
				// end is still in flight; try again in a moment.
				last = fmt.Errorf("iperf3: %s", e)
				time.Sleep(time.Second)
				continue
			}
			return res, nil
		}
		if err == nil {
			err = errors.New("no JSON")
		}
		last = fmt.Errorf("iperf3 %s: %w", strings.Join(args, " "), err)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(time.Second)
	}
	return nil, last
}

func num(m map[string]any, path ...string) float64 {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return 0
		}
		v = mm[p]
	}
	f, _ := v.(float64)
	return f
}

// runWorkloads runs W1, W2 and W3 one after the other and fills s; with
// a program prefix (and bpf_stats on), also the kernel ns per hook call of
// those programs in each.
func (h *harness) runWorkloads(ctx context.Context, s *sample, prefix string) error {
	s.kernNs = [3]float64{-1, -1, -1}
	var errs []error
	var k0 progTotals
	kstat := func(w int) {
		if prefix == "" || !h.statsOn {
			return
		}
		k1, err := readProgTotals(prefix)
		if err != nil {
			errs = append(errs, fmt.Errorf("bpf_stats: %w", err))
			return
		}
		if w >= 0 {
			s.kernNs[w] = nsPerRun(k0, k1)
		}
		k0 = k1
	}
	kstat(-1)
	// W1: TCP throughput, as the receiver counted it.
	if r, err := h.iperf3(ctx, "-t", h.secs()); err != nil {
		errs = append(errs, fmt.Errorf("W1: %w", err))
	} else {
		s.w1Gbit = num(r, "end", "sum_received", "bits_per_second") / 1e9
	}
	kstat(0)
	time.Sleep(200 * time.Millisecond)
	// W2: UDP, 64-byte datagrams as fast as the sender can; what arrived
	// (sent minus lost) per second is the measure.
	if r, err := h.iperf3(ctx, "-u", "-l", strconv.Itoa(udpLen), "-b", "0", "-t", h.secs()); err != nil {
		errs = append(errs, fmt.Errorf("W2: %w", err))
	} else {
		if sec := num(r, "end", "sum_received", "seconds"); sec > 0 {
			s.w2RxKpps = (num(r, "end", "sum_received", "packets") - num(r, "end", "sum_received", "lost_packets")) / sec / 1e3
		}
		if sec := num(r, "end", "sum_sent", "seconds"); sec > 0 {
			s.w2TxKpps = num(r, "end", "sum_sent", "packets") / sec / 1e3
		}
	}
	kstat(1)
	time.Sleep(200 * time.Millisecond)
	// W3: 1-byte TCP ping-pong.
	cctx, cancel := context.WithTimeout(ctx, h.o.duration+30*time.Second)
	out, err := h.bed.inClient(cctx, clientCPU, h.o.pingpong, "client", "-c", h.bed.serverIP()+":"+pingpongPort,
		"-d", h.o.duration.String(), "-json").Output()
	cancel()
	var pp struct {
		TPS   float64 `json:"tps"`
		P50us float64 `json:"p50_us"`
		P99us float64 `json:"p99_us"`
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("W3: %w", err))
	} else if err := json.Unmarshal(out, &pp); err != nil {
		errs = append(errs, fmt.Errorf("W3: %w: %q", err, out))
	} else {
		s.w3TPS, s.w3P50, s.w3P99 = pp.TPS, pp.P50us, pp.P99us
	}
	kstat(2)
	return errors.Join(errs...)
}

// available says why a condition cannot run here, or "".
func (h *harness) available(ctx context.Context, c condition) string {
	if c.needs != "" {
		out, err := exec.CommandContext(ctx, c.hoptraceBin(h.o), c.needs, "--help").CombinedOutput()
		if err != nil {
			return fmt.Sprintf("skipped: this hoptrace has no %q subcommand yet", c.needs)
		}
		if c.isServe() {
			h.serveHasReadyFile = strings.Contains(string(out), "--ready-file")
		}
	}
	return ""
}

func rotate[T any](s []T, k int) []T {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(append([]T(nil), s[k:]...), s[:k]...)
}

// order is round r's order of s: rotated by one every two rounds, and
// reversed in the second of the two.
func order[T any](s []T, r int) []T {
	o := rotate(s, r/2)
	if r%2 == 1 {
		slices.Reverse(o)
	}
	return o
}

// schedule is the order of round r (from 0) of rounds: the conditions in
// order; bracketed, none before each of
// the others, and after the last of the last round. Without the reversal a
// condition would always follow the same one, and carry what that one left
// behind (trace -o json writes gigabytes that the page cache then flushes).
func schedule(conds []condition, r, rounds int, bracket bool) []condition {
	if !bracket {
		return order(conds, r)
	}
	var none *condition
	var others []condition
	for i := range conds {
		if conds[i].name == "none" {
			none = &conds[i]
		} else {
			others = append(others, conds[i])
		}
	}
	if none == nil {
		return order(conds, r)
	}
	var out []condition
	for _, c := range order(others, r) {
		out = append(out, *none, c)
	}
	if r == rounds-1 || len(others) == 0 {
		out = append(out, *none)
	}
	return out
}

func (h *harness) measure(ctx context.Context) (*report, error) {
	rep := newReport(h)
	var conds []condition
	for _, c := range withBaseline(selectConditions(allConditions(), h.o.conditions), h.o.baseline) {
		rep.conds = append(rep.conds, c)
		if why := h.available(ctx, c); why != "" {
			rep.skipped[c.name] = why
			h.logf("%s: %s", c.name, why)
			continue
		}
		conds = append(conds, c)
	}

	h.logf("warm-up: each workload once for 1s, no tracer")
	warm := *h
	warm.o.duration = time.Second
	if err := warm.runWorkloads(ctx, &sample{}, ""); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}

	rep.bracketed = h.o.bracket
	seq := 0
	for r := 0; r < h.o.rounds; r++ {
		for _, c := range schedule(conds, r, h.o.rounds, h.o.bracket) {
			var s *sample
			for attempt := 1; ; attempt++ {
				if err := h.healthy(ctx); err != nil {
					if attempt > maxAttempts {
						return nil, fmt.Errorf("the test bed keeps breaking: %w", err)
					}
					if err := h.rebuild(ctx, err); err != nil {
						return nil, err
					}
					rep.rebuilds++
				}
				var err error
				s, err = h.runCondition(ctx, r, c)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if err != nil {
					s.note = joinNote(s.note, err.Error())
				}
				if herr := h.healthy(ctx); herr != nil && attempt < maxAttempts {
					h.logf("round %d/%d %s: the test bed broke during the run (%v): this run is repeated", r+1, h.o.rounds, c.name, herr)
					rep.repeated = append(rep.repeated, fmt.Sprintf("round %d %s", r+1, c.name))
					continue
				}
				break
			}
			seq++
			s.seq = seq
			rep.samples = append(rep.samples, s)
			rep.sampleLoad()
			h.logf("round %d/%d %-13s %s", r+1, h.o.rounds, c.name, s.oneLine())
		}
	}
	rep.finish()
	return rep, nil
}

// maxAttempts bounds the runs of one condition in one round when the test
// bed breaks under it.
const maxAttempts = 3

// healthy checks the bed and the servers.
func (h *harness) healthy(ctx context.Context) error {
	if err := h.bed.healthy(ctx); err != nil {
		return err
	}
	return h.serversUp()
}

// rebuild sets the bed up again after it broke (dockerd restarted by
// something else stops every container), waiting up to 5 minutes for Docker.
func (h *harness) rebuild(ctx context.Context, why error) error {
	h.logf("the test bed is gone (%v): setting it up again", why)
	h.stopServers()
	_ = h.bed.teardown()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		err := h.bed.setup(ctx)
		if err == nil {
			break
		}
		h.logf("setting up again failed: %v", err)
		_ = h.bed.teardown()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("set the test bed up again: %w", err)
		}
		time.Sleep(5 * time.Second)
	}
	if err := h.startServers(ctx); err != nil {
		return err
	}
	h.logf("test bed set up again; warm-up")
	warm := *h
	warm.o.duration = time.Second
	if err := warm.runWorkloads(ctx, &sample{}, ""); err != nil {
		return fmt.Errorf("warm-up after setting up again: %w", err)
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (h *harness) runCondition(ctx context.Context, round int, c condition) (*sample, error) {
	s := &sample{round: round + 1, cond: c.name, hops: -1, lost: -1, evicted: -1}
	t, err := h.startTracer(ctx, c)
	if err != nil {
		return s, err
	}
	defer func() {
		if t.outFile != "" {
			os.Remove(t.outFile) // a recording or JSON lines: can be GBs
		}
	}()
	all0, host0, err := h.bed.counters()
	if err != nil {
		t.stop()
		return s, err
	}
	t.all0, t.host0 = all0, host0
	werr := h.runWorkloads(ctx, s, progPrefix(c))
	t.windowEnd(s)
	if prefix := progPrefix(c); prefix != "" && h.kernelStats && werr == nil {
		werr = h.kernelCost(ctx, s, prefix)
	}
	if n := h.bed.others(ctx); n > 0 {
		s.note = joinNote(s.note, fmt.Sprintf("%d other containers running", n))
	}
	all1, host1, err := h.bed.counters()
	if err != nil {
		t.stop()
		return s, err
	}
	t.finish(s, all1, host1)
	return s, werr
}

// kernelCost runs each workload again, for -kernel-stats-duration, with
// bpf_stats on, and fills in s's kernel ns per hook call. The measured
// runs before it have bpf_stats off: its ~40 ns a call (two clock reads)
// would be charged to every tracer with programs and not to tcpdump or
// no tracer, and so bias the ratios. Their throughput is not kept.
func (h *harness) kernelCost(ctx context.Context, s *sample, prefix string) error {
	stats, err := enableKernelStats()
	if err != nil {
		return fmt.Errorf("bpf_stats: %w", err)
	}
	defer stats.Close()
	k := *h
	k.o.duration, k.statsOn = h.o.kstatsDur, true
	var ks sample
	err = k.runWorkloads(ctx, &ks, prefix)
	s.kernNs = ks.kernNs
	return err
}

func (s *sample) oneLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "W1 %.2f Gbit/s  W2 %.0f kpps rx (%.0f tx)  W3 %.0f tps p50 %.1fus p99 %.1fus",
		s.w1Gbit, s.w2RxKpps, s.w2TxKpps, s.w3TPS, s.w3P50, s.w3P99)
	if s.cond != "none" {
		fmt.Fprintf(&b, "  CPU %.0f%%", s.cpuWindowPct)
		if s.hops >= 0 {
			fmt.Fprintf(&b, "  hops %d/%d", s.hops, s.truth)
			if sh := s.share(); sh >= 0 {
				fmt.Fprintf(&b, " (%.3f)", sh)
			}
		}
		if s.lost >= 0 {
			fmt.Fprintf(&b, " lost %d", s.lost)
		}
		if s.evicted > 0 {
			fmt.Fprintf(&b, " evicted %d", s.evicted)
		}
	}
	if s.note != "" {
		b.WriteString("  NOTE: " + s.note)
	}
	return b.String()
}
