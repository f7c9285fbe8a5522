package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pcapng"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// progressEvery is how often a progress line is rewritten.
const progressEvery = time.Second

// isTerminal reports whether w is a terminal (an *os.File, or the
// outWriter around one).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// wantProgress: a progress line is for a person watching a long run, so
// only on a terminal, never with -q, and not when journeys are printed to
// the same terminal (the line would tear them).
func wantProgress(stdout, stderr io.Writer, quiet, printing bool) bool {
	return !quiet && isTerminal(stderr) && !(printing && isTerminal(stdout))
}

// progress rewrites one line on stderr at most every progressEvery.
type progress struct {
	w     io.Writer
	now   func() time.Time
	start time.Time
	last  time.Time
	shown bool
}

func newProgress(w io.Writer, now func() time.Time) *progress {
	if now == nil {
		now = time.Now
	}
	t := now()
	return &progress{w: w, now: now, start: t, last: t}
}

// due reports whether a new line is due, and the time since the last one.
func (p *progress) due() (time.Duration, bool) {
	t := p.now()
	d := t.Sub(p.last)
	if d < progressEvery {
		return 0, false
	}
	p.last = t
	return d, true
}

func (p *progress) show(line string) {
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.shown = true
}

// clear removes the line, so what follows (the summary) starts clean.
func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

// recordProgress is an event sink of record: hops, hops/s, bytes written
// and events lost, on the capture's ticks.
type recordProgress struct {
	p           *progress
	bytes       func() int64
	hops, drops uint64
	lastHops    uint64
	loss        event.Loss
}

func (r *recordProgress) Event(e pipeline.Event) error {
	switch {
	case e.Hop != nil:
		r.hops++
	case e.Drop != nil:
		r.drops++
	case e.Loss != nil:
		r.loss = *e.Loss
	default:
		if d, ok := r.p.due(); ok {
			rate := float64(r.hops-r.lastHops) / d.Seconds()
			r.lastHops = r.hops
			r.p.show(fmt.Sprintf("recording: %d hops (%.0f/s), %d drops, %s written, %d events lost",
				r.hops, rate, r.drops, formatBytes(r.bytes()), r.loss.Total()))
		}
	}
	return nil
}

func (r *recordProgress) Journey(*journey.Journey) error { return nil }
func (r *recordProgress) Summary(render.Summary) error   { r.p.clear(); return nil }

// exportProgress is a sink after export's exporter: packets, packets/s,
// journeys and bytes written, as journeys come.
type exportProgress struct {
	p           *progress
	ex          *pcapng.Exporter
	out         *countingWriter
	lastPackets int
}

func (e *exportProgress) Journey(*journey.Journey) error {
	if d, ok := e.p.due(); ok {
		st := e.ex.Stats()
		rate := float64(st.Packets-e.lastPackets) / d.Seconds()
		e.lastPackets = st.Packets
		e.p.show(fmt.Sprintf("exporting: %d packets (%.0f/s) of %d journeys, %s written",
			st.Packets, rate, st.Journeys, formatBytes(e.out.n)))
	}
	return nil
}

func (e *exportProgress) Summary(render.Summary) error { e.p.clear(); return nil }

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// Fd keeps the terminal check working through the counter.
func (c *countingWriter) Fd() uintptr {
	if f, ok := c.w.(interface{ Fd() uintptr }); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}

// formatBytes: 512 B, 42.0 KB, 1.5 MB, 2.3 GB (powers of 1000, as --rotate-size).
func formatBytes(n int64) string {
	switch {
	case n < 1e3:
		return fmt.Sprintf("%d B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	case n < 1e9:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}

// filesSize is the size of files on disk now (the parts of a rotated recording).
func filesSize(files []string) int64 {
	var n int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			n += st.Size()
		}
	}
	return n
}
