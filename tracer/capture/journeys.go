package capture

import (
	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// DefaultLag is how far behind the clock journeys are expired: events may sit
// in the ring buffer for one drain interval (10ms) before they are read.
const DefaultLag = 100_000_000 // 100ms in ns

// Journeys is a Handler that assembles journeys and passes each finished one
// to Emit (which may be nil). Live tracing, recording with --print and live
// latency all use it, with the assembler replay uses too.
type Journeys struct {
	Asm  *journey.Assembler
	Emit func(j *journey.Journey)
	// Next, if set, also receives every event (e.g. a recorder).
	Next Handler
	// LagNS delays expiry behind the clock; 0 means DefaultLag.
	LagNS uint64
}

func (h *Journeys) emit(js []*journey.Journey) {
	if h.Emit == nil {
		return
	}
	for _, j := range js {
		h.Emit(j)
	}
}

func (h *Journeys) Hop(e *event.Hop) {
	if h.Next != nil {
		h.Next.Hop(e)
	}
	h.emit(h.Asm.AddHop(*e))
}

func (h *Journeys) Drop(e *event.Drop) {
	if h.Next != nil {
		h.Next.Drop(e)
	}
	h.emit(h.Asm.AddDrop(*e))
}

func (h *Journeys) Topology(s *topology.Snapshot) {
	if h.Next != nil {
		h.Next.Topology(s)
	}
}

func (h *Journeys) Tick(now uint64) {
	if h.Next != nil {
		h.Next.Tick(now)
	}
	lag := h.LagNS
	if lag == 0 {
		lag = DefaultLag
	}
	if now > lag {
		h.emit(h.Asm.Expire(now - lag))
	}
}

// Flush finishes every open journey (end of capture).
func (h *Journeys) Flush() { h.emit(h.Asm.Flush()) }
