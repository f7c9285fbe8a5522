package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/render"
)

// The end-to-end tests run the real, statically built binary.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// hoptraceBinary builds ./cmd/hoptrace once per test run (CGO_ENABLED=0),
// or returns $HOPTRACE_BIN (the VM tests bring a prebuilt one: no Go there).
func hoptraceBinary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("HOPTRACE_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "hoptrace-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "hoptrace")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build hoptrace: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// proc is a running hoptrace.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{}
	err            error
}

// startHoptrace runs the binary with args plus --ready-file and waits until
// every hook is attached. The process is interrupted at test end if still running.
func startHoptrace(t testing.TB, args ...string) *proc {
	t.Helper()
	return startHoptraceEnv(t, nil, args...)
}

// readyWithin bounds the wait for hoptrace's --ready-file. Loading and
// attaching takes a second on a host but can take far longer in a VM under
// TCG on a busy machine (the 6.1 legacy paths load per network namespace);
// the bound is only there so that a hang fails the test.
const readyWithin = 60 * time.Second

// startHoptraceEnv is startHoptrace with extra environment variables.
func startHoptraceEnv(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	p := &proc{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(hoptraceBinary(t), append(args, "--ready-file", ready)...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(readyWithin)
	for {
		if _, err := os.Stat(ready); err == nil {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("hoptrace %v exited before ready: %v\nstderr: %s", args, p.err, p.stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("hoptrace %v not ready after %v\nstderr: %s", args, readyWithin, p.stderr)
		}
	}
}

// stop interrupts hoptrace (as Ctrl-C does) and waits for it to exit.
func (p *proc) stop(t testing.TB) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("hoptrace did not exit within 15s of SIGINT\nstderr: %s", p.stderr)
	}
	return p.err
}

// lockedBuffer collects a process's output while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Bytes is a copy of the complete lines written so far: a line being
// written while the test polls is left for the next look.
func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b.Bytes()
	return append([]byte(nil), b[:bytes.LastIndexByte(b, '\n')+1]...)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// jsonLines splits -o json output into journeys and the summary: the
// journeys are on stdout, the summary is a JSON line on stderr (among the
// notes there). A summary on stdout is an error: stdout holds only what
// was asked for.
func jsonLines(t testing.TB, stdout []byte, stderr ...[]byte) ([]render.JourneyJSON, *render.SummaryJSON) {
	t.Helper()
	var js []render.JourneyJSON
	var sum *render.SummaryJSON
	for _, line := range splitLines(stdout) {
		switch jsonType(t, line) {
		case "journey":
			var j render.JourneyJSON
			if err := json.Unmarshal(line, &j); err != nil {
				t.Fatal(err)
			}
			js = append(js, j)
		case "summary":
			t.Errorf("summary on stdout: %s", line)
		default:
			t.Fatalf("unknown line type in %s", line)
		}
	}
	for _, b := range stderr {
		for _, line := range splitLines(b) {
			if !bytes.HasPrefix(line, []byte("{")) || jsonType(t, line) != "summary" {
				continue
			}
			sum = &render.SummaryJSON{}
			if err := json.Unmarshal(line, sum); err != nil {
				t.Fatal(err)
			}
		}
	}
	return js, sum
}

// jsonOut is jsonLines of a finished run's stdout and stderr.
func (p *proc) jsonOut(t testing.TB) ([]render.JourneyJSON, *render.SummaryJSON) {
	t.Helper()
	return jsonLines(t, p.stdout.Bytes(), p.stderr.Bytes())
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

func jsonType(t testing.TB, line []byte) string {
	t.Helper()
	var typ struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &typ); err != nil {
		t.Fatalf("not JSON: %q: %v", line, err)
	}
	return typ.Type
}

// labels is the hop labels of a journey, in order.
func labels(j *render.JourneyJSON) []string {
	var out []string
	for _, h := range j.Hops {
		out = append(out, h.Label)
	}
	return out
}

// hostVethOf finds a container's host-side veth name the way people do by
// hand: eth0's iflink inside the container is the peer's ifindex in the host.
func hostVethOf(t testing.TB, container string) string {
	t.Helper()
	out, err := exec.Command("docker", "exec", container, "cat", "/sys/class/net/eth0/iflink").CombinedOutput()
	if err != nil {
		t.Fatalf("read iflink in %s: %v %s", container, err, out)
	}
	want := strings.TrimSpace(string(out))
	ents, _ := os.ReadDir("/sys/class/net")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", e.Name(), "ifindex"))
		if err == nil && strings.TrimSpace(string(b)) == want {
			return e.Name()
		}
	}
	t.Fatalf("no host interface with ifindex %s (peer of %s:eth0)", want, container)
	return ""
}
