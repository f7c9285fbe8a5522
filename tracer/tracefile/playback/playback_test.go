package playback_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/playback"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

// recording writes a snapshot, then hops of n packets, renaming web to
// web-renamed halfway, into one file or (parts > 1) rotated parts.
func recording(t *testing.T, n, parts int) [][]byte {
	t.Helper()
	events := tracefiletest.Events(tracefiletest.Options{Packets: n})
	after := tracefiletest.Snapshot()
	for i := range after.Endpoints {
		if c := after.Endpoints[i].Container; c != nil && c.Name == "web" {
			c.Name = "web-renamed"
		}
	}
	var out [][]byte
	per := (len(events) + parts - 1) / parts
	for p := 0; p < parts; p++ {
		var buf bytes.Buffer
		w, err := tracefile.Create(&buf, tracefile.Header{MonoOffsetNS: tracefiletest.MonoOffset, Part: p + 1})
		if err != nil {
			t.Fatal(err)
		}
		snap := tracefiletest.Snapshot()
		if p*per >= len(events)/2 {
			snap = after
		}
		w.WriteSnapshot(snap)
		for i := p * per; i < min((p+1)*per, len(events)); i++ {
			if i == len(events)/2 && i != p*per {
				w.WriteSnapshot(after)
			}
			w.WriteHop(events[i].Hop)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}

// labelSink keeps each journey's last label.
type labelSink struct{ labels []string }

func (l *labelSink) Journey(j *journey.Journey) error {
	l.labels = append(l.labels, j.Hops[len(j.Hops)-1].Label())
	return nil
}
func (l *labelSink) Summary(render.Summary) error { return nil }

// TestSourceThroughPipeline: recordings, whole or in rotated parts, run
// through the pipeline give every journey, named at the time.
func TestSourceThroughPipeline(t *testing.T) {
	for _, parts := range []int{1, 3} {
		files := recording(t, 20, parts)
		var paths []string
		for i := range files {
			paths = append(paths, fmt.Sprintf("part%d", i))
		}
		open := func(path string) (io.ReadCloser, error) {
			var i int
			fmt.Sscanf(path, "part%d", &i)
			return io.NopCloser(bytes.NewReader(files[i])), nil
		}
		src, err := playback.NewSource(paths, open)
		if err != nil {
			t.Fatal(err)
		}
		sink := &labelSink{}
		res, err := pipeline.Run(context.Background(), src, pipeline.Config{}, sink)
		if err != nil {
			t.Fatal(err)
		}
		if len(sink.labels) != 20 || res.Summary.Stats.Hops != 80 {
			t.Fatalf("%d parts: %d journeys, %d hops; want 20 and 80", parts, len(sink.labels), res.Summary.Stats.Hops)
		}
		if sink.labels[0] != "web:eth0" || sink.labels[18] != "web-renamed:eth0" {
			t.Errorf("%d parts: journey ends %v: want web:eth0 first and web-renamed:eth0 late", parts, sink.labels)
		}
	}
}
