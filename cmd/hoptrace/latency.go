package main

import (
	"context"
	"io"
	"os"

	"github.com/hoptrace/hoptrace/tracer/filter"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/latency"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
)

const latencyUsage = `Usage: hoptrace latency [flags] [FILE... | EXPRESSION]
       hoptrace latency [flags] -r FILE [EXPRESSION]

Per-path and per-hop latency percentiles (count, min, p50, p90, p99, max): for
each path (client:eth0 -> web:eth0, ...) the time between consecutive hops and
end to end, to tell the bridge apart from the application. Then the
exchanges, requests paired with their responses per client, server port and
protocol: network time (client to server and back) apart from server time
(request in to response out); TCP handshakes; TCP retransmissions per path
and the time they cost (docs/exchanges.md).

With FILE (recordings from 'hoptrace record'; '-' reads stdin) it reports on
the recording and needs neither root nor Docker. Without, it traces live like
'hoptrace trace' and prints the report when stopped (Ctrl-C, -c, --duration);
then trailing words that start with a filter keyword (tcp, host, port, not,
'(' ...) and name no file are a filter expression, as in 'hoptrace trace'.

Examples:
  hoptrace latency incident.hop
  hoptrace latency -C web --duration 30s
  hoptrace latency -C web --duration 30s tcp port 8080
  hoptrace latency -o json trace.0001.hop trace.0002.hop
  hoptrace latency -r incident.hop tcp port 8080
`

func runLatency(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("latency", latencyUsage, stdout, stderr)
	var cf captureFlags
	cf.register(fs)
	output := fs.StringP("output", "o", "text", "output format: text or json")
	expr := fs.StringP("filter", "f", "", "only packets matching this filter expression, e.g. 'tcp port 8080' (live or from recordings)")
	var read readFlag
	read.register(fs)
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	files, words := read.split(fs.Args())
	if len(read.files) > 0 && words != "" {
		if *expr != "" {
			return usagef("latency: give the filter either with -f or as trailing words, not both")
		}
		*expr = words
	}
	pf, err := packetFilter("latency", *expr)
	if err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		return usagef("latency: -o must be text or json, not %q", *output)
	}
	write := func(r latency.Report) error {
		if *output == "json" {
			return latency.WriteJSON(stdout, r)
		}
		return latency.WriteText(stdout, r)
	}
	agg := latency.New(latency.Config{})

	if len(read.files) > 0 || fs.NArg() > 0 && !isFilterArg(fs.Arg(0)) {
		src, err := openRecordings("latency", files, stderr, cf.quiet)
		if err != nil {
			return err
		}
		defer src.Close()
		cfg := pipeline.Config{
			Journey: journey.Config{Timeout: cf.timeout},
			Select:  journey.Selection{Containers: cf.containers, Interfaces: cf.ifaces, Packet: pf},
			Count:   cf.count,
		}
		return offline(ctx, "latency", src, cfg, stderr, latencySink(agg, write))
	}

	if pf != nil && fs.NArg() > 0 {
		return usagef("latency: give the filter either with -f or as trailing words, not both")
	}
	if err := cf.validate(fs); err != nil {
		return err
	}
	if pf != nil {
		cf.filter = pf.(*filter.Program) // evaluated in the kernel, as trailing words are
	}
	return liveJourneys(ctx, "latency", &cf, stdout, stderr, func(render.Options) render.Printer {
		return latencySink(agg, write)
	}, liveHooks{})
}

// latencyPrinter aggregates journeys instead of printing them, and prints
// the report at the end.
type latencyPrinter struct {
	agg   *latency.Aggregator
	write func(latency.Report) error
}

func (p *latencyPrinter) Journey(j *journey.Journey) error { p.agg.Add(j); return nil }
func (p *latencyPrinter) Summary(render.Summary) error     { return p.write(p.agg.Report()) }

// isFilterArg tells a live filter expression from recording files: its first
// word starts an expression and is not a file.
func isFilterArg(arg string) bool {
	if !filter.StartsExpression(arg) {
		return false
	}
	_, err := os.Stat(arg)
	return err != nil
}
