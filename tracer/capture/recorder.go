package capture

import (
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

// Recorder is a Handler that writes every event to a recording. It flushes
// about once a second, so a SIGKILL loses at most the last second, and
// writes the loss counters whenever they changed. The first write error
// (a full disk, say) is kept and stops the capture through OnError.
type Recorder struct {
	Sink tracefile.Sink
	// OnError is called once, with the first write error.
	OnError func(error)
	// FlushEvery defaults to one second.
	FlushEvery time.Duration

	err       error
	lastFlush time.Time
	lastLoss  event.Loss
}

// Err is the first write error, if any.
func (r *Recorder) Err() error { return r.err }

func (r *Recorder) fail(err error) {
	if err == nil || r.err != nil {
		return
	}
	r.err = err
	if r.OnError != nil {
		r.OnError(err)
	}
}

func (r *Recorder) Hop(h *event.Hop) {
	if r.err == nil {
		r.fail(r.Sink.WriteHop(h))
	}
}

func (r *Recorder) Drop(d *event.Drop) {
	if r.err == nil {
		r.fail(r.Sink.WriteDrop(d))
	}
}

func (r *Recorder) Topology(s *topology.Snapshot) {
	if r.err == nil {
		r.fail(r.Sink.WriteSnapshot(s))
	}
}

func (r *Recorder) Tick(uint64) {
	every := r.FlushEvery
	if every == 0 {
		every = time.Second
	}
	if r.err != nil || time.Since(r.lastFlush) < every {
		return
	}
	r.lastFlush = time.Now()
	r.fail(r.Sink.Flush())
}

// Loss writes the loss counters when they changed.
func (r *Recorder) Loss(l event.Loss) {
	if r.err != nil || l == r.lastLoss {
		return
	}
	r.lastLoss = l
	r.fail(r.Sink.WriteLoss(l))
}

// Close writes the final loss counters and closes the recording.
func (r *Recorder) Close(final event.Loss) error {
	if r.err == nil && final != r.lastLoss {
		r.fail(r.Sink.WriteLoss(final))
	}
	cerr := r.Sink.Close()
	if r.err != nil {
		return r.err
	}
	return cerr
}
