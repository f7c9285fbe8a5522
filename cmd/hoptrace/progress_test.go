package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/pcapng"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

// fakeClock advances by step at every reading.
func fakeClock(step time.Duration) func() time.Time {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(step); return t }
}

func TestRecordProgress(t *testing.T) {
	var out bytes.Buffer
	clock := fakeClock(600 * time.Millisecond)
	r := &recordProgress{p: newProgress(&out, clock), bytes: func() int64 { return 2_500_000 }}
	for i := 0; i < 30; i++ {
		r.Event(pipeline.Event{Hop: &event.Hop{}})
	}
	r.Event(pipeline.Event{Drop: &event.Drop{}})
	r.Event(pipeline.Event{Loss: &event.Loss{Hops: 4, Drops: 1}})
	r.Event(pipeline.Event{Tick: 1}) // 0.6s: not yet
	if out.Len() != 0 {
		t.Fatalf("a line before a second passed: %q", out.String())
	}
	r.Event(pipeline.Event{Tick: 2}) // 1.2s
	want := "\rrecording: 30 hops (25/s), 1 drops, 2.5 MB written, 5 events lost\x1b[K"
	if out.String() != want {
		t.Fatalf("line %q, want %q", out.String(), want)
	}
	out.Reset()
	r.Summary(render.Summary{})
	if out.String() != "\r\x1b[K" {
		t.Errorf("end: %q, want the line cleared", out.String())
	}
}

func TestExportProgress(t *testing.T) {
	path := recordingFile(t, tracefiletest.Events(tracefiletest.Options{Packets: 20}))
	src, err := openRecordings("export", []string{path}, io.Discard, true)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var lines bytes.Buffer
	counted := &countingWriter{w: io.Discard}
	ex := pcapng.New(counted, pcapng.Options{Header: src.Header()})
	pr := &exportProgress{p: newProgress(&lines, fakeClock(time.Second)), ex: ex, out: counted}
	if _, err := pipeline.Run(context.Background(), src, pipeline.Config{}, ex, pr); err != nil {
		t.Fatal(err)
	}
	s := lines.String()
	if !strings.Contains(s, "\rexporting: ") || !strings.Contains(s, "packets (") || !strings.Contains(s, " of 20 journeys, ") || !strings.HasSuffix(s, "\r\x1b[K") {
		t.Errorf("progress %q", s)
	}
	if counted.n == 0 {
		t.Errorf("nothing counted")
	}
}

// TestWantProgress: only on a terminal, never with -q, not when journeys
// are printed to the same terminal.
func TestWantProgress(t *testing.T) {
	tty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer tty.Close()
	if !isTerminal(tty) {
		t.Skip("/dev/ptmx is not a terminal here")
	}
	var buf bytes.Buffer
	for _, tc := range []struct {
		stdout, stderr  io.Writer
		quiet, printing bool
		want            bool
	}{
		{&buf, tty, false, false, true},
		{tty, tty, false, false, true},
		{&buf, tty, false, true, true},
		{tty, tty, false, true, false},
		{&buf, tty, true, false, false},
		{tty, &buf, false, false, false},
	} {
		if got := wantProgress(tc.stdout, tc.stderr, tc.quiet, tc.printing); got != tc.want {
			t.Errorf("stdout tty %v, stderr tty %v, quiet %v, printing %v: %v, want %v",
				tc.stdout == tty, tc.stderr == tty, tc.quiet, tc.printing, got, tc.want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 KB", 42_000: "42.0 KB", 1_500_000: "1.5 MB", 2_300_000_000: "2.3 GB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("%d: %q, want %q", n, got, want)
		}
	}
}
