package pipeline

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

// failSink fails every hop write after the first n.
type failSink struct {
	tracefile.Sink
	n      int
	closed bool
}

var errDiskFull = errors.New("disk full")

func (f *failSink) WriteHop(h *event.Hop) error {
	if f.n == 0 {
		return errDiskFull
	}
	f.n--
	return f.Sink.WriteHop(h)
}

func (f *failSink) Close() error { f.closed = true; return f.Sink.Close() }

// readBack counts the records of a recording by kind, and its loss.
func readBack(t *testing.T, b []byte) (map[tracefile.Kind]int, event.Loss) {
	t.Helper()
	r, err := tracefile.Open(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	n := map[tracefile.Kind]int{}
	for {
		rec, err := r.Next()
		if err != nil {
			break
		}
		n[rec.Kind]++
	}
	return n, r.Loss()
}

// A write error stops the run and is returned; the file is closed and
// what was written before reads back.
func TestRecorderStopsAtFirstWriteError(t *testing.T) {
	var buf bytes.Buffer
	w, err := tracefile.Create(&buf, tracefile.Header{HoptraceVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	fs := &failSink{Sink: w, n: 2}
	src := &fakeSource{names: finalNames{topology.NewIndex(jt.Snapshot())}, events: twoPings()}
	_, err = Run(context.Background(), src, Config{Journey: journey.Config{HostNetnsIno: jt.HostNS}}, NewRecorder(fs))
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("err %v, want disk full", err)
	}
	if !fs.closed {
		t.Error("the recording was not closed")
	}
	if src.fed > 4 {
		t.Errorf("the source fed %d events after the error, want the run stopped", src.fed)
	}
	if n, _ := readBack(t, buf.Bytes()); n[tracefile.KindHop] != 2 || n[tracefile.KindSnapshot] != 1 {
		t.Errorf("read back %v, want the snapshot and the 2 hops written before the error", n)
	}
}

// Every event is written; the loss counters at the end are the last ones.
func TestRecorderWritesEverything(t *testing.T) {
	var buf bytes.Buffer
	w, err := tracefile.Create(&buf, tracefile.Header{HoptraceVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{names: finalNames{topology.NewIndex(jt.Snapshot())}, events: twoPings()}
	if _, err := Run(context.Background(), src, Config{NoJourneys: true}, NewRecorder(w)); err != nil {
		t.Fatal(err)
	}
	n, loss := readBack(t, buf.Bytes())
	if n[tracefile.KindHop] != 2*len(jt.ClientToWeb) || n[tracefile.KindSnapshot] != 1 || loss.Hops != 2 {
		t.Errorf("read back %v, loss %+v", n, loss)
	}
}

// Journeys finish when the watermark passes their deadline, not before.
func TestRunExpiresAtTheWatermark(t *testing.T) {
	p := jt.TCP(jt.ClientIP, 1000, jt.WebIP, 80, event.TCPSyn, 1)
	evs := []Event{{Topology: jt.Snapshot()}}
	// The receiving side is not traced: the journey can only time out.
	for _, h := range jt.Walk(jt.ClientToWeb[:2], 1_000_000_000, 1000, 0xa, 0xf, p) {
		evs = append(evs, Event{Hop: &h})
	}
	timeout := uint64(journey.DefaultTimeout)
	evs = append(evs, Event{Tick: 1_000_000_000 + timeout - 1_000_000})
	got := &collect{}
	mark := &watch{collect: got, after: len(evs)}
	evs = append(evs, Event{Tick: 1_000_000_000 + timeout + 1_000_000})
	src := &fakeSource{names: finalNames{topology.NewIndex(jt.Snapshot())}, events: evs}
	if _, err := Run(context.Background(), src, Config{Journey: journey.Config{HostNetnsIno: jt.HostNS}}, mark); err != nil {
		t.Fatal(err)
	}
	if mark.early != 0 || len(got.journeys) != 1 {
		t.Errorf("%d journeys before the deadline's watermark, %d in all; want 0 and 1", mark.early, len(got.journeys))
	}
}

// watch counts journeys delivered before the event numbered after.
type watch struct {
	*collect
	after, seen, early int
}

func (w *watch) Event(Event) error { w.seen++; return nil }
func (w *watch) Journey(j *journey.Journey) error {
	if w.seen < w.after {
		w.early++
	}
	return w.collect.Journey(j)
}
