package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/tracer"
	"github.com/hoptrace/hoptrace/tracer/capture"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

const recordUsage = `Usage: hoptrace record -w FILE [flags] [EXPRESSION]

Captures what 'hoptrace trace' would show into a recording file, for analysis
later and elsewhere: 'hoptrace replay FILE', 'hoptrace latency FILE' and
'hoptrace export --pcapng OUT FILE' need neither root nor Docker. The file
keeps every hop and drop, the container names and topology as they were at
record time, and the kernel's loss counters. It is written as a stream and
flushed every second: a recording cut short (SIGKILL, full disk) still reads
back up to its last complete record.

With --snaplen N the first N bytes of each packet are kept too (for pcapng
export); without, hops carry decoded headers only (tens of bytes per hop).
Long captures can be split into parts (trace.0001.hop, trace.0002.hop, ...)
by size or age, in the spirit of tcpdump's -C, -G and -W. A filter
EXPRESSION records only matching packets, as in 'hoptrace trace'.

Examples:
  hoptrace record -w incident.hop                   until Ctrl-C
  hoptrace record -w web.hop -C web --duration 1m --print
  hoptrace record -w big.hop --rotate-size 100MB --rotate-files 10
  hoptrace record -w dns.hop udp port 53
`

func runRecord(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("record", recordUsage, stdout, stderr)
	path := fs.StringP("write", "w", "", "write the recording to this file (\"-\": standard output); required")
	var cf captureFlags
	cf.register(fs)
	snaplen := fs.Uint32P("snaplen", "s", 0, fmt.Sprintf("keep the first N bytes of each packet; 0: whole packets (up to %d bytes), as in tcpdump; without -s: decoded headers only", tracer.MaxSnaplen))
	print := fs.Bool("print", false, "also print journeys live, as 'hoptrace trace' does")
	var pf printFlags
	pf.register(fs, "with --print: ")
	rotSize := fs.String("rotate-size", "", "start a new part once a file reaches this size, e.g. 100MB (tcpdump -C)")
	rotAge := fs.Duration("rotate-time", 0, "start a new part after this long, e.g. 10m (tcpdump -G)")
	rotFiles := fs.Int("rotate-files", 0, "keep only the newest N parts (tcpdump -W); 0 keeps all")
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	if err := cf.validate(fs); err != nil {
		return err
	}
	if *path == "" {
		return usagef("record: -w FILE is required (see 'hoptrace record --help')")
	}
	if err := pf.validate("record"); err != nil {
		return err
	}
	maxBytes, err := parseSize(*rotSize)
	if err != nil {
		return usagef("record: --rotate-size: %v", err)
	}
	if cf.snaplen, err = snaplenOf(*snaplen, fs.Changed("snaplen")); err != nil {
		return err
	}
	if *rotFiles < 0 {
		return usagef("record: --rotate-files must not be negative")
	}
	rotating := maxBytes > 0 || *rotAge > 0
	if *rotFiles > 0 && !rotating {
		return usagef("record: --rotate-files needs --rotate-size or --rotate-time")
	}
	toStdout := *path == "-"
	switch {
	case toStdout && rotating:
		return usagef("record: -w - (standard output) cannot be rotated")
	case toStdout && *print:
		return usagef("record: -w - writes the recording to standard output: --print would mix journeys into it (pipe it to 'hoptrace replay -' instead)")
	}

	var files func() []string
	hooks := liveHooks{
		// Without --print (or -c, which counts journeys) nobody looks at
		// journeys now: replay assembles them, and the capture spends its
		// CPU on writing alone.
		noJourneys: !*print && cf.count == 0,
		sinks: func(s *capture.Session) ([]pipeline.Sink, error) {
			hdr := recordingHeader(s, &cf)
			var sink tracefile.Sink
			var size func() int64
			if rotating {
				r, err := tracefile.CreateRotating(tracefile.RotateConfig{Path: *path, MaxBytes: maxBytes, MaxAge: *rotAge, MaxFiles: *rotFiles}, hdr)
				if err != nil {
					return nil, err
				}
				sink, files = r, r.Files
				size = func() int64 { return filesSize(r.Files()) }
			} else {
				w, err := createRecording(*path, hdr, stdout)
				if err != nil {
					return nil, err
				}
				sink, files, size = w, func() []string { return []string{*path} }, w.Size
			}
			rec := &recordingSink{Recorder: pipeline.NewRecorder(sink), path: *path}
			// The topology at the start: names must be in the file before any hop.
			if err := rec.Event(pipeline.Event{Topology: s.Snapshot()}); err != nil {
				rec.Close(event.Loss{})
				return nil, err
			}
			sinks := []pipeline.Sink{rec}
			if wantProgress(stdout, stderr, cf.quiet, *print) {
				sinks = append(sinks, &recordProgress{p: newProgress(stderr, nil), bytes: size})
			}
			return sinks, nil
		},
		finish: func(runErr error) error {
			var we *recordWriteError
			if files == nil || errors.As(runErr, &we) {
				return nil
			}
			if !toStdout {
				fmt.Fprintf(stderr, "recorded to %s\n", strings.Join(files(), ", "))
			}
			return nil
		},
	}
	printer := func(opt render.Options) render.Printer {
		if !*print {
			return summaryOnly{render.NewText(stderr, opt)}
		}
		return linked(pf.printer(stdout, stderr, opt))
	}
	return liveJourneys(ctx, "record", &cf, stdout, stderr, printer, hooks)
}

// snaplenOf is tcpdump's rule for -s: 0 means whole packets (up to what
// the tracer can carry); without -s hops carry decoded headers only.
func snaplenOf(n uint32, given bool) (uint32, error) {
	switch {
	case n > tracer.MaxSnaplen:
		return 0, usagef("record: --snaplen %d is more than the %d supported (-s 0 keeps whole packets up to that)", n, tracer.MaxSnaplen)
	case n == 0 && given:
		return tracer.MaxSnaplen, nil
	}
	return n, nil
}

// createRecording starts a recording at path, "-" being stdout.
func createRecording(path string, hdr tracefile.Header, stdout io.Writer) (*tracefile.Writer, error) {
	if path == "-" {
		return tracefile.Create(stdout, hdr)
	}
	return tracefile.CreateFile(path, hdr)
}

// recordingSink names the file in its write errors.
type recordingSink struct {
	*pipeline.Recorder
	path string
}

// recordWriteError is a failed write to the recording.
type recordWriteError struct {
	path string
	err  error
}

func (e *recordWriteError) Error() string {
	return fmt.Sprintf("write %s: %v (the recording is readable up to the last complete record)", e.path, e.err)
}
func (e *recordWriteError) Unwrap() error { return e.err }

func (r *recordingSink) Event(e pipeline.Event) error {
	if err := r.Recorder.Event(e); err != nil {
		return &recordWriteError{r.path, err}
	}
	return nil
}

func (r *recordingSink) Summary(s render.Summary) error {
	if err := r.Recorder.Summary(s); err != nil {
		return &recordWriteError{r.path, err}
	}
	return nil
}

// summaryOnly prints no journeys, only the summary (record without --print).
type summaryOnly struct{ render.Printer }

func (summaryOnly) Journey(*journey.Journey) error { return nil }

// KeepsJourneys is false: it looks at none (pipeline.JourneyKeeper).
func (summaryOnly) KeepsJourneys() bool { return false }

func recordingHeader(s *capture.Session, cf *captureFlags) tracefile.Header {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	host, _ := os.Hostname()
	f := s.Features()
	var feats []string
	for _, x := range []struct {
		on   bool
		name string
	}{{f.TCX, "tcx"}, {!f.TCX, "clsact"}, {f.SkbKey, "skb-key"}, {f.Drops, "drop-reasons"}} {
		if x.on {
			feats = append(feats, x.name)
		}
	}
	return tracefile.Header{
		HoptraceVersion: versionString(),
		Kernel:          unix.ByteSliceToString(uts.Release[:]),
		Hostname:        host,
		Start:           time.Now(),
		MonoOffsetNS:    s.Clock().Offset(),
		Snaplen:         cf.snaplen,
		Containers:      cf.containers,
		Interfaces:      cf.ifaces,
		Features:        feats,
		Filter:          cf.filter.String(),
	}
}

// parseSize reads sizes like 500000, 64KB, 100MB, 2GB (powers of 1000; KiB, MiB, GiB for 1024).
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1}}
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) && len(s) > len(u.suffix) {
			num, mult = s[:len(s)-len(u.suffix)], u.mult
			break
		}
	}
	var n int64
	if _, err := fmt.Sscanf(num, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != strings.TrimSpace(num) {
		return 0, fmt.Errorf("%q is not a size like 100MB", s)
	}
	return n * mult, nil
}
