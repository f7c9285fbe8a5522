package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile/playback"
)

const replayUsage = `Usage: hoptrace replay [flags] FILE...
       hoptrace replay [flags] -r FILE [EXPRESSION]

Prints the journeys of a recording made by 'hoptrace record -w FILE' exactly
as 'hoptrace trace' showed them live: the same journey assembler and printers,
with the container and interface names the recording host had at the time
(the recording carries them). Needs neither root nor Docker; runs anywhere.

Several files are read in order as one recording, e.g. the parts of a rotated
recording: hoptrace replay trace.*.hop. A recording that was cut short (hoptrace
killed, disk full, power loss) replays up to its last complete record, with a
note on stderr. FILE "-" reads standard input, so a live recording can be
replayed as it is written: hoptrace record -w - | hoptrace replay -.
Journeys go to stdout; the summary goes to stderr (a JSON line with -o json).
As in tcpdump, -r FILE reads a recording, and words after it are a filter
expression.

Examples:
  hoptrace replay x.hop                journeys as text
  hoptrace replay -C web -v x.hop      journeys of container web, one line per hop
  hoptrace replay -o json x.hop        JSON lines (docs/journey-json.md)
  hoptrace replay -f 'tcp port 80' x.hop   only journeys of packets matching a filter
  hoptrace replay -r x.hop tcp port 80     the same, tcpdump style
`

// runReplay prints the journeys of recordings.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("replay", replayUsage, stdout, stderr)
	var of offlineFlags
	of.register(fs, "show")
	var pf printFlags
	pf.register(fs, "")
	count := fs.IntP("count", "c", 0, "stop after this many journeys (0: all)")
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	files, sel, err := of.selection("replay", fs.Args())
	if err != nil {
		return err
	}
	if *count < 0 {
		return usagef("replay: -c must not be negative")
	}
	if err := pf.validate("replay"); err != nil {
		return err
	}
	src, err := openRecordings("replay", files, stderr, of.quiet)
	if err != nil {
		return err
	}
	defer src.Close()
	pr := linked(pf.printer(stdout, stderr, render.Options{WallOffsetNS: src.Header().MonoOffsetNS}))
	return offline(ctx, "replay", src, pipeline.Config{Journey: of.journey, Select: sel, Count: *count}, stderr, pr)
}

// openRecordings opens recordings (FILE "-" is standard input) as one
// pipeline source; a part cut short gets a note on stderr unless quiet.
func openRecordings(name string, paths []string, stderr io.Writer, quiet bool) (*playback.Source, error) {
	src, err := playback.NewSource(paths, func(path string) (io.ReadCloser, error) {
		if path == "-" {
			return io.NopCloser(os.Stdin), nil
		}
		return os.Open(path)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if !quiet {
		src.Note = func(path, note string) { fmt.Fprintf(stderr, "hoptrace: %s %s: %s\n", name, path, note) }
	}
	return src, nil
}

// offline runs recordings through the pipeline to the sinks. A --container
// that named nothing in the recording is a warning and exit status 1, a
// closed stdout (the error wraps EPIPE) a quiet end (see exitCode).
func offline(ctx context.Context, name string, src *playback.Source, cfg pipeline.Config, stderr io.Writer, sinks ...pipeline.Sink) error {
	res, err := pipeline.Run(ctx, src, cfg, sinks...)
	if err != nil {
		var amb *topology.AmbiguousError
		if errors.As(err, &amb) {
			return usageError{fmt.Errorf("%s: %w", name, err)}
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(res.Unmatched) > 0 {
		return fmt.Errorf("%s: no container %s in the recording (see 'hoptrace links' at record time, or replay without -C)", name, strings.Join(quoted(res.Unmatched), ", "))
	}
	return nil
}

func quoted(ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = fmt.Sprintf("%q", w)
	}
	return out
}
