package pipeline

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// fakeSource feeds a fixed list of events, checking ctx between them.
type fakeSource struct {
	names  journey.Names
	events []Event
	fed    int
}

func (f *fakeSource) Names() journey.Names { return f.names }

func (f *fakeSource) Run(ctx context.Context, in Input) error {
	for _, e := range f.events {
		if ctx.Err() != nil {
			return nil
		}
		f.fed++
		switch {
		case e.Hop != nil:
			in.Hop(e.Hop)
		case e.Drop != nil:
			in.Drop(e.Drop)
		case e.Topology != nil:
			in.Topology(e.Topology)
		case e.Loss != nil:
			in.Loss(*e.Loss)
		default:
			in.Tick(e.Tick)
		}
	}
	return nil
}

// finalNames names everything from one index, for good.
type finalNames struct{ *topology.Index }

func (finalNames) Naming(topology.Key) topology.Naming { return topology.NameFinal }
func (finalNames) Refresh() uint64                     { return 0 }
func (finalNames) Refreshed(uint64) bool               { return true }

// collect is a sink that keeps what it gets; failAfter > 0 makes the
// journey after that many fail.
type collect struct {
	journeys  []uint64
	summaries []render.Summary
	failAfter int
}

var errSink = errors.New("sink broke")

func (c *collect) Journey(j *journey.Journey) error {
	if c.failAfter > 0 && len(c.journeys) == c.failAfter {
		return errSink
	}
	c.journeys = append(c.journeys, j.ID)
	return nil
}
func (c *collect) Summary(s render.Summary) error { c.summaries = append(c.summaries, s); return nil }

// recorder is an event sink counting what it sees.
type recorder struct {
	collect
	hops, snaps, ticks int
	loss               event.Loss
}

func (r *recorder) Event(e Event) error {
	switch {
	case e.Hop != nil:
		r.hops++
	case e.Topology != nil:
		r.snaps++
	case e.Loss != nil:
		r.loss = *e.Loss
	case e.Drop == nil:
		r.ticks++
	}
	return nil
}

// twoPings is a snapshot, two TCP SYNs client -> web on a
// bridge, a loss report and a final tick.
func twoPings() []Event {
	s := jt.Snapshot()
	evs := []Event{{Topology: s}}
	for i, t := range []uint64{1_000_000, 2_000_000} {
		p := jt.TCP(jt.ClientIP, uint16(1000+i), jt.WebIP, 80, event.TCPSyn, uint32(i+1))
		for _, h := range jt.Walk(jt.ClientToWeb, t, 1000, uint64(0xa0+i), uint64(0xf0+i), p) {
			evs = append(evs, Event{Hop: &h})
		}
	}
	evs = append(evs, Event{Loss: &event.Loss{Hops: 2}}, Event{Tick: 10_000_000_000})
	return evs
}

func TestRunDeliversToEverySink(t *testing.T) {
	src := &fakeSource{names: finalNames{topology.NewIndex(jt.Snapshot())}, events: twoPings()}
	a, rec := &collect{}, &recorder{}
	res, err := Run(context.Background(), src, Config{Journey: journey.Config{HostNetnsIno: jt.HostNS}}, a, rec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.journeys, []uint64{1, 2}) || !slices.Equal(rec.journeys, []uint64{1, 2}) {
		t.Errorf("journeys %v and %v, want 1, 2 in both", a.journeys, rec.journeys)
	}
	if len(a.summaries) != 1 || len(rec.summaries) != 1 {
		t.Fatalf("summaries %d and %d, want one each", len(a.summaries), len(rec.summaries))
	}
	s := a.summaries[0]
	if s.Stats.Journeys != 2 || s.Stats.Hops != uint64(2*len(jt.ClientToWeb)) || s.Loss.Hops != 2 || res.Shown != 2 {
		t.Errorf("summary %+v, shown %d", s, res.Shown)
	}
	if rec.hops != 2*len(jt.ClientToWeb) || rec.snaps != 1 || rec.ticks != 1 || rec.loss.Hops != 2 {
		t.Errorf("event sink saw %d hops, %d snapshots, %d ticks, loss %+v", rec.hops, rec.snaps, rec.ticks, rec.loss)
	}
	if got := a.summaries[0]; got.Stats.ByVerdict[journey.VerdictContainer] != 2 {
		t.Errorf("verdicts %v, want 2 delivered", got.Stats.ByVerdict)
	}
}

func TestRunSelectsAndCounts(t *testing.T) {
	src := &fakeSource{names: finalNames{topology.NewIndex(jt.Snapshot())}, events: twoPings()}
	a := &collect{}
	res, err := Run(context.Background(), src, Config{Journey: journey.Config{HostNetnsIno: jt.HostNS}, Count: 1}, a)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.journeys, []uint64{1}) || res.Shown != 1 || len(a.summaries) != 1 {
		t.Errorf("journeys %v, shown %d, summaries %d; want journey 1 alone and a summary", a.journeys, res.Shown, len(a.summaries))
	}
	// Nobody is selected: everything is assembled and counted, nothing shown.
	src = &fakeSource{names: finalNames{topology.NewIndex(jt.Snapshot())}, events: twoPings()}
	b := &collect{}
	res, err = Run(context.Background(), src, Config{Journey: journey.Config{HostNetnsIno: jt.HostNS}, Select: journey.Selection{Containers: []string{"api"}}}, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.journeys) != 0 || b.summaries[0].Stats.Journeys != 2 {
		t.Errorf("selection of api: got %v, summary %+v", b.journeys, b.summaries[0].Stats)
	}
}

func TestRunStopsAtSinkError(t *testing.T) {
	src := &fakeSource{names: finalNames{topology.NewIndex(jt.Snapshot())}, events: twoPings()}
	broken, ok := &collect{failAfter: 1}, &collect{}
	_, err := Run(context.Background(), src, Config{Journey: journey.Config{HostNetnsIno: jt.HostNS}}, broken, ok)
	if !errors.Is(err, errSink) {
		t.Fatalf("err %v, want the sink's", err)
	}
	if len(ok.summaries) != 1 || len(ok.journeys) != 1 {
		t.Errorf("the other sink got %v and %d summaries, want journey 1 and the summary", ok.journeys, len(ok.summaries))
	}
}

func TestRunWithoutJourneys(t *testing.T) {
	src := &fakeSource{names: finalNames{topology.NewIndex(jt.Snapshot())}, events: twoPings()}
	rec := &recorder{}
	res, err := Run(context.Background(), src, Config{NoJourneys: true}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Summary.Stats; st.Hops != uint64(2*len(jt.ClientToWeb)) || st.Journeys != 0 || !res.Summary.NotAssembled {
		t.Errorf("summary %+v: want the hops counted, no journeys, marked not assembled", res.Summary)
	}
	if len(rec.journeys) != 0 || rec.hops != 2*len(jt.ClientToWeb) || res.Summary.Loss.Hops != 2 || len(rec.summaries) != 1 {
		t.Errorf("journeys %v, hops %d, summary %+v", rec.journeys, rec.hops, res.Summary)
	}
}

// The one container rule: an exact name wins over an ID prefix, an
// ambiguous prefix stops the run, a word naming nothing is reported.
func TestRunContainerSelection(t *testing.T) {
	run := func(words ...string) (*collect, Result, error) {
		src := &fakeSource{names: finalNames{topology.NewIndex(jt.Snapshot())}, events: twoPings()}
		c := &collect{}
		res, err := Run(context.Background(), src, Config{Journey: journey.Config{HostNetnsIno: jt.HostNS}, Select: journey.Selection{Containers: words}}, c)
		return c, res, err
	}
	snap := jt.Snapshot()
	var web topology.Container
	for _, c := range snap.Containers {
		if c.Name == "web" {
			web = c
		}
	}
	if c, _, err := run("web"); err != nil || len(c.journeys) != 2 {
		t.Errorf("-C web: %v, %v", c.journeys, err)
	}
	if c, _, err := run(web.ID[:5]); err != nil || len(c.journeys) != 2 {
		t.Errorf("-C %s (web's ID prefix): %v, %v", web.ID[:5], c.journeys, err)
	}
	if c, res, err := run("nosuch"); err != nil || len(c.journeys) != 0 || len(res.Unmatched) != 1 {
		t.Errorf("-C nosuch: %v, unmatched %v, %v", c.journeys, res.Unmatched, err)
	}
	// A prefix two IDs share is ambiguous.
	two := &topology.Snapshot{Containers: []topology.Container{{ID: "abc1", Name: "x"}, {ID: "abc2", Name: "y"}}}
	src := &fakeSource{names: finalNames{topology.NewIndex(two)}, events: []Event{{Topology: two}}}
	_, err := Run(context.Background(), src, Config{Select: journey.Selection{Containers: []string{"abc"}}}, &collect{})
	var amb *topology.AmbiguousError
	if !errors.As(err, &amb) {
		t.Errorf("-C abc among abc1 and abc2: %v, want ambiguous", err)
	}
}
