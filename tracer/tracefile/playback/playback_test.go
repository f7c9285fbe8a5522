package playback_test

import (
	"bytes"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/playback"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

// TestNamesAtTheTime: hops are named from the latest snapshot before them,
// so a container renamed mid-recording keeps its old name in old journeys.
func TestNamesAtTheTime(t *testing.T) {
	var buf bytes.Buffer
	w, err := tracefile.Create(&buf, tracefile.Header{MonoOffsetNS: tracefiletest.MonoOffset})
	if err != nil {
		t.Fatal(err)
	}
	events := tracefiletest.Events(tracefiletest.Options{Packets: 20})
	before := tracefiletest.Snapshot()
	after := tracefiletest.Snapshot()
	for i := range after.Endpoints {
		if c := after.Endpoints[i].Container; c != nil && c.Name == "web" {
			c.Name = "web-renamed"
		}
	}
	w.WriteSnapshot(before)
	for i, ev := range events {
		if i == len(events)/2 {
			w.WriteSnapshot(after)
		}
		w.WriteHop(ev.Hop)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	var labels []string
	p := playback.New(journey.Config{}, func(j *journey.Journey) error {
		labels = append(labels, j.Hops[len(j.Hops)-1].Label())
		return nil
	})
	r, err := tracefile.Open(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Play(r); err != nil {
		t.Fatal(err)
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	if len(labels) != 20 {
		t.Fatalf("%d journeys, want 20", len(labels))
	}
	if labels[0] != "web:eth0" || labels[18] != "web-renamed:eth0" {
		t.Fatalf("journey ends %v: want web:eth0 first and web-renamed:eth0 late", labels)
	}
	if p.Stats().Hops != 80 {
		t.Fatalf("stats %+v", p.Stats())
	}
}
