package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// dockerPidFile is where the test bed's dockerd writes its PID.
const dockerPidFile = "/var/run/docker.pid"

// restartDockerd stops the daemon (the PID in its pid file, nothing else)
// and starts it again as vmtests/testbed.sh does. A cleanup makes sure a
// daemon answers whatever happened.
func restartDockerd(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile(dockerPidFile)
	if err != nil {
		testenv.SkipOrFail(t, "no "+dockerPidFile+": dockerd was not started by vmtests/testbed.sh")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		t.Fatalf("bad pid file %s: %q", dockerPidFile, raw)
	}
	t.Cleanup(func() { ensureDockerd(t) })
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop dockerd %d: %v", pid, err)
	}
	for i := 0; i < 300 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("dockerd %d did not stop in 30s", pid)
	}
	startDockerd(t)
}

func startDockerd(t *testing.T) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "setsid dockerd >/var/log/hoptrace-dockerd.log 2>&1 </dev/null &")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start dockerd: %v: %s", err, out)
	}
	waitDocker(t)
}

func waitDocker(t *testing.T) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if exec.Command("docker", "info", "-f", "{{.ServerVersion}}").Run() == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("dockerd does not answer after 60s (see /var/log/hoptrace-dockerd.log)")
}

// ensureDockerd starts dockerd if none answers (the test failed midway).
func ensureDockerd(t *testing.T) {
	if exec.Command("docker", "info", "-f", "{{.ServerVersion}}").Run() == nil {
		return
	}
	if raw, err := os.ReadFile(dockerPidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && syscall.Kill(pid, 0) == nil {
			waitDocker(t) // still starting or stopping
			return
		}
	}
	startDockerd(t)
}

// `links --watch` survives a daemon restart: it prints that Docker went
// away, then a topology with Docker back, then a container started after.
// Set HOPTRACE_SKIP_DOCKERD_RESTART=1 to spare a shared daemon.
func TestLinksWatchDockerRestart(t *testing.T) {
	testenv.RequireDocker(t)
	if os.Getenv("HOPTRACE_SKIP_DOCKERD_RESTART") != "" {
		testenv.SkipOrFail(t, "HOPTRACE_SKIP_DOCKERD_RESTART is set")
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	stderr := &syncWriter{}
	go func() {
		done <- runLinks(ctx, []string{"--watch", "-o", "json"}, pw, stderr)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		go io.Copy(io.Discard, pr)
		if err := <-done; err != nil {
			t.Errorf("links --watch: %v", err)
		}
	})
	views := make(chan resolver.Links, 100)
	go func() {
		defer close(views)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var l resolver.Links
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("decode watch line: %v", err)
				return
			}
			views <- l
		}
	}()
	next := func(what string, timeout time.Duration, cond func(resolver.Links) bool) {
		t.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-views:
				if !ok {
					t.Fatalf("watch output ended before %s", what)
				}
				if cond(l) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s within %v", what, timeout)
			}
		}
	}
	next("first topology", 10*time.Second, func(l resolver.Links) bool { return l.DockerAvailable })

	restartDockerd(t)
	next("topology without Docker", 10*time.Second, func(l resolver.Links) bool { return !l.DockerAvailable })
	next("topology with Docker back", 20*time.Second, func(l resolver.Links) bool { return l.DockerAvailable })

	name := testenv.UniqueName("ht-links-after")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	testenv.Command(t, "docker", "run", "-d", "--name", name, testenv.Image, "sleep", "600")
	start := time.Now()
	next("container started after the restart", 5*time.Second, func(l resolver.Links) bool {
		for _, b := range l.Bridges {
			for _, p := range b.Ports {
				if p.Container != nil && p.Container.Name == name {
					return true
				}
			}
		}
		return false
	})
	t.Logf("container after the restart shown %v after docker run returned", time.Since(start))
	if got := stderr.String(); !strings.Contains(got, "docker is not reachable") || !strings.Contains(got, "reachable again") {
		t.Errorf("stderr does not tell of the outage:\n%s", got)
	}
}

// syncWriter collects what goroutines write.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
