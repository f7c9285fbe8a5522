// Package playback runs recordings through the journey assembler, the way a
// live capture does, so replay, latency and export from a file show what the
// live view would have shown.
//
// Names come from the snapshots in the recording: each hop is resolved
// against the latest snapshot written before it, so a container that was
// renamed or removed later keeps the name it had at the time. Nothing here
// needs root, Docker or the recording host.
package playback

import (
	"errors"
	"io"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

// Namer resolves interfaces from the latest snapshot it was given. It is
// the recording's journey.Names: a refresh is the next snapshot in the
// recording, as the live resolver's refresh wrote one.
type Namer struct {
	ix   *topology.Index
	snap *topology.Snapshot
	sets uint64
}

// Set makes s the snapshot lookups use from now on.
func (n *Namer) Set(s *topology.Snapshot) {
	n.snap, n.ix = s, topology.NewIndex(s)
	n.sets++
}

// Naming implements journey.Names.
func (n *Namer) Naming(k topology.Key) topology.Naming {
	if n.ix == nil {
		return topology.NameFinal // a recording without snapshots: nothing will name it
	}
	return n.ix.Naming(k)
}

// Refresh implements journey.Names: the ticket is the next snapshot.
func (n *Namer) Refresh() uint64 { return n.sets + 1 }

// Refreshed implements journey.Names.
func (n *Namer) Refreshed(ticket uint64) bool { return n.sets >= ticket }

// Snapshot is the current snapshot, nil before the first.
func (n *Namer) Snapshot() *topology.Snapshot { return n.snap }

// Lookup implements topology.Namer.
func (n *Namer) Lookup(k topology.Key) (topology.Endpoint, bool) {
	if n.ix == nil {
		return topology.Endpoint{}, false
	}
	return n.ix.Lookup(k)
}

// Player feeds one or more recordings, in order, to one assembler and hands
// each finished journey to Emit.
type Player struct {
	cfg     journey.Config
	emit    func(*journey.Journey) error
	emitErr error
	namer   Namer
	asm     *journey.Assembler
	wait    *journey.NameWait
	now     uint64 // the latest event time
	loss    event.Loss
	files   int
	first   *tracefile.Header
	notes   []string
}

// New returns a player. cfg is the assembler's configuration, as for a live
// trace; a zero HostNetnsIno is taken from the first snapshot.
func New(cfg journey.Config, emit func(*journey.Journey) error) *Player {
	return &Player{cfg: cfg, emit: emit}
}

// emitAll passes finished journeys through the name wait, as live does:
// one that passed an interface named only provisionally waits for the next
// snapshot (at most journey.DefaultNameWait of event time).
func (p *Player) emitAll(js []*journey.Journey) error {
	if p.wait == nil {
		p.wait = journey.NewNameWait(&p.namer, 0, func(j *journey.Journey) {
			if p.emitErr == nil {
				p.emitErr = p.emit(j)
			}
		})
	}
	for _, j := range js {
		p.wait.Add(j, p.now)
	}
	p.wait.Tick(p.now)
	return p.emitErr
}

func (p *Player) assembler() *journey.Assembler {
	if p.asm == nil {
		cfg := p.cfg
		if cfg.HostNetnsIno == 0 && p.namer.snap != nil {
			cfg.HostNetnsIno = p.namer.snap.HostNetnsIno
		}
		p.asm = journey.New(cfg, &p.namer)
	}
	return p.asm
}

// Play reads every record of one recording. Journeys still open at its end
// stay open, so the next part of a rotated recording continues them; call
// Finish after the last file. A truncated file is not an error: its note is
// kept in Notes. Errors name the byte offset; the caller adds the file name.
func (p *Player) Play(r *tracefile.Reader) error {
	h := r.Header()
	if p.first == nil {
		p.first = &h
	}
	p.files++
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch rec.Kind {
		case tracefile.KindSnapshot:
			p.namer.Set(rec.Snapshot)
			if err := p.emitAll(nil); err != nil {
				return err
			}
		case tracefile.KindLoss:
			p.loss = rec.Loss
		case tracefile.KindHop:
			p.now = max(p.now, rec.Hop.TimeNS)
			if err := p.emitAll(p.assembler().AddHop(*rec.Hop)); err != nil {
				return err
			}
		case tracefile.KindDrop:
			p.now = max(p.now, rec.Drop.TimeNS)
			if err := p.emitAll(p.assembler().AddDrop(*rec.Drop)); err != nil {
				return err
			}
		}
	}
	if t := r.Truncated(); t != nil {
		p.notes = append(p.notes, t.String())
	}
	return nil
}

// Finish ends the input: journeys still open are finished and emitted.
func (p *Player) Finish() error {
	if p.asm == nil {
		return nil
	}
	if err := p.emitAll(p.asm.Flush()); err != nil {
		return err
	}
	p.wait.Flush()
	return p.emitErr
}

// Stats are the assembler's counters.
func (p *Player) Stats() journey.Stats {
	if p.asm == nil {
		return journey.New(p.cfg, nil).Stats()
	}
	return p.asm.Stats()
}

// Loss is the latest loss counters read: the capture's totals.
func (p *Player) Loss() event.Loss { return p.loss }

// Header is the header of the first recording played, nil before.
func (p *Player) Header() *tracefile.Header { return p.first }

// Notes are the truncation notes of the recordings played, in order.
func (p *Player) Notes() []string { return p.notes }

// Selection picks journeys by container or interface; it is the same
// selection live tracing applies (journey.Selection).
type Selection = journey.Selection
