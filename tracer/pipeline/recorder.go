package pipeline

import (
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

// Recorder is the event sink that writes a recording: every hop, drop,
// topology and loss report as it comes. It flushes about once a second (on
// ticks), so a SIGKILL loses at most the last second. Its first write error
// (a full disk, say) stops the run; Summary writes the final loss counters
// and closes the file.
type Recorder struct {
	w tracefile.Sink
	// FlushEvery defaults to one second.
	FlushEvery time.Duration

	lastFlush time.Time
	lastLoss  event.Loss
	closed    bool
}

// NewRecorder returns a recorder writing to w.
func NewRecorder(w tracefile.Sink) *Recorder { return &Recorder{w: w, lastFlush: time.Now()} }

// Event implements EventSink.
func (r *Recorder) Event(e Event) error {
	switch {
	case e.Hop != nil:
		return r.w.WriteHop(e.Hop)
	case e.Drop != nil:
		return r.w.WriteDrop(e.Drop)
	case e.Topology != nil:
		return r.w.WriteSnapshot(e.Topology)
	case e.Loss != nil:
		return r.loss(*e.Loss)
	}
	every := r.FlushEvery
	if every == 0 {
		every = time.Second
	}
	if time.Since(r.lastFlush) < every {
		return nil
	}
	r.lastFlush = time.Now()
	return r.w.Flush()
}

func (r *Recorder) loss(l event.Loss) error {
	if l == r.lastLoss {
		return nil
	}
	r.lastLoss = l
	return r.w.WriteLoss(l)
}

// Journey implements Sink: a recording keeps events, not journeys.
func (r *Recorder) Journey(*journey.Journey) error { return nil }

// KeepsJourneys implements JourneyKeeper: it keeps none.
func (r *Recorder) KeepsJourneys() bool { return false }

// Summary writes the final loss counters and closes the recording.
func (r *Recorder) Summary(s render.Summary) error {
	return r.Close(s.Loss)
}

// Close writes the loss counters if they changed and closes the recording
// (once; also after a failed write, to release the file).
func (r *Recorder) Close(final event.Loss) error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.loss(final)
	if cerr := r.w.Close(); err == nil {
		err = cerr
	}
	return err
}
