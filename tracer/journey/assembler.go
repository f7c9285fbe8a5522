package journey

import (
	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// Assembler joins hops and drops into journeys. It is not safe for
// concurrent use: feed it from one goroutine, in the order events arrived.
type Assembler struct {
	cfg   Config
	namer topology.Namer
	stats Stats
}

// New returns an assembler. Zero Config fields take the defaults; namer may
// be nil (every interface then shows unresolved).
func New(cfg Config, namer topology.Namer) *Assembler {
	return &Assembler{cfg: cfg, namer: namer}
}

// AddHop adds one hop and returns the journeys that finished before its time
// (their grace or timeout passed, or MaxInFlight forced one out). The hop's
// Data is kept, not copied.
func (a *Assembler) AddHop(h event.Hop) []*Journey { return nil }

// AddDrop joins a drop to the journey of its packet and returns journeys
// that finished before its time.
func (a *Assembler) AddDrop(d event.Drop) []*Journey { return nil }

// Expire finishes journeys whose grace or timeout ends before nowNS (kernel
// monotonic ns). Replay passes event time; live callers pass the current
// monotonic time minus a small lag for events still in the ring buffer.
func (a *Assembler) Expire(nowNS uint64) []*Journey { return nil }

// Flush finishes every open journey (end of input), in deadline order.
func (a *Assembler) Flush() []*Journey { return nil }

// Stats returns a copy of the counters.
func (a *Assembler) Stats() Stats { return a.stats }

// terminalKind is the verdict of a journey whose branch ends at a hook of
// this role and direction, or VerdictIncomplete when packets do not end there.
func terminalKind(r topology.Role, d event.Direction) Verdict {
	return VerdictIncomplete
}
