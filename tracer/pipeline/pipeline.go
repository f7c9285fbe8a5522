// Package pipeline is the one path from events to the things that consume
// them. A Source (a live capture, or recordings read back) feeds hops, drops,
// topology snapshots and loss counters to the driver; the driver assembles
// journeys (journey.Assembler), gives each its final names
// (journey.NameWait), picks the ones asked for (journey.Selection) and hands
// them to every Sink: printers, the recorder, the latency aggregator.
//
//	source --events--> Run: assembler -> name wait -> selection --journeys--> sinks
//	                    \-------------------------------------------events--> event sinks (recorder)
//
// Live and offline input take the same path, so a recording replays exactly
// as the live view showed it. The package is pure: it imports no kernel,
// netlink or Docker code.
//
// A hop's way, live: the hook writes it to the ring buffer; tracer.ReadBatch
// decodes it, with the others already there, into an event.Hop;
// capture.Session.Run hands the batch to the driver (Input.Hop); the driver gives it to the event sinks (the recorder) and to
// journey.Assembler.AddHop; when its journey finishes, journey.NameWait
// names it for good; the driver checks the selection and calls every
// Sink.Journey (render.Text writes the line). From a recording, only the
// first two steps differ: playback.Source reads the hop from the file.
package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// Input is what a source feeds. Its methods are never called concurrently;
// the Hop and Drop passed are only valid during the call.
type Input interface {
	Hop(h *event.Hop)
	Drop(d *event.Drop)
	// Topology is called with the first snapshot and after every change.
	Topology(s *topology.Snapshot)
	// Loss is called with the capture's loss counters whenever they are
	// read (totals, not increments).
	Loss(l event.Loss)
	// Tick says that every event stamped before watermark (kernel
	// monotonic ns) has been delivered, so journeys waiting for more hops
	// until then can finish.
	Tick(watermark uint64)
}

// Source produces the events of a run.
type Source interface {
	// Names names interfaces: the resolver live, the recording's
	// snapshots offline (the source sets them as it reads them).
	Names() journey.Names
	// Run feeds events to in until the input ends or ctx is done (both
	// nil), or it fails.
	Run(ctx context.Context, in Input) error
}

// Sink receives journeys, then the summary at the end. render.Printer is one.
type Sink interface {
	Journey(j *journey.Journey) error
	Summary(s render.Summary) error
}

// JourneyKeeper is a Sink that says whether it keeps a journey, or anything
// it points to (its hops, its drop), after its Journey call returns. When
// every sink of a run says it does not, the pipeline reuses finished
// journeys' memory for later ones: a busy trace then allocates next to
// nothing per packet. A sink that does not implement it is taken to keep
// them. Strings a sink copies out of a journey are never reused.
type JourneyKeeper interface {
	KeepsJourneys() bool
}

// KeepsJourneys tells whether sink s may keep journeys past its Journey
// call: unless it says it does not (JourneyKeeper), it may.
func KeepsJourneys(s Sink) bool {
	k, ok := s.(JourneyKeeper)
	return !ok || k.KeepsJourneys()
}

// EventSink is a sink that also takes every event as it comes, before
// assembly: the recorder. Its errors stop the run as a Sink's do.
type EventSink interface {
	Sink
	Event(e Event) error
}

// Event is one input event; exactly one field is set.
type Event struct {
	Hop      *event.Hop
	Drop     *event.Drop
	Topology *topology.Snapshot
	Loss     *event.Loss
	// Tick is a watermark (see Input.Tick); 0 when another field is set.
	Tick uint64
}

// Config is what a run assembles and shows.
type Config struct {
	Journey journey.Config
	// Select picks the journeys sinks receive; all are assembled and
	// counted either way.
	Select journey.Selection
	// Count stops the run after this many selected journeys (0: no limit).
	Count int
	// NameWait bounds how long a journey waits for names (0: the default).
	NameWait time.Duration
	// NoJourneys skips assembly: only event sinks get anything (a
	// recording without --print assembles at replay time instead).
	NoJourneys bool
}

// ErrCountReached ends a run that delivered Config.Count journeys; Run
// returns nil for it.
var ErrCountReached = errors.New("journey count reached")

// Result is what a run saw.
type Result struct {
	Summary render.Summary
	// Shown is the number of journeys handed to the sinks.
	Shown int
	// Unmatched are the --container words that named no container in any
	// topology the source gave (offline: a likely typo).
	Unmatched []string
}

// Run drives src through the assembler to the sinks until the input ends,
// ctx is done, Config.Count journeys were shown, or a sink fails (its error
// is returned). Open journeys are finished at the end and the summary goes
// to every sink, whatever ended the run. (Its Duration is the caller's to
// fill: a replay has none.)
func Run(ctx context.Context, src Source, cfg Config, sinks ...Sink) (Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d := newDriver(src.Names(), cfg, sinks, cancel)
	runErr := src.Run(ctx, d)
	d.finish()
	sum := d.summary()
	err := d.err
	if errors.Is(err, ErrCountReached) {
		err = nil
	}
	if err == nil {
		err = runErr
	}
	// Every sink gets the summary, so each can release what it holds (a
	// recorder closes its file). One that failed already (a closed pipe, a
	// full disk) fails again: that error was returned the first time.
	for i := range d.sinks {
		if serr := d.sinks[i].Summary(sum); serr != nil && err == nil && !d.sinks[i].failed {
			err = serr
		}
	}
	return Result{Summary: sum, Shown: d.shown, Unmatched: d.cfg.Select.Unmatched()}, err
}
