package pipeline

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/exchange"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

// keeper is a sink that keeps every journey it gets, as the exchange
// tracker does: it does not implement JourneyKeeper.
// It notes each one's ID and first hop time as it got it.
type keeper struct {
	kept  []*journey.Journey
	ids   []uint64
	times []uint64
}

func (k *keeper) Journey(j *journey.Journey) error {
	k.kept = append(k.kept, j)
	k.ids = append(k.ids, j.ID)
	k.times = append(k.times, j.Hops[0].TimeNS)
	return nil
}
func (k *keeper) Summary(s render.Summary) error { return nil }

// addresses is a sink that keeps nothing but notes which journeys it got
// and whether the same memory came back.
type addresses struct {
	seen   map[*journey.Journey]bool
	reused int
}

func (a *addresses) Journey(j *journey.Journey) error {
	if a.seen[j] {
		a.reused++
	}
	a.seen[j] = true
	return nil
}
func (a *addresses) Summary(s render.Summary) error { return nil }
func (a *addresses) KeepsJourneys() bool            { return false }

// reuseRun runs 30 rounds of a 200-packet exchange (drops every 7th
// packet, ~2.5 ms a round: journeys finish after their 25 ms grace, while
// later rounds start) into a JSON printer and the given sinks; it returns
// the printed journeys.
const rounds = 30

func reuseRun(t *testing.T, sinks ...Sink) string {
	t.Helper()
	var out bytes.Buffer
	runRounds(t, render.NewJSON(&out, render.Options{}), sinks...)
	return out.String()
}

func runRounds(t *testing.T, first Sink, sinks ...Sink) {
	t.Helper()
	events := tracefiletest.Events(tracefiletest.Options{Packets: 200, DropEvery: 7})
	src := &loopSource{names: finalNames{topology.NewIndex(tracefiletest.Snapshot())}, events: events, n: rounds}
	cfg := Config{Journey: journey.Config{HostNetnsIno: tracefiletest.Snapshot().HostNetnsIno}}
	if _, err := Run(context.Background(), src, cfg, append([]Sink{first}, sinks...)...); err != nil {
		t.Fatal(err)
	}
}

// The exchange stage in front of a printer (trace's default) keeps no
// journey either: journeys are reused behind it, and the exchanges it pairs
// and the journeys it prints are the same as when nothing is reused.
func TestJourneysReusedBehindExchangeStage(t *testing.T) {
	run := func(sinks ...Sink) (string, []exchange.Exchange) {
		var out bytes.Buffer
		var exs []exchange.Exchange
		st := exchange.NewStage(render.NewJSON(&out, render.Options{}), exchange.Options{
			Exchanges: func(e *exchange.Exchange) error { exs = append(exs, *e); return nil },
		})
		runRounds(t, st, sinks...)
		return out.String(), exs
	}
	seen := &addresses{seen: map[*journey.Journey]bool{}}
	reusedOut, reusedExs := run(seen)
	if seen.reused == 0 {
		t.Fatal("no journey was reused behind the exchange stage")
	}
	keptOut, keptExs := run(&keeper{})
	if len(keptExs) == 0 {
		t.Fatal("the stage paired no exchanges")
	}
	if reusedOut != keptOut {
		t.Errorf("the printed journeys differ with and without reuse (%d and %d bytes)", len(reusedOut), len(keptOut))
	}
	if !slices.Equal(reusedExs, keptExs) {
		t.Errorf("%d exchanges with reuse, %d without, or they differ", len(reusedExs), len(keptExs))
	}
}

// The pipeline reuses journeys only when no sink keeps them, and what it
// prints is the same either way.
func TestJourneysReusedOnlyWhenNoSinkKeeps(t *testing.T) {
	seen := &addresses{seen: map[*journey.Journey]bool{}}
	reusing := reuseRun(t, seen)
	if seen.reused == 0 {
		t.Errorf("no journey's memory was reused among %d journeys, with sinks that keep none", len(seen.seen))
	}

	seen2 := &addresses{seen: map[*journey.Journey]bool{}}
	k := &keeper{}
	keeping := reuseRun(t, seen2, k)
	if seen2.reused != 0 {
		t.Errorf("%d journeys reused memory while a sink keeps journeys", seen2.reused)
	}
	for i, j := range k.kept {
		if j.ID != k.ids[i] || len(j.Hops) == 0 || j.Hops[0].TimeNS != k.times[i] {
			t.Fatalf("kept journey %d changed after it was delivered: ID %d, then %d", i, k.ids[i], j.ID)
		}
	}
	if len(k.kept) != 200*rounds {
		t.Errorf("the keeper got %d journeys, want %d", len(k.kept), 200*rounds)
	}
	if reusing != keeping {
		t.Errorf("the printed journeys differ with and without reuse (%d and %d bytes)", len(reusing), len(keeping))
	}
}
