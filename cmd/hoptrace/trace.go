package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"time"

	"github.com/hoptrace/hoptrace/tracer/capture"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
)

const traceUsage = `Usage: hoptrace trace [flags] [EXPRESSION]

Traces every packet crossing Docker's bridges live and prints one journey per
packet: the interfaces it passed, with container names, the time it took, and
its fate (delivered, passed to the host, left the host, dropped and why).

hoptrace hooks docker0, every user-defined Docker bridge, each container veth
and (unless --no-container-side) eth0 inside each container, and follows
containers as they come and go. It needs root. Ctrl-C (or -c, --duration)
stops it, detaches every hook and prints a summary: journeys, drops by reason,
and events lost if the kernel's ring buffer ever overflowed.

EXPRESSION is a tcpdump-style filter evaluated in the kernel: host ADDR,
net CIDR, port N, portrange N-M (each optionally after src or dst), tcp,
udp, icmp, icmp6, arp, ip, ip6, joined with and/&&, or/||, not/! and
parentheses. It decides at the packet's first hook; later hops of a
matching packet are shown even after NAT rewrote its addresses.

Examples:
  hoptrace trace                      every journey on every Docker bridge
  hoptrace trace -C web -v            journeys of container web, one line per hop
  hoptrace trace -o json -c 100       100 journeys as JSON lines (docs/journey-json.md)
  hoptrace trace -C web tcp port 8080 TCP to or from port 8080 only
  hoptrace trace 'host 172.17.0.2 and not (arp or icmp)'
  hoptrace trace --exchanges -C web   one line per request and response: network and server time

A TCP segment sent again (a retransmission) says which journey it repeats
and what became of that one (docs/exchanges.md).
`

// runTrace prints journeys live.
func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("trace", traceUsage, stdout, stderr)
	var cf captureFlags
	cf.register(fs)
	var pf printFlags
	pf.register(fs, "")
	exchanges := fs.Bool("exchanges", false, "print one line per completed exchange (request and response, TCP handshake) instead of the journeys (docs/exchanges.md)")
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	if err := cf.validate(fs); err != nil {
		return err
	}
	if err := pf.validate("trace"); err != nil {
		return err
	}
	return liveJourneys(ctx, "trace", &cf, stdout, stderr, func(opt render.Options) render.Printer {
		if *exchanges {
			return exchangeLines(&pf, stdout, stderr, opt)
		}
		return linked(pf.printer(stdout, stderr, opt))
	}, liveHooks{})
}

// liveHooks let record add its recorder to the live pipeline.
type liveHooks struct {
	// sinks is called once the capture is open; the sinks it returns get
	// every event (pipeline.EventSink) and journey besides the printer.
	sinks func(s *capture.Session) ([]pipeline.Sink, error)
	// finish runs after the capture stopped, with its error, before the
	// summary is printed.
	finish func(runErr error) error
	// noJourneys skips assembly: nothing but the sinks' events is wanted.
	noJourneys bool
}

// eventsOnlyTick is the capture's tick when nothing is assembled.
const eventsOnlyTick = 250 * time.Millisecond

// captureConfig is the capture's configuration for these flags and hooks.
func (h liveHooks) captureConfig(cf *captureFlags, log *slog.Logger) capture.Config {
	c := cf.config(log)
	if h.assembles(cf) {
		return c
	}
	// No journey waits on time: the ticks only flush the recording (once
	// a second) and report losses, and each one wakes the process.
	c.TickInterval = eventsOnlyTick
	return c
}

// assembles tells whether the run assembles journeys: unless only the
// sinks' events are wanted and no metrics are served from journeys.
func (h liveHooks) assembles(cf *captureFlags) bool {
	return !h.noJourneys || cf.metricsAddr != ""
}

// liveJourneys runs a capture through the pipeline to a printer (and the
// hooks' sinks) until the context ends, -c journeys were printed or
// --duration passed; then detaches and prints the summary.
func liveJourneys(ctx context.Context, name string, cf *captureFlags, stdout, stderr io.Writer,
	printer func(render.Options) render.Printer, hooks liveHooks) (err error) {
	log := logger(stderr, cf.quiet, cf.verifierLog)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Whatever stops the capture (a signal, -c, --duration, a write error),
	// the output has stopGrace to be read; then writes fail instead of
	// blocking, so the hooks are detached and the process ends.
	defer context.AfterFunc(ctx, func() { giveUpBy(time.Now().Add(stopGrace), stdout, stderr) })()
	if err := checkPrivileges(name, privileges{netAdmin: true, bpf: true, docker: !cf.noDocker}); err != nil {
		return err
	}
	sess, err := capture.Open(ctx, hooks.captureConfig(cf, log))
	if err != nil {
		return fmt.Errorf("%s: %w", name, explainVerifier(err, cf.verifierLog))
	}
	defer func() { err = errors.Join(err, closeSession(name, sess)) }()
	log.Info(fmt.Sprintf("tracing: %d interfaces hooked (%s); Ctrl-C to stop", len(sess.Attached()), sess.Features()))
	// --duration counts from here, once every hook is attached (loading
	// and attaching took a while on a slow host: that is not tracing).
	if cf.duration > 0 {
		defer time.AfterFunc(cf.duration, cancel).Stop()
	}

	var extra []pipeline.Sink
	if hooks.sinks != nil {
		if extra, err = hooks.sinks(sess); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if cf.metricsAddr != "" {
		ms, stopMetrics, merr := startMetrics(cf.metricsAddr, sess)
		if merr != nil {
			return fmt.Errorf("%s: %w", name, merr)
		}
		defer func() { err = errors.Join(err, stopMetrics()) }()
		extra = append(extra, ms)
	}
	out := &heldSummary{Printer: printer(render.Options{WallOffsetNS: sess.Clock().Offset()})}
	// Journeys of other containers on the same bridges are assembled (so the
	// counts are right) but not shown.
	sel := journey.Selection{Containers: cf.containers}
	if len(cf.containers) > 0 {
		sel.Interfaces = cf.ifaces
	}
	cfg := pipeline.Config{Journey: cf.journeyConfig(sess.Snapshot().HostNetnsIno), Select: sel, Count: cf.count, NoJourneys: !hooks.assembles(cf)}
	if err := writeReady(cf.readyFile); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	start := time.Now()
	res, runErr := pipeline.Run(ctx, sess, cfg, append([]pipeline.Sink{out}, extra...)...)
	res.Summary.Duration = time.Since(start)
	// However the run ended (-c, a sink error), the output's grace starts now.
	cancel()
	printErr := out.err
	if printErr != nil && errors.Is(runErr, printErr) {
		runErr = nil // the printer's own error, handled below
	}
	var finishErr error
	if hooks.finish != nil {
		finishErr = hooks.finish(runErr)
	}
	// Detach before waiting for anyone to read the output.
	closeErr := closeSession(name, sess)
	if printErr == nil {
		printErr = flushOutput(stdout)
	}
	if errors.Is(printErr, syscall.EPIPE) || errors.Is(runErr, syscall.EPIPE) {
		// The reader went away (| head): a normal, quiet end.
		return errors.Join(finishErr, closeErr)
	}
	errs := errors.Join(runErr, finishErr, closeErr)
	if printErr == nil {
		// The summary (on stderr, but for latency's report), once the
		// output before it was read.
		if printErr = out.Printer.Summary(res.Summary); printErr == nil {
			printErr = flushOutput(stdout)
		}
	}
	switch {
	case printErr == nil:
		return errs
	case errors.Is(printErr, syscall.EPIPE):
		return errs // the reader went away: a normal end
	case isStuck(printErr):
		// Nobody reads stdout (a paused pager): the summary goes to stderr.
		var sum render.Printer = render.NewText(stderr, render.Options{})
		if sp, ok := out.Printer.(interface{ stderrSummary() render.Printer }); ok {
			sum = sp.stderrSummary()
		}
		return errors.Join(errs, sum.Summary(res.Summary),
			fmt.Errorf("%s: stdout: %w; output not written by then was dropped", name, printErr))
	}
	return errors.Join(errs, fmt.Errorf("%s: write output: %w", name, printErr))
}

// heldSummary is a printer sink whose summary waits: live, it is printed
// after the hooks are detached, so a reader who does not read cannot keep
// them attached.
type heldSummary struct {
	render.Printer
	err error // the first journey write error
}

func (h *heldSummary) Journey(j *journey.Journey) error {
	if h.err == nil {
		h.err = h.Printer.Journey(j)
	}
	return h.err
}

func (h *heldSummary) Summary(render.Summary) error { return nil }

// KeepsJourneys is the printer's (pipeline.JourneyKeeper).
func (h *heldSummary) KeepsJourneys() bool { return pipeline.KeepsJourneys(h.Printer) }

func closeSession(name string, s *capture.Session) error {
	if err := s.Close(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
