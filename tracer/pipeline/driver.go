package pipeline

import (
	"context"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// driver is the Input every source feeds.
type driver struct {
	cfg    Config
	names  journey.Names
	asm    *journey.Assembler // made at the first event; never with Config.NoJourneys
	wait   *journey.NameWait
	sinks  []sinkState
	events []int // indexes of the sinks that take events
	cancel context.CancelCauseFunc

	now  uint64 // the newest event time or watermark
	loss event.Loss
	// Without assembly, the events are only counted.
	hops, drops uint64
	reasons     map[string]uint64
	shown       int
	err         error // the first sink error, or ErrCountReached
	// reuse: no sink keeps journeys, so the assembler gets each one back
	// once the sinks are done with it.
	reuse bool
}

type sinkState struct {
	Sink
	ev     EventSink
	failed bool
}

func newDriver(names journey.Names, cfg Config, sinks []Sink, cancel context.CancelCauseFunc) *driver {
	d := &driver{cfg: cfg, names: names, cancel: cancel, reuse: true}
	for i, s := range sinks {
		if KeepsJourneys(s) {
			d.reuse = false
		}
		st := sinkState{Sink: s}
		if ev, ok := s.(EventSink); ok {
			st.ev = ev
			d.events = append(d.events, i)
		}
		d.sinks = append(d.sinks, st)
	}
	return d
}

// assembler makes the assembler at the first event that needs it, so a
// recording's first snapshot can tell it the host's namespace.
func (d *driver) assembler() *journey.Assembler {
	if d.asm == nil && !d.cfg.NoJourneys {
		d.asm = journey.New(d.cfg.Journey, d.names)
		d.wait = journey.NewNameWait(d.names, d.cfg.NameWait, d.deliver)
	}
	return d.asm
}

// stop ends the run for err (the first one wins).
func (d *driver) stop(err error) {
	if d.err == nil {
		d.err = err
		d.cancel(err)
	}
}

func (d *driver) event(e Event) {
	for _, i := range d.events {
		s := &d.sinks[i]
		if s.failed {
			continue
		}
		if err := s.ev.Event(e); err != nil {
			s.failed = true
			d.stop(err)
		}
	}
}

func (d *driver) Hop(h *event.Hop) {
	d.event(Event{Hop: h})
	d.now = max(d.now, h.TimeNS)
	if a := d.assembler(); a != nil {
		d.add(a.AddHop(*h))
	} else {
		d.hops++
	}
}

func (d *driver) Drop(e *event.Drop) {
	d.event(Event{Drop: e})
	d.now = max(d.now, e.TimeNS)
	if a := d.assembler(); a != nil {
		d.add(a.AddDrop(*e))
	} else {
		d.drops++
		if d.reasons == nil {
			d.reasons = map[string]uint64{}
		}
		d.reasons[(&journey.Drop{Reason: e.Reason, ReasonName: e.ReasonName}).Name()]++
	}
}

func (d *driver) Topology(s *topology.Snapshot) {
	d.event(Event{Topology: s})
	if err := d.cfg.Select.Choose(s.Containers); err != nil {
		d.stop(err) // an ambiguous --container
	}
	if d.asm == nil && d.cfg.Journey.HostNetnsIno == 0 {
		d.cfg.Journey.HostNetnsIno = s.HostNetnsIno
	}
	if d.wait != nil {
		d.wait.Tick(d.now) // a new snapshot may be the names a journey waits for
	}
}

func (d *driver) Loss(l event.Loss) {
	d.loss = l
	d.event(Event{Loss: &l})
}

func (d *driver) Tick(watermark uint64) {
	d.event(Event{Tick: watermark})
	d.now = max(d.now, watermark)
	if a := d.assembler(); a != nil {
		d.add(a.Expire(watermark))
		d.wait.Tick(d.now)
	}
}

// add passes finished journeys to the name wait, which calls deliver.
func (d *driver) add(js []*journey.Journey) {
	for _, j := range js {
		d.wait.Add(j, d.now)
	}
}

// deliver hands a named journey to the sinks when it is selected, then
// gives it back to the assembler if no sink keeps journeys.
func (d *driver) deliver(j *journey.Journey) {
	d.show(j)
	if d.reuse {
		d.asm.Release(j)
	}
}

func (d *driver) show(j *journey.Journey) {
	if d.err != nil || !d.cfg.Select.Match(j) {
		return
	}
	for i := range d.sinks {
		s := &d.sinks[i]
		if s.failed {
			continue
		}
		if err := s.Journey(j); err != nil {
			s.failed = true
			d.stop(err)
			return
		}
	}
	d.shown++
	if d.cfg.Count > 0 && d.shown >= d.cfg.Count {
		d.stop(ErrCountReached)
	}
}

// finish ends the input: open journeys are finished and delivered.
func (d *driver) finish() {
	if d.asm == nil {
		return
	}
	d.add(d.asm.Flush())
	d.wait.Flush()
}

func (d *driver) summary() render.Summary {
	s := render.Summary{Loss: d.loss}
	if d.asm != nil {
		s.Stats = d.asm.Stats()
		s.Names = d.wait.Stats()
	} else {
		s.Stats = journey.New(d.cfg.Journey, nil).Stats()
		s.NotAssembled = d.cfg.NoJourneys
		s.Stats.Hops, s.Stats.Drops = d.hops, d.drops
		for k, v := range d.reasons {
			s.Stats.DropsByReason[k] = v
		}
	}
	return s
}
