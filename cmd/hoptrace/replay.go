package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/playback"
)

const replayUsage = `Usage: hoptrace replay [flags] FILE...

Prints the journeys of a recording made by 'hoptrace record -w FILE' exactly
as 'hoptrace trace' showed them live: the same journey assembler and printers,
with the container and interface names the recording host had at the time
(the recording carries them). Needs neither root nor Docker; runs anywhere.

Several files are read in order as one recording, e.g. the parts of a rotated
recording: hoptrace replay trace.*.hop. A recording that was cut short (hoptrace
killed, disk full, power loss) replays up to its last complete record, with a
note on stderr. FILE "-" reads standard input.

Examples:
  hoptrace replay x.hop                journeys as text
  hoptrace replay -C web -v x.hop      journeys of container web, one line per hop
  hoptrace replay -o json x.hop        JSON lines (docs/journey-json.md)
  hoptrace replay -f 'tcp port 80' x.hop   only journeys of packets matching a filter
`

// runReplay prints the journeys of recordings.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("replay", replayUsage, stdout, stderr)
	containers := fs.StringArrayP("container", "C", nil, "show only journeys of this container (name or ID); repeatable")
	ifaces := fs.StringArrayP("iface", "i", nil, "show only journeys through this interface (veth3c4d, docker0 or web:eth0); repeatable")
	output := fs.StringP("output", "o", "text", "output format: text or json (JSON lines)")
	verbose := fs.BoolP("verbose", "v", false, "print each hop of a journey with its time and delta")
	count := fs.IntP("count", "c", 0, "stop after this many journeys (0: all)")
	timeout := fs.Duration("journey-timeout", journey.DefaultTimeout, "finish a journey that saw no hop for this long (as for trace)")
	noColor := fs.Bool("no-color", false, "no colours (also NO_COLOR=1; colour is only used on a terminal)")
	quiet := fs.BoolP("quiet", "q", false, "no notes on stderr (truncated files)")
	expr := fs.StringP("filter", "f", "", "show only journeys whose packet matches this filter expression, e.g. 'tcp port 8080' (as trace's)")
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	pf, err := packetFilter("replay", *expr)
	if err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0:
		return usagef("replay: no recording given (see 'hoptrace replay --help')")
	case *output != "text" && *output != "json":
		return usagef("replay: -o must be text or json, not %q", *output)
	case *count < 0:
		return usagef("replay: -c must not be negative")
	}
	sel := playback.Selection{Containers: *containers, Interfaces: *ifaces, Packet: pf}

	var pr render.Printer
	printed := 0
	errEnough := errors.New("enough journeys")
	player := playback.New(journey.Config{Timeout: *timeout}, func(j *journey.Journey) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !sel.Match(j) {
			return nil
		}
		if err := pr.Journey(j); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		printed++
		if *count > 0 && printed >= *count {
			return errEnough
		}
		return nil
	})
	err = playFiles("replay", fs.Args(), stderr, *quiet, func(r *tracefile.Reader) error {
		if pr == nil {
			// The first file's clock offset converts every part's times.
			opt := render.Options{WallOffsetNS: r.Header().MonoOffsetNS}
			if *output == "json" {
				pr = render.NewJSON(stdout, opt)
			} else {
				opt.Color = useColor(stdout, *noColor)
				opt.Verbose = *verbose
				pr = render.NewText(stdout, opt)
			}
		}
		return player.Play(r)
	})
	if err == nil {
		err = player.Finish()
	}
	switch {
	case errors.Is(err, errEnough):
	case err != nil:
		return err
	}
	if pr == nil {
		return nil
	}
	return pr.Summary(render.Summary{Stats: player.Stats(), Loss: player.Loss()})
}

// playFiles opens each recording in turn and hands it to play; errors name
// the file. A recording that was cut short gets a note on stderr (unless quiet).
func playFiles(name string, files []string, stderr io.Writer, quiet bool, play func(*tracefile.Reader) error) error {
	for _, path := range files {
		if err := playFile(name, path, stderr, quiet, play); err != nil {
			return err
		}
	}
	return nil
}

func playFile(name, path string, stderr io.Writer, quiet bool, play func(*tracefile.Reader) error) error {
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer f.Close()
		in = f
	}
	r, err := tracefile.Open(in)
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, path, err)
	}
	if err := play(r); err != nil {
		return fmt.Errorf("%s %s: %w", name, path, err)
	}
	if t := r.Truncated(); t != nil && !quiet {
		fmt.Fprintf(stderr, "hoptrace: %s %s: %s\n", name, path, t)
	}
	return nil
}
