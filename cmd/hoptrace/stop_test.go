package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// udpFlood sends UDP from a to b (both namespaces of the test's own
// topology) until the test ends, at a few thousand packets a second: enough
// to keep the hooks busy, modest on a shared machine.
func udpFlood(t *testing.T, topo *testenv.Topology) {
	t.Helper()
	a, b := topo.Hosts[0], topo.Hosts[1]
	b.UDPConn(t, 9999) // never read: the packets end as SOCKET_RCVBUFF drops, not ICMP errors
	c := a.UDPConn(t, 0)
	dst := &net.UDPAddr{IP: b.IP.AsSlice(), Port: 9999}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		payload := make([]byte, 64)
		for ctx.Err() == nil {
			for range 50 {
				_, _ = c.WriteTo(payload, dst)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// blockedRun is a hoptrace whose stdout is a pipe nobody reads.
type blockedRun struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
	pipe   *os.File // the read end, never read
}

// startBlocked starts hoptrace with stdout into a one-page pipe that is
// never read, and waits until its hooks are attached.
func startBlocked(t *testing.T, args ...string) *blockedRun {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	// The smallest pipe the kernel allows: a few journeys fill it.
	if _, err := unix.FcntlInt(r.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatalf("shrink pipe: %v", err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	run := &blockedRun{stderr: &bytes.Buffer{}, done: make(chan error, 1), pipe: r}
	run.cmd = exec.Command(hoptraceBinary(t), append(args, "--ready-file", ready)...)
	run.cmd.Stdout, run.cmd.Stderr = w, run.stderr
	if err := run.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go func() { run.done <- run.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-run.done:
		default:
			_ = run.cmd.Process.Kill()
			<-run.done
		}
	})
	deadline := time.Now().Add(readyWithin)
	for {
		if _, err := os.Stat(ready); err == nil {
			return run
		}
		select {
		case err := <-run.done:
			t.Fatalf("hoptrace %v exited before ready: %v\nstderr: %s", args, err, run.stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("hoptrace %v not ready after %v\nstderr: %s", args, readyWithin, run.stderr)
		}
	}
}

// waitPipeFull waits until hoptrace has filled its stdout pipe, so its
// writes block: bytes in the pipe, and no more for a while under the flood.
// (A pipe is full before its byte count reaches its size: a write that does
// not fit in the last page waits for a free page.)
func (r *blockedRun) waitPipeFull(t *testing.T) {
	t.Helper()
	last, same := 0, 0
	for range 200 {
		n, err := unix.IoctlGetInt(int(r.pipe.Fd()), unix.TIOCINQ) // FIONREAD: bytes in the pipe
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 && n == last {
			if same++; same == 10 {
				return
			}
		} else {
			same = 0
		}
		last = n
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("stdout pipe not filled after 10s (%d bytes in it)\nstderr: %s", last, r.stderr)
}

// wait fails the test if hoptrace has not exited within limit (a bound for
// failure only: the exit is expected far sooner) and returns its exit error.
func (r *blockedRun) wait(t *testing.T, limit time.Duration) error {
	t.Helper()
	start := time.Now()
	select {
	case err := <-r.done:
		r.done <- err
		t.Logf("exited %s after the stop was asked for (or the run started)", time.Since(start).Round(time.Millisecond))
		return err
	case <-time.After(limit):
		_ = r.cmd.Process.Kill()
		err := <-r.done
		r.done <- err
		t.Fatalf("hoptrace still running %s after it was told to stop (killed)\nstderr: %s", limit, r.stderr)
		return nil
	}
}

// noFiltersLeft fails if a legacy filter of pid is still on the topology.
func noFiltersLeft(t *testing.T, topo *testenv.Topology, pid int) {
	t.Helper()
	devs := []string{topo.Bridge}
	for _, h := range topo.Hosts {
		devs = append(devs, h.HostVeth)
	}
	for _, dev := range devs {
		for _, dir := range []string{"ingress", "egress"} {
			tc, _ := exec.Command("tc", "filter", "show", "dev", dev, dir).CombinedOutput()
			if strings.Contains(string(tc), fmt.Sprintf("hoptrace-%d.", pid)) {
				t.Errorf("filters left on %s %s:\n%s", dev, dir, tc)
			}
		}
	}
	for _, h := range topo.Hosts {
		tc, _ := h.Exec("tc", "filter", "show", "dev", h.Iface, "ingress")
		if strings.Contains(tc, fmt.Sprintf("hoptrace-%d.", pid)) {
			t.Errorf("filters left on %s:%s:\n%s", h.Name, h.Iface, tc)
		}
	}
}

// checkStopped checks what every stop with a blocked stdout must leave: the
// summary on stderr, the output that could not be written named in one
// line, and (legacy) no filter of ours.
func checkStopped(t *testing.T, topo *testenv.Topology, run *blockedRun, err error, legacy bool) {
	t.Helper()
	stderr := run.stderr.String()
	text := strings.Contains(stderr, "journeys ") && strings.Contains(stderr, "events lost ")
	if !text && !strings.Contains(stderr, `{"type":"summary"`) {
		t.Errorf("no summary (text or JSON) on stderr:\n%s", stderr)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitError || !strings.Contains(stderr, "stdout") {
		t.Errorf("exit %v, want status %d and a line about stdout\nstderr: %s", err, exitError, stderr)
	}
	if legacy {
		noFiltersLeft(t, topo, run.cmd.Process.Pid)
	}
}

// TestStopBlockedStdout: with stdout a pipe nobody reads (a paused `| less`)
// under a UDP flood, SIGINT, SIGTERM, --duration and -c each end hoptrace
// soon, with every hook detached and the summary on stderr; in legacy mode
// no filter is left behind.
func TestStopBlockedStdout(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	udpFlood(t, topo)
	for _, mode := range []string{"auto", "legacy"} {
		base := []string{"trace", "-o", "json", "--no-docker", "-q"}
		if mode == "legacy" {
			base = append(base, "--legacy")
		}
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			t.Run(mode+"/"+sig.String(), func(t *testing.T) {
				run := startBlocked(t, base...)
				run.waitPipeFull(t)
				_ = run.cmd.Process.Signal(sig)
				err := run.wait(t, 5*time.Second)
				checkStopped(t, topo, run, err, mode == "legacy")
			})
		}
		t.Run(mode+"/duration", func(t *testing.T) {
			run := startBlocked(t, append(base, "--duration", "2s")...)
			err := run.wait(t, 2*time.Second+5*time.Second)
			checkStopped(t, topo, run, err, mode == "legacy")
		})
		t.Run(mode+"/count", func(t *testing.T) {
			// More journeys than the pipe holds: before they are all written
			// the pipe is full.
			run := startBlocked(t, append(base, "-c", "50")...)
			err := run.wait(t, 10*time.Second)
			checkStopped(t, topo, run, err, mode == "legacy")
		})
	}
}

// TestStopSecondInterrupt: a second SIGINT ends hoptrace at once, without
// waiting for a blocked stdout, after detaching its hooks.
func TestStopSecondInterrupt(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	udpFlood(t, topo)
	run := startBlocked(t, "trace", "--legacy", "--no-docker", "-q")
	run.waitPipeFull(t)
	_ = run.cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(50 * time.Millisecond)
	_ = run.cmd.Process.Signal(syscall.SIGINT)
	err := run.wait(t, 5*time.Second)
	if !strings.Contains(run.stderr.String(), "second interrupt") {
		t.Errorf("no note of the second interrupt on stderr:\n%s", run.stderr)
	}
	checkStopped(t, topo, run, err, true)
}
