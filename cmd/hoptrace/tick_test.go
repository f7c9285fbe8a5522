package main

import (
	"log/slog"
	"testing"
	"time"
)

// TestCaptureTick: a recording that assembles nothing ticks every
// eventsOnlyTick (its ticks only flush and report losses, and each wakes the
// process); a run that assembles journeys keeps the capture's default tick,
// on which journeys finish.
func TestCaptureTick(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name      string
		hooks     liveHooks
		metrics   string
		assembles bool
		wantTick  time.Duration
	}{
		{"trace", liveHooks{}, "", true, 0},
		{"record", liveHooks{noJourneys: true}, "", false, eventsOnlyTick},
		{"record --metrics-addr", liveHooks{noJourneys: true}, "127.0.0.1:0", true, 0},
	} {
		cf := &captureFlags{metricsAddr: c.metrics}
		if got := c.hooks.assembles(cf); got != c.assembles {
			t.Errorf("%s: assembles %v, want %v", c.name, got, c.assembles)
		}
		if got := c.hooks.captureConfig(cf, log).TickInterval; got != c.wantTick {
			t.Errorf("%s: tick %v, want %v", c.name, got, c.wantTick)
		}
	}
	if eventsOnlyTick <= 0 || eventsOnlyTick > time.Second/2 {
		t.Errorf("eventsOnlyTick %v: a recording must still flush about once a second", eventsOnlyTick)
	}
}
