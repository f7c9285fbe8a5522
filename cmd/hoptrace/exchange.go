package main

import (
	"io"

	"github.com/hoptrace/hoptrace/tracer/exchange"
	"github.com/hoptrace/hoptrace/tracer/latency"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// linked puts the exchange stage in front of a journey printer, so each
// journey that retransmits an earlier one is linked to it before it is
// printed (the same stage live and from recordings).
func linked(p render.Printer) render.Printer {
	return staged{exchange.NewStage(p, exchange.Options{}), p}
}

// exchangeLines is the sink of trace --exchanges: one line per completed
// exchange on stdout (text or JSON, as -o says) instead of the journeys;
// the summary goes where the journey printer puts it.
func exchangeLines(pf *printFlags, stdout, stderr io.Writer, opt render.Options) render.Printer {
	out := exchange.NewPrinter(stdout, pf.output == "json", opt.WallOffsetNS, opt.Location)
	p := pf.printer(stdout, stderr, opt)
	return staged{exchange.NewStage(summaryOnly{p}, exchange.Options{Exchanges: out.Exchange}), p}
}

// staged is a printer behind the exchange stage; when stdout is stuck the
// summary still goes to stderr through the printer's own (see liveJourneys).
type staged struct {
	*exchange.Stage
	p render.Printer
}

func (s staged) stderrSummary() render.Printer {
	if sp, ok := s.p.(interface{ stderrSummary() render.Printer }); ok {
		return sp.stderrSummary()
	}
	return s.p
}

// latencySink aggregates journeys, their exchanges and their
// retransmissions, and prints the report at the end.
func latencySink(agg *latency.Aggregator, write func(latency.Report) error) render.Printer {
	return exchange.NewStage(&latencyPrinter{agg: agg, write: write}, exchange.Options{
		Exchanges:   func(e *exchange.Exchange) error { agg.AddExchange(e); return nil },
		Retransmits: agg.AddRetransmit,
	})
}
