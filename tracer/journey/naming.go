package journey

import (
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// Names is where journeys get their names from: the resolver in a live
// capture, the recording's snapshots in replay.
type Names interface {
	topology.Namer
	// Naming tells whether k's name may still change for the better once
	// the names are read again (see topology.Index.Naming).
	Naming(k topology.Key) topology.Naming
	// Refresh asks for the names to be read again and returns a ticket;
	// Refreshed(ticket) is true once a reading begun after the call is done.
	Refresh() uint64
	Refreshed(ticket uint64) bool
}

// DefaultNameWait bounds how long a journey waits for its names.
const DefaultNameWait = 500 * time.Millisecond

// settleFor is how long an interface that kept its provisional name after
// a refresh is not waited for again (a namespace Docker does not own stays
// unnamed; its journeys must not wait every time). A pending name (a
// container sandbox Docker has not listed yet) is waited for every time:
// Docker will name it.
const settleFor = uint64(5 * time.Second)

// maxHeld bounds the journeys held at once; past it the oldest is let go.
const maxHeld = 1 << 16

// NameStats count what the name wait did.
type NameStats struct {
	// Waited are journeys held for a refresh of their names.
	Waited uint64
	// GaveUp are journeys let go with a provisional name after the wait
	// bound (or the hold cap) passed without a refresh.
	GaveUp uint64
}

// NameWait sits between the assembler and the sinks. A journey that passed
// an interface whose name is provisional (a container Docker has not told
// about yet) asks for a refresh and is held until that refresh is done, at
// most MaxWait; then its hops are named again and it goes on. Journeys
// leave in the order they came, so one held journey holds the ones behind it.
// Time is kernel monotonic ns, from the caller: live, the clock; in replay,
// event time.
type NameWait struct {
	names   Names
	maxWait uint64
	emit    func(*Journey)
	queue   []held
	head    int
	settled map[topology.Key]uint64 // until when a key is not waited for
	stats   NameStats
}

type held struct {
	j        *Journey
	ticket   uint64
	deadline uint64
	wait     bool // false: queued only to keep the order
}

// NewNameWait returns a name wait passing journeys to emit. maxWait <= 0
// means DefaultNameWait.
func NewNameWait(names Names, maxWait time.Duration, emit func(*Journey)) *NameWait {
	if maxWait <= 0 {
		maxWait = DefaultNameWait
	}
	return &NameWait{names: names, maxWait: uint64(maxWait), emit: emit, settled: map[topology.Key]uint64{}}
}

// Add takes a finished journey at time now.
func (w *NameWait) Add(j *Journey, now uint64) {
	w.freshen(j)
	if w.provisional(j, now) {
		w.stats.Waited++
		w.queue = append(w.queue, held{j: j, ticket: w.names.Refresh(), deadline: now + w.maxWait, wait: true})
	} else if w.head < len(w.queue) {
		w.queue = append(w.queue, held{j: j})
	} else {
		w.emit(j)
		return
	}
	if len(w.queue)-w.head > maxHeld {
		w.release(now, true)
	}
	w.Tick(now)
}

// Tick lets go the journeys whose names were refreshed or whose wait ended.
func (w *NameWait) Tick(now uint64) {
	for w.head < len(w.queue) {
		h := &w.queue[w.head]
		if h.wait && !w.names.Refreshed(h.ticket) && now < h.deadline {
			break
		}
		w.release(now, h.wait && !w.names.Refreshed(h.ticket))
	}
	if w.head == len(w.queue) {
		w.queue, w.head = w.queue[:0], 0
	}
	if len(w.settled) > 1024 {
		for k, until := range w.settled {
			if until <= now {
				delete(w.settled, k)
			}
		}
	}
}

// Flush names and lets go every held journey (end of input).
func (w *NameWait) Flush() {
	for w.head < len(w.queue) {
		w.release(0, false)
	}
	w.queue, w.head = w.queue[:0], 0
}

// Held is the number of journeys held now.
func (w *NameWait) Held() int { return len(w.queue) - w.head }

// Stats returns the counters.
func (w *NameWait) Stats() NameStats { return w.stats }

// release names the oldest held journey again and emits it.
func (w *NameWait) release(now uint64, gaveUp bool) {
	h := w.queue[w.head]
	w.queue[w.head] = held{}
	w.head++
	if !h.wait {
		w.emit(h.j)
		return
	}
	if still := w.rename(h.j, now); still && gaveUp {
		w.stats.GaveUp++
	}
	w.emit(h.j)
}

// freshen names again the hops that were named provisionally when added,
// if their names are final by now (Docker told while the journey was open).
func (w *NameWait) freshen(j *Journey) {
	for i := range j.Hops {
		h := &j.Hops[i]
		if unnamed(&h.Endpoint, h.Resolved) && w.names.Naming(h.Endpoint.Key()) == topology.NameFinal {
			w.lookup(&h.Endpoint, &h.Resolved)
		}
	}
	if d := j.Drop; d != nil && d.HasDev && unnamed(&d.Endpoint, d.Resolved) && w.names.Naming(d.Endpoint.Key()) == topology.NameFinal {
		w.lookup(&d.Endpoint, &d.Resolved)
	}
}

// unnamed reports an endpoint that could have been named after a container
// but was not: unknown, in a namespace named by a process or a sandbox, or
// a host veth whose container was not known.
func unnamed(ep *topology.Endpoint, resolved bool) bool {
	return !resolved || ep.Container == nil && (ep.NetnsName != "" || ep.Role == topology.RoleHostVeth)
}

func (w *NameWait) lookup(ep *topology.Endpoint, resolved *bool) {
	if e, ok := w.names.Lookup(ep.Key()); ok {
		*ep, *resolved = e, true
	}
}

// provisional reports whether a hop of j has a name worth waiting for.
func (w *NameWait) provisional(j *Journey, now uint64) bool {
	for i := range j.Hops {
		if w.wants(j.Hops[i].Endpoint.Key(), now) {
			return true
		}
	}
	if d := j.Drop; d != nil && d.HasDev && w.wants(d.Endpoint.Key(), now) {
		return true
	}
	return false
}

func (w *NameWait) wants(k topology.Key, now uint64) bool {
	switch w.names.Naming(k) {
	case topology.NamePending:
		return true
	case topology.NameProvisional:
		until, ok := w.settled[k]
		return !ok || now >= until
	}
	return false
}

// rename looks up again every hop whose name was provisional and reports
// whether any still is; those are not waited for again for a while.
func (w *NameWait) rename(j *Journey, now uint64) (still bool) {
	for i := range j.Hops {
		h := &j.Hops[i]
		if w.renameEndpoint(&h.Endpoint, &h.Resolved, now) {
			still = true
		}
	}
	if d := j.Drop; d != nil && d.HasDev {
		if w.renameEndpoint(&d.Endpoint, &d.Resolved, now) {
			still = true
		}
	}
	return still
}

func (w *NameWait) renameEndpoint(ep *topology.Endpoint, resolved *bool, now uint64) (still bool) {
	k := ep.Key()
	if unnamed(ep, *resolved) {
		w.lookup(ep, resolved)
	}
	switch w.names.Naming(k) {
	case topology.NamePending:
		return true
	case topology.NameProvisional:
		if until, ok := w.settled[k]; !ok || now >= until {
			w.settled[k] = now + settleFor
		}
		return true
	}
	return false
}
