package main

// A tracer run: one condition started beside the workloads, stopped, and
// what it cost and saw read back (its CPU, its summary, the counters).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A sample is one condition in one round.
type sample struct {
	round int
	seq   int // its place in the run: 1 for the first run of any condition
	cond  string

	w1Gbit              float64
	w2RxKpps, w2TxKpps  float64
	w3TPS, w3P50, w3P99 float64
	// kernNs is the condition's BPF programs' ns per hook call in W1, W2
	// and W3 (kstats.go); -1 unknown or none.
	kernNs [3]float64

	// The tracer (zero for none).
	cpuWindowPct float64 // CPU while the workloads ran, % of one core
	cpuTotal     float64 // CPU seconds over its life (rusage): start, stop and the bpf_stats runs included
	maxRSSMB     float64
	hops         int64 // hops it delivered (tcpdump: packets captured); -1 unknown
	lost         int64 // events lost (tcpdump: dropped by kernel); -1 unknown
	evicted      int64 // packets evicted in flight; -1 unknown
	truth        uint64
	filtered     bool // the tracer's filter leaves out the workloads: no share
	outBytes     int64
	killed       bool
	note         string
}

// share is hops against the counters, or -1.
func (s *sample) share() float64 {
	if s.hops < 0 || s.truth == 0 || s.filtered {
		return -1
	}
	return float64(s.hops) / float64(s.truth)
}

// tracer is a running condition.
type tracer struct {
	c          condition
	cmd        *exec.Cmd
	done       chan struct{}
	waitErr    error
	outFile    string
	stderrFile string
	readyFile  string
	ticks0     uint64
	t0         time.Time
	windowDone bool // windowEnd ran: the CPU of the measured runs is in
	all0       uint64
	host0      uint64
}

func (h *harness) startTracer(ctx context.Context, c condition) (*tracer, error) {
	t := &tracer{c: c, done: make(chan struct{})}
	if c.kind == kindNone {
		return t, nil
	}
	dir := filepath.Join(h.tmp, "run")
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t.outFile = filepath.Join(dir, "out")
	t.stderrFile = filepath.Join(dir, "stderr")
	t.readyFile = filepath.Join(dir, "ready")
	var argv []string
	switch c.kind {
	case kindTcpdump:
		argv = []string{"tcpdump", "-i", "any", "-s", "128", "-w", "/dev/null"}
	case kindFloor:
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		var pts []string
		for _, p := range floorPoints(h.bed.hookPoints(), c.hostSideOnly) {
			pts = append(pts, p.String())
		}
		argv = []string{self, "-floor", strings.Join(pts, ","), "-floor-ready", t.readyFile}
	case kindHoptrace:
		argv = []string{c.hoptraceBin(h.o)}
		for _, a := range c.args {
			if a == "FILE" {
				a = t.outFile
			}
			argv = append(argv, a)
		}
		if !c.isServe() || h.serveHasReadyFile {
			argv = append(argv, "--ready-file", t.readyFile)
		}
		argv = append(argv, h.bed.hoptraceArgs()...)
		argv = append(argv, c.filter...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Own process group: a Ctrl-C on the terminal reaches the harness only,
	// which stops the tracer with one SIGINT (a second one would make
	// hoptrace give up on its output).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	stderr, err := os.Create(t.stderrFile)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	if c.stdoutToFile {
		out, err := os.Create(t.outFile)
		if err != nil {
			return nil, err
		}
		defer out.Close()
		cmd.Stdout = out
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.name, err)
	}
	t.cmd = cmd
	go func() { t.waitErr = cmd.Wait(); close(t.done) }()

	deadline := time.Now().Add(60 * time.Second)
	for !t.ready() {
		select {
		case <-t.done:
			return nil, fmt.Errorf("%s exited before it was ready (%v): %s", c.name, t.waitErr, tail(t.stderrFile, 600))
		case <-ctx.Done():
			t.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Errorf("%s not ready after 60s: %s", c.name, tail(t.stderrFile, 600))
		}
	}
	// Let the start's own work (BTF, resolver, first names) settle.
	time.Sleep(300 * time.Millisecond)
	t.ticks0, _ = procTicks(cmd.Process.Pid)
	t.t0 = time.Now()
	return t, nil
}

func (t *tracer) ready() bool {
	switch {
	case t.c.kind == kindTcpdump:
		b, _ := os.ReadFile(t.stderrFile)
		return bytes.Contains(b, []byte("listening on"))
	case t.c.isServe() && !fileExists(t.readyFile):
		// A serve without --ready-file: ready once it accepts on loopback.
		conn, err := net.DialTimeout("tcp", serveAddr, 100*time.Millisecond)
		if err == nil {
			conn.Close()
			return true
		}
		return false
	}
	return fileExists(t.readyFile)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// stop ends the tracer with SIGINT (SIGKILL after 60 s) and fills in what it
// cost and what it saw.
func (t *tracer) stop() (killed bool) {
	if t.cmd == nil {
		return false
	}
	_ = t.cmd.Process.Signal(os.Interrupt)
	select {
	case <-t.done:
	case <-time.After(60 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.done
		killed = true
	}
	return killed
}

// windowEnd ends the window of the measured workload runs: the tracer's
// CPU over it, in s.
func (t *tracer) windowEnd(s *sample) {
	if t.c.kind == kindNone || t.windowDone {
		return
	}
	t.windowDone = true
	window := time.Since(t.t0).Seconds()
	if ticks, err := procTicks(t.cmd.Process.Pid); err == nil && window > 0 {
		s.cpuWindowPct = 100 * float64(ticks-t.ticks0) / clockTicks / window
	}
}

// finish stops the tracer and fills s with its cost and its counts.
func (t *tracer) finish(s *sample, all1, host1 uint64) {
	s.hops, s.lost, s.evicted = -1, -1, -1
	if t.c.kind == kindNone {
		return
	}
	s.filtered = len(t.c.filter) > 0
	t.windowEnd(s) // if the runs did not end it
	s.killed = t.stop()
	if ru, ok := t.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.cpuTotal = tvSec(ru.Utime) + tvSec(ru.Stime)
		s.maxRSSMB = float64(ru.Maxrss) / 1024
	}
	if t.c.kind == kindTcpdump {
		s.truth = host1 - t.host0
	} else {
		s.truth = all1 - t.all0
	}
	if fi, err := os.Stat(t.outFile); err == nil {
		s.outBytes = fi.Size()
	}
	var err error
	switch {
	case t.c.kind == kindTcpdump:
		s.hops, s.lost, err = tcpdumpStats(readFileTail(t.stderrFile, 4096))
	case t.c.isServe(), t.c.kind == kindFloor:
		// No per-packet output to count.
	case t.c.stdoutToFile:
		s.hops, s.lost, s.evicted, err = jsonSummary(readFileTail(t.outFile, 64<<10) + "\n" + readFileTail(t.stderrFile, 16<<10))
	default:
		s.hops, s.lost, s.evicted, err = textSummary(readFileTail(t.stderrFile, 16<<10))
	}
	if err != nil {
		s.note = joinNote(s.note, fmt.Sprintf("%v (exit: %v; stderr ends: %s)", err, t.waitErr, tail(t.stderrFile, 300)))
	}
	if s.killed {
		s.note = joinNote(s.note, "did not stop within 60s of SIGINT: killed")
	} else if t.waitErr != nil && t.c.kind != kindTcpdump {
		s.note = joinNote(s.note, fmt.Sprintf("exit: %v: %s", t.waitErr, tail(t.stderrFile, 300)))
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func tvSec(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on Linux).
const clockTicks = 100

// procTicks is utime+stime of a process, all its threads, in clock ticks.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatTicks(string(b))
}

func parseStatTicks(stat string) (uint64, error) {
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("bad /proc/PID/stat")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad utime/stime in /proc/PID/stat")
	}
	return u + s, nil
}

func readFileTail(p string, n int64) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		if _, err := f.Seek(fi.Size()-n, 0); err != nil {
			return ""
		}
	}
	b := make([]byte, n)
	k, _ := f.Read(b)
	return string(b[:k])
}

// tail is the end of a file on one line, for error messages.
func tail(p string, n int64) string {
	return strings.Join(strings.Fields(readFileTail(p, n)), " ")
}

// jsonSummary finds the "summary" object of hoptrace's JSON output: the
// last such line of the text (hoptrace prints it on stderr; older builds put
// it at the end of stdout).
func jsonSummary(text string) (hops, lost, evicted int64, err error) {
	lines := strings.Split(text, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var s struct {
			Type            string `json:"type"`
			Hops            int64  `json:"hops"`
			Lost            int64  `json:"lost"`
			EvictedInFlight int64  `json:"evicted_in_flight"`
		}
		if json.Unmarshal([]byte(lines[i]), &s) == nil && s.Type == "summary" {
			return s.Hops, s.Lost, s.EvictedInFlight, nil
		}
	}
	return -1, -1, -1, errors.New("no JSON summary in the output")
}

var (
	// "journeys 10 (delivered 10), hops 40 in 2s" or "recorded hops 40 in 2s".
	reHops = regexp.MustCompile(`\bhops (\d+)`)
	reLost = regexp.MustCompile(`(?m)^events lost (\d+), packets evicted in flight (\d+)`)
)

// textSummary reads the text summary hoptrace record prints on stderr.
func textSummary(text string) (hops, lost, evicted int64, err error) {
	m1, m2 := reHops.FindAllStringSubmatch(text, -1), reLost.FindAllStringSubmatch(text, -1)
	if len(m1) == 0 || len(m2) == 0 {
		return -1, -1, -1, errors.New("no summary on stderr")
	}
	hops, _ = strconv.ParseInt(m1[len(m1)-1][1], 10, 64)
	lost, _ = strconv.ParseInt(m2[len(m2)-1][1], 10, 64)
	evicted, _ = strconv.ParseInt(m2[len(m2)-1][2], 10, 64)
	return hops, lost, evicted, nil
}

// tcpdumpStats reads tcpdump's exit lines: "N packets captured" and "N
// packets dropped by kernel".
func tcpdumpStats(text string) (captured, dropped int64, err error) {
	captured, dropped = -1, -1
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[1] != "packets" {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch strings.Join(f[2:], " ") {
		case "captured":
			captured = n
		case "dropped by kernel":
			dropped = n
		}
	}
	if captured < 0 {
		return -1, -1, errors.New("no packet counts from tcpdump")
	}
	return captured, dropped, nil
}
