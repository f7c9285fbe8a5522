package capture

import (
	"testing"
	"time"
)

func TestTickPacer(t *testing.T) {
	busy := 50 * time.Millisecond
	t0 := time.Unix(1000, 0)
	p := tickPacer{lastEvent: t0}
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	// Events keep coming: busy ticks.
	for i, newest := range []uint64{10, 20, 30} {
		if next, quiet := p.next(newest, at(time.Duration(i)*busy), busy); next != busy || quiet {
			t.Fatalf("tick %d with a new event: next %v quiet %v, want %v and not quiet", i, next, quiet, busy)
		}
	}
	// No new event, but not for long yet: still busy ticks (a journey
	// may be waiting for its timeout).
	if next, quiet := p.next(30, at(2*busy+quietAfter/2), busy); next != busy || quiet {
		t.Fatalf("shortly after the last event: next %v quiet %v", next, quiet)
	}
	// quietAfter without an event: slow ticks.
	if next, quiet := p.next(30, at(2*busy+quietAfter), busy); next != quietTick || !quiet {
		t.Fatalf("quietAfter after the last event: next %v quiet %v, want %v and quiet", next, quiet, quietTick)
	}
	if next, quiet := p.next(30, at(2*busy+quietAfter+5*quietTick), busy); next != quietTick || !quiet {
		t.Fatalf("long quiet: next %v quiet %v", next, quiet)
	}
	// An event: busy again.
	if next, quiet := p.next(40, at(2*busy+quietAfter+6*quietTick), busy); next != busy || quiet {
		t.Fatalf("a new event after a quiet spell: next %v quiet %v", next, quiet)
	}
}
