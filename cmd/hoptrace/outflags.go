package main

import (
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// printFlags choose how journeys are printed: trace, record --print, replay.
type printFlags struct {
	output  string
	verbose bool
	color   colorFlag
}

// register adds -o, -v, --color and --no-color; when says when they apply
// ("" or "with --print: ").
func (p *printFlags) register(fs *pflag.FlagSet, when string) {
	fs.StringVarP(&p.output, "output", "o", "text", when+"output format: text or json (JSON lines)")
	fs.BoolVarP(&p.verbose, "verbose", "v", false, when+"print each hop of a journey with its time and delta")
	p.color.register(fs, when)
}

func (p *printFlags) validate(name string) error {
	if p.output != "text" && p.output != "json" {
		return usagef("%s: -o must be text or json, not %q", name, p.output)
	}
	return p.color.validate(name)
}

// printer makes the journey printer the flags ask for: journeys on stdout,
// the summary on stderr in the same format (a JSON line with -o json), so
// stdout holds only the journeys.
func (p *printFlags) printer(stdout, stderr io.Writer, opt render.Options) render.Printer {
	if p.output == "json" {
		return newSplitPrinter(stdout, render.NewJSON(stdout, opt), render.NewJSON(stderr, opt))
	}
	opt.Verbose = p.verbose
	out, errOpt := opt, opt
	out.Color = p.color.use(stdout)
	errOpt.Color = p.color.use(stderr)
	return newSplitPrinter(stdout, render.NewText(stdout, out), render.NewText(stderr, errOpt))
}

// splitPrinter prints journeys to stdout with one printer and the summary
// to stderr with another: summaries and notes go to stderr, only the asked
// output to stdout. Once stdout failed (a closed pipe) no summary is
// printed: the reader went away, and that is a quiet end.
type splitPrinter struct {
	stdout   io.Writer
	journeys render.Printer
	summary  render.Printer
	err      error
}

func newSplitPrinter(stdout io.Writer, journeys, summary render.Printer) *splitPrinter {
	return &splitPrinter{stdout: stdout, journeys: journeys, summary: summary}
}

func (s *splitPrinter) Journey(j *journey.Journey) error {
	if s.err == nil {
		s.err = s.journeys.Journey(j)
	}
	return s.err
}

// KeepsJourneys is the journey printer's (pipeline.JourneyKeeper).
func (s *splitPrinter) KeepsJourneys() bool { return pipeline.KeepsJourneys(s.journeys) }

// Summary waits until the journeys were written, then prints the summary.
func (s *splitPrinter) Summary(sum render.Summary) error {
	if s.err == nil {
		s.err = flushOutput(s.stdout)
	}
	if s.err != nil {
		return s.err
	}
	return s.summary.Summary(sum)
}

// stderrSummary is the printer of the summary alone, for when stdout is
// stuck.
func (s *splitPrinter) stderrSummary() render.Printer { return s.summary }

// colorFlag is --color=auto|always|never, with --no-color for never.
type colorFlag struct {
	mode    string
	noColor bool
}

func (c *colorFlag) register(fs *pflag.FlagSet, when string) {
	fs.StringVar(&c.mode, "color", "auto", when+"colours: auto (on a terminal, unless NO_COLOR is set), always or never")
	fs.BoolVar(&c.noColor, "no-color", false, when+"no colours (the same as --color=never)")
}

func (c *colorFlag) validate(name string) error {
	switch c.mode {
	case "auto", "always", "never":
		return nil
	}
	return usagef("%s: --color must be auto, always or never, not %q", name, c.mode)
}

// use decides colour for output to w.
func (c *colorFlag) use(w io.Writer) bool {
	switch {
	case c.noColor || c.mode == "never":
		return false
	case c.mode == "always":
		return true
	}
	return useColor(w, false)
}

// tcpdumpHabits accepts tcpdump's -n (never resolve addresses: hoptrace
// never does) and -l (line-buffered output: hoptrace writes each line as
// it is made), so commands typed from habit work.
func tcpdumpHabits(fs *pflag.FlagSet) {
	fs.BoolP("numeric", "n", false, "accepted for tcpdump habits: addresses are never resolved to host names anyway")
	fs.BoolP("line-buffered", "l", false, "accepted for tcpdump habits: each line is written as soon as it is made anyway")
}

// readFlag is tcpdump's -r FILE (repeatable) on the commands that read
// recordings: replay, latency and export.
type readFlag struct{ files []string }

func (r *readFlag) register(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&r.files, "read", "r", nil, "read this recording (\"-\": standard input), as tcpdump -r; repeatable, before any FILE arguments")
}

// split sorts a command's arguments into recordings and a filter
// expression: the -r files, then FILE arguments; after -r, as in
// 'tcpdump -r FILE EXPRESSION', trailing words that start an expression
// and name no file are the filter.
func (r *readFlag) split(args []string) (files []string, expr string) {
	files = append(files, r.files...)
	if len(r.files) > 0 && len(args) > 0 && isFilterArg(args[0]) {
		return files, strings.Join(args, " ")
	}
	return append(files, args...), ""
}

// offlineFlags are the selection flags of the commands that read
// recordings: replay and export (latency takes the capture flags).
type offlineFlags struct {
	containers []string
	ifaces     []string
	journey    journey.Config
	quiet      bool
	expr       string
	read       readFlag
}

// register adds -C, -i, --journey-timeout, -q and -f; verb says what the
// command does with what they select ("show", "export").
func (o *offlineFlags) register(fs *pflag.FlagSet, verb string) {
	fs.StringArrayVarP(&o.containers, "container", "C", nil, verb+" only journeys of this container (name, ID or unique ID prefix); repeatable")
	fs.StringArrayVarP(&o.ifaces, "iface", "i", nil, verb+" only journeys through this interface (veth3c4d, docker0 or web:eth0); repeatable")
	fs.DurationVar(&o.journey.Timeout, "journey-timeout", journey.DefaultTimeout, "finish a journey that saw no hop for this long (as for trace)")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "no notes on stderr (recordings cut short)")
	fs.StringVarP(&o.expr, "filter", "f", "", verb+" only journeys whose packet matches this filter expression, e.g. 'tcp port 8080'")
	o.read.register(fs)
	tcpdumpHabits(fs)
}

// selection sorts the arguments into recordings and a filter expression
// (see readFlag.split), compiles the filter and returns the recordings and
// the journeys' selection.
func (o *offlineFlags) selection(name string, args []string) ([]string, journey.Selection, error) {
	files, expr := o.read.split(args)
	switch {
	case len(files) == 0:
		return nil, journey.Selection{}, usagef("%s: no recording given (see 'hoptrace %s --help')", name, name)
	case expr != "" && o.expr != "":
		return nil, journey.Selection{}, usagef("%s: give the filter either with -f or as trailing words, not both", name)
	case expr == "":
		expr = o.expr
	}
	pf, err := packetFilter(name, expr)
	if err != nil {
		return nil, journey.Selection{}, err
	}
	return files, journey.Selection{Containers: o.containers, Interfaces: o.ifaces, Packet: pf}, nil
}
