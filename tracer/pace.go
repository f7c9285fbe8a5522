package tracer

import "time"

// The reader paces its looks at the rings by how full it finds them. Each
// look wakes a thread on a CPU the traced traffic also runs on; on a VM a
// wakeup costs the traffic more than the events it reads (W3 of make
// bench: 1-byte ping-pong, ~14k round trips a second, lost ~8% of them to
// a 10ms cadence and ~5% at 40ms). So while the busiest small ring holds
// less than a quarter of its size at the first look after a pause, the
// pause doubles, up to maxDrainFactor times the drain interval; once a
// look finds one more than half full, or events in a large ring (a small
// one overflowed), it halves, down to the drain interval. The small ring
// then stays small enough to stay in the caches, and a flood is read as
// often as before.
const (
	maxDrainFactor = 4
	paceGrowBelow  = 0.25
	paceShrinkOver = 0.5
)

// pacer is the pause between looks at the rings while they have traffic.
type pacer struct {
	min, max, cur time.Duration
}

// newPacer paces from drain (0 or less: defaultDrain).
func newPacer(drain time.Duration) pacer {
	if drain <= 0 {
		drain = defaultDrain
	}
	return pacer{min: drain, max: maxDrainFactor * drain, cur: drain}
}

// next takes what the looks since the last pause found (the busiest small
// ring's share unread, whether a large ring had events) and returns the
// next pause.
func (p *pacer) next(peak float64, spilled bool) time.Duration {
	switch {
	case spilled || peak > paceShrinkOver:
		p.cur = max(p.min, p.cur/2)
	case peak < paceGrowBelow:
		p.cur = min(p.max, p.cur*2)
	}
	return p.cur
}

// pace is the pause before the next look, from what the looks since the
// last one found.
func (t *Tracer) pace() time.Duration {
	t.rings.mu.Lock()
	defer t.rings.mu.Unlock()
	return t.pacer.next(t.rings.fill())
}
