package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/hoptrace/hoptrace/tracer"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

// TestReadFlag: -r FILE reads a recording in replay, latency and export;
// words after it are a filter expression, as in tcpdump.
func TestReadFlag(t *testing.T) {
	path := recordingFile(t, tracefiletest.Events(tracefiletest.Options{Packets: 20, DropEvery: 2}))
	n := func(s string) int { return strings.Count(s, `"type":"journey"`) }

	all, _, err := runCmd(t, "replay", "-o", "json", "-r", path)
	if err != nil || n(all) != 20 {
		t.Fatalf("replay -r: %v, %d journeys", err, n(all))
	}
	toWeb, _, err := runCmd(t, "replay", "-o", "json", "-r", path, "tcp", "and", "dst", "port", "80")
	if err != nil || n(toWeb) != 10 {
		t.Fatalf("replay -r FILE tcp and dst port 80: %v, %d journeys, want 10", err, n(toWeb))
	}
	// Two recordings: -r and a FILE argument (the same file twice: its
	// journeys twice).
	twice, _, err := runCmd(t, "replay", "-o", "json", "-r", path, path)
	if err != nil || n(twice) != 40 {
		t.Fatalf("replay -r FILE FILE: %v, %d journeys, want 40", err, n(twice))
	}
	if _, _, err := runCmd(t, "replay", "-r", path, "-f", "udp", "tcp"); !errors.As(err, new(usageError)) {
		t.Errorf("a filter both with -f and as words: %v, want a usage error", err)
	}

	lat, _, err := runCmd(t, "latency", "-o", "json", "-r", path, "dst", "port", "80")
	if err != nil || !strings.Contains(lat, `"journeys":10`) {
		t.Fatalf("latency -r FILE dst port 80: %v\n%s", err, lat)
	}

	out := filepath.Join(t.TempDir(), "x.pcapng")
	if _, stderr, err := runCmd(t, "export", "--pcapng", out, "-r", path, "dst", "port", "80"); err != nil || !strings.Contains(stderr, "of 10 journeys") {
		t.Fatalf("export -r FILE dst port 80: %v\n%s", err, stderr)
	}
}

// TestTcpdumpHabits: -n and -l are accepted where tcpdump users type them.
func TestTcpdumpHabits(t *testing.T) {
	path := recordingFile(t, tracefiletest.Events(tracefiletest.Options{Packets: 4}))
	plain, _, err := runCmd(t, "replay", path)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := runCmd(t, "replay", "-n", "-l", path)
	if err != nil || got != plain {
		t.Errorf("replay -n -l: %v; output differs from plain replay", err)
	}
	if _, _, err := runCmd(t, "latency", "-nl", path); err != nil {
		t.Errorf("latency -nl: %v", err)
	}
	if _, _, err := runCmd(t, "export", "-n", "--pcapng", filepath.Join(t.TempDir(), "x"), path); err != nil {
		t.Errorf("export -n: %v", err)
	}
	for _, cmd := range []string{"trace", "record"} {
		out, _, err := runCmd(t, cmd, "--help")
		if !errors.Is(err, errHelp) || !strings.Contains(out, "-n, --numeric") || !strings.Contains(out, "-l, --line-buffered") {
			t.Errorf("%s --help lacks -n and -l:\n%s", cmd, out)
		}
	}
}

// TestSnaplen: -s 0 means whole packets, as in tcpdump; no -s, headers only.
func TestSnaplen(t *testing.T) {
	for _, tc := range []struct {
		n     uint32
		given bool
		want  uint32
		err   bool
	}{
		{0, false, 0, false},
		{0, true, tracer.MaxSnaplen, false},
		{128, true, 128, false},
		{tracer.MaxSnaplen, true, tracer.MaxSnaplen, false},
		{tracer.MaxSnaplen + 1, true, 0, true},
	} {
		got, err := snaplenOf(tc.n, tc.given)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("snaplenOf(%d, %v) = %d, %v; want %d, error %v", tc.n, tc.given, got, err, tc.want, tc.err)
		}
	}
}

// TestColorFlag: --color=always|never|auto, --no-color as never.
func TestColorFlag(t *testing.T) {
	path := recordingFile(t, tracefiletest.Events(tracefiletest.Options{Packets: 6, DropEvery: 2}))
	for _, tc := range []struct {
		args  []string
		color bool
	}{
		{[]string{"--color=always"}, true},
		{[]string{"--color", "always"}, true},
		{[]string{"--color=never"}, false},
		{[]string{"--color=auto"}, false}, // not a terminal
		{nil, false},
		{[]string{"--color=always", "--no-color"}, false},
	} {
		out, _, err := runCmd(t, append(append([]string{"replay"}, tc.args...), path)...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := strings.Contains(out, "\x1b["); got != tc.color {
			t.Errorf("replay %v: colour %v, want %v", tc.args, got, tc.color)
		}
	}
	if _, _, err := runCmd(t, "replay", "--color=sometimes", path); !errors.As(err, new(usageError)) {
		t.Errorf("--color=sometimes: %v, want a usage error", err)
	}
}

// TestRecordStdoutUsage: -w - cannot rotate, and --print would mix journeys
// into the recording; both are usage errors before anything is attached.
func TestRecordStdoutUsage(t *testing.T) {
	for _, args := range [][]string{
		{"record", "-w", "-", "--print"},
		{"record", "-w", "-", "--rotate-size", "1MB"},
		{"record", "-w", "x", "-s", "100000"},
	} {
		if _, _, err := runCmd(t, args...); !errors.As(err, new(usageError)) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// epipeWriter is a stdout whose reader went away.
type epipeWriter struct{}

func (epipeWriter) Write([]byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.EPIPE}
}

// TestClosedPipeOffline: a closed stdout ends replay, latency, export and
// the other commands that do not capture with exit status 0 and nothing on
// stderr (trace and record: TestTraceClosedPipe).
func TestClosedPipeOffline(t *testing.T) {
	path := recordingFile(t, tracefiletest.Events(tracefiletest.Options{Packets: 50}))
	cmds := [][]string{
		{"replay", path},
		{"replay", "-o", "json", path},
		{"latency", path},
		{"export", "--pcapng", "-", path},
		{"help"},
		{"version"},
		{"replay", "--help"},
		{"completion", "bash"},
	}
	if os.Geteuid() == 0 { // these read the host
		cmds = append(cmds, []string{"links", "--no-docker"}, []string{"links", "-o", "json", "--no-docker"}, []string{"check", "--no-docker"})
	}
	for _, args := range cmds {
		var stderr bytes.Buffer
		err := run(t.Context(), args, epipeWriter{}, &stderr)
		var exitErr bytes.Buffer
		if code := exitCode(&exitErr, err); code != exitOK || stderr.Len() > 0 || exitErr.Len() > 0 {
			t.Errorf("%v to a closed pipe: exit %d, stderr %q%q", args, code, stderr.String(), exitErr.String())
		}
	}
}

// TestStdinStdout runs the binary: replay, latency and export read a
// recording from stdin ("-"), and export writes pcapng to stdout ("-").
func TestStdinStdout(t *testing.T) {
	path := recordingFile(t, tracefiletest.Events(tracefiletest.Options{Packets: 20, DropEvery: 5}))
	bin := hoptraceBinary(t)
	runBin := func(args ...string) ([]byte, string) {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdin, cmd.Stderr = f, &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr.String())
		}
		return out, stderr.String()
	}
	js, _ := runBin("replay", "-o", "json", "-")
	if n := bytes.Count(js, []byte(`"type":"journey"`)); n != 20 || bytes.Contains(js, []byte(`"type":"summary"`)) {
		t.Errorf("replay -: %d journeys (want 20), summary on stdout %v", n, bytes.Contains(js, []byte("summary")))
	}
	js, _ = runBin("replay", "-o", "json", "-r", "-")
	if n := bytes.Count(js, []byte(`"type":"journey"`)); n != 20 {
		t.Errorf("replay -r -: %d journeys, want 20", n)
	}
	lat, _ := runBin("latency", "-o", "json", "-")
	if !bytes.Contains(lat, []byte(`{"type":"latency","schema":1,`)) {
		t.Errorf("latency -: %s", lat)
	}
	pc, notes := runBin("export", "--pcapng", "-", "-")
	r, err := pcapgo.NewNgReader(bytes.NewReader(pc), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("export - -: not pcapng: %v", err)
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("export - -: %v after %d packets", err, n)
			}
			break
		}
		n++
	}
	if n == 0 || !strings.Contains(notes, fmt.Sprintf("export: %d packets", n)) {
		t.Errorf("export - -: %d packets; notes %q", n, notes)
	}
}
