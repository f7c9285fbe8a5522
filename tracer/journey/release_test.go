package journey_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
)

// snapshot copies what a journey holds, so that it can be compared after
// the journey's memory was reused.
func snapshot(j *journey.Journey) journey.Journey {
	c := *j
	c.Hops = slices.Clone(j.Hops)
	c.Rewrites = slices.Clone(j.Rewrites)
	if j.Drop != nil {
		d := *j.Drop
		c.Drop = &d
	}
	return c
}

// Journeys given back with Release are reused for later ones, and a reused
// journey tells exactly what a new one would: every shape (NAT rewrites,
// floods, drops, GSO, unnamed interfaces) twice over, each journey released
// as soon as it came out, against an assembler that releases nothing.
func TestReleasedJourneysAreReused(t *testing.T) {
	in := append(jt.Shapes(), jt.Shapes()...)
	// The second round later than the first, so it finishes after it.
	half := len(in) / 2
	for i := half; i < len(in); i++ {
		e := in[i]
		if e.Hop != nil {
			h := *e.Hop
			h.TimeNS += 10_000_000_000
			in[i].Hop = &h
		} else {
			d := *e.Drop
			d.TimeNS += 10_000_000_000
			in[i].Drop = &d
		}
	}
	cfg := journey.Config{HostNetnsIno: jt.HostNS}
	namer := jt.Namer()
	run := func(release bool) (out []journey.Journey, reused int) {
		a := journey.New(cfg, namer)
		seen := map[*journey.Journey]bool{}
		take := func(js []*journey.Journey) {
			for _, j := range js {
				if seen[j] {
					reused++
				}
				seen[j] = true
				out = append(out, snapshot(j))
				if release {
					a.Release(j)
				}
			}
		}
		for _, e := range in {
			if e.Hop != nil {
				take(a.AddHop(*e.Hop))
			} else {
				take(a.AddDrop(*e.Drop))
			}
		}
		take(a.Flush())
		return out, reused
	}
	want, _ := run(false)
	got, reused := run(true)

	if len(got) != len(want) {
		t.Fatalf("%d journeys with Release, %d without", len(got), len(want))
	}
	for i := range want {
		g, w := reflect.ValueOf(got[i]), reflect.ValueOf(want[i])
		for f := range g.NumField() {
			if !reflect.DeepEqual(g.Field(f).Interface(), w.Field(f).Interface()) {
				t.Errorf("journey %d: %s is %+v when journeys are reused, %+v when not", i, g.Type().Field(f).Name, g.Field(f).Interface(), w.Field(f).Interface())
			}
		}
	}
	// Each shape finishes before the next starts: all but the first
	// journey can reuse one given back.
	if reused < len(want)/2 {
		t.Errorf("%d of %d journeys reused memory given back, want most", reused, len(want))
	}
}

// A steady flow of journeys whose memory is given back allocates next to
// nothing per journey once warm.
func TestReleaseCutsAllocations(t *testing.T) {
	cfg := journey.Config{HostNetnsIno: jt.HostNS}
	a := journey.New(cfg, jt.Namer())
	p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, 0, 1000)
	hops := jt.Walk(jt.ClientToWeb, 1_000_000_000, 1000, 0x1000, 7, p)
	one := func() {
		for i := range hops {
			for _, j := range a.AddHop(hops[i]) {
				a.Release(j)
			}
		}
		// The next packet: another skb, past the grace, so that its
		// first hop finishes this one.
		for i := range hops {
			hops[i].TimeNS += 10_000_000
			hops[i].SkbKey += 0x100
		}
	}
	for range 10 {
		one()
	}
	// Left: the one-element slice AddHop returns the finished journey in.
	if n := testing.AllocsPerRun(200, one); n > 1 {
		t.Errorf("%.1f allocations per journey with Release, want at most 1", n)
	}
}
