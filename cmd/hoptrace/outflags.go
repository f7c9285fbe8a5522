package main

import (
	"io"

	"github.com/spf13/pflag"

	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// printFlags choose how journeys are printed: trace, record --print, replay.
type printFlags struct {
	output  string
	verbose bool
	noColor bool
}

// register adds -o, -v and --no-color; when says when they apply ("" or
// "with --print: ").
func (p *printFlags) register(fs *pflag.FlagSet, when string) {
	fs.StringVarP(&p.output, "output", "o", "text", when+"output format: text or json (JSON lines)")
	fs.BoolVarP(&p.verbose, "verbose", "v", false, when+"print each hop of a journey with its time and delta")
	fs.BoolVar(&p.noColor, "no-color", false, when+"no colours (also NO_COLOR=1; colour is only used on a terminal)")
}

func (p *printFlags) validate(name string) error {
	if p.output != "text" && p.output != "json" {
		return usagef("%s: -o must be text or json, not %q", name, p.output)
	}
	return nil
}

// printer makes the journey printer the flags ask for.
func (p *printFlags) printer(stdout io.Writer, opt render.Options) render.Printer {
	if p.output == "json" {
		return render.NewJSON(stdout, opt)
	}
	opt.Color = useColor(stdout, p.noColor)
	opt.Verbose = p.verbose
	return render.NewText(stdout, opt)
}

// offlineFlags are the selection flags of the commands that read
// recordings: replay and export (latency takes the capture flags).
type offlineFlags struct {
	containers []string
	ifaces     []string
	journey    journey.Config
	quiet      bool
	expr       string
}

// register adds -C, -i, --journey-timeout, -q and -f; verb says what the
// command does with what they select ("show", "export").
func (o *offlineFlags) register(fs *pflag.FlagSet, verb string) {
	fs.StringArrayVarP(&o.containers, "container", "C", nil, verb+" only journeys of this container (name, ID or unique ID prefix); repeatable")
	fs.StringArrayVarP(&o.ifaces, "iface", "i", nil, verb+" only journeys through this interface (veth3c4d, docker0 or web:eth0); repeatable")
	fs.DurationVar(&o.journey.Timeout, "journey-timeout", journey.DefaultTimeout, "finish a journey that saw no hop for this long (as for trace)")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "no notes on stderr (recordings cut short)")
	fs.StringVarP(&o.expr, "filter", "f", "", verb+" only journeys whose packet matches this filter expression, e.g. 'tcp port 8080'")
}

// selection compiles the filter and returns the journeys' selection.
func (o *offlineFlags) selection(name string) (journey.Selection, error) {
	pf, err := packetFilter(name, o.expr)
	if err != nil {
		return journey.Selection{}, err
	}
	return journey.Selection{Containers: o.containers, Interfaces: o.ifaces, Packet: pf}, nil
}
