package capture

import (
	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// Journeys is a Handler that assembles journeys and passes each finished one
// to Emit (which may be nil). Live tracing, recording with --print and live
// latency all use it, with the assembler replay uses too.
type Journeys struct {
	Asm  *journey.Assembler
	Emit func(j *journey.Journey)
	// Next, if set, also receives every event (e.g. a recorder).
	Next Handler
	// Names, if set, holds journeys that passed an interface the resolver
	// could not name yet until it read the names again (journey.NameWait).
	Names journey.Names

	wait *journey.NameWait
	now  uint64 // the latest watermark or event time
}

func (h *Journeys) emit(js []*journey.Journey) {
	if h.Emit == nil {
		return
	}
	for _, j := range js {
		if h.Names == nil {
			h.Emit(j)
			continue
		}
		if h.wait == nil {
			h.wait = journey.NewNameWait(h.Names, 0, h.Emit)
		}
		h.wait.Add(j, h.now)
	}
}

func (h *Journeys) Hop(e *event.Hop) {
	if h.Next != nil {
		h.Next.Hop(e)
	}
	h.now = max(h.now, e.TimeNS)
	h.emit(h.Asm.AddHop(*e))
}

func (h *Journeys) Drop(e *event.Drop) {
	if h.Next != nil {
		h.Next.Drop(e)
	}
	h.now = max(h.now, e.TimeNS)
	h.emit(h.Asm.AddDrop(*e))
}

func (h *Journeys) Loss(l event.Loss) {
	if h.Next != nil {
		h.Next.Loss(l)
	}
}

func (h *Journeys) Topology(s *topology.Snapshot) {
	if h.Next != nil {
		h.Next.Topology(s)
	}
}

// Tick expires the journeys whose deadline is before the watermark.
func (h *Journeys) Tick(watermark uint64) {
	if h.Next != nil {
		h.Next.Tick(watermark)
	}
	h.now = max(h.now, watermark)
	h.emit(h.Asm.Expire(watermark))
	if h.wait != nil {
		h.wait.Tick(h.now)
	}
}

// Flush finishes every open journey (end of capture).
func (h *Journeys) Flush() {
	h.emit(h.Asm.Flush())
	if h.wait != nil {
		h.wait.Flush()
	}
}

// NameStats are the name wait's counters (zero without Names).
func (h *Journeys) NameStats() journey.NameStats {
	if h.wait == nil {
		return journey.NameStats{}
	}
	return h.wait.Stats()
}
