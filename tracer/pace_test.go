package tracer

import (
	"testing"
	"time"
)

// TestPacer: the pause doubles while the rings fill slowly, up to four
// drain intervals, and halves, down to one, when a look finds a small ring
// over half full or a large ring used.
func TestPacer(t *testing.T) {
	const ms = time.Millisecond
	p := newPacer(0)
	if p.min != defaultDrain || p.max != maxDrainFactor*defaultDrain {
		t.Fatalf("default pacer %+v", p)
	}
	p = newPacer(10 * ms)
	for i, c := range []struct {
		peak    float64
		spilled bool
		want    time.Duration
	}{
		{0.1, false, 20 * ms}, // slow: twice as far apart
		{0.2, false, 40 * ms},
		{0.1, false, 40 * ms}, // at most 4x
		{0.4, false, 40 * ms}, // a quarter to a half: kept
		{0.6, false, 20 * ms}, // over half: halved
		{0.3, false, 20 * ms},
		{0.1, true, 10 * ms},  // a large ring had events: halved
		{0.9, false, 10 * ms}, // at least the drain interval
		{0, false, 20 * ms},   // empty looks: the idle reader sleeps soon anyway
	} {
		if got := p.next(c.peak, c.spilled); got != c.want {
			t.Fatalf("step %d (peak %.1f, spilled %v): pause %v, want %v", i, c.peak, c.spilled, got, c.want)
		}
	}
}
