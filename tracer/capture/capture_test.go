package capture

import (
	"bytes"
	"errors"
	"slices"
	"sort"
	"testing"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

func snap() *topology.Snapshot { return jt.Snapshot() }

// want lists what Want selects as "name@bridge", sorted.
func want(cfg Config) []string {
	var out []string
	for _, ifc := range Want(&cfg, snap()) {
		out = append(out, ifc.Name+"@"+ifc.Bridge)
	}
	sort.Strings(out)
	return out
}

func TestWantSelection(t *testing.T) {
	all := want(Config{NoContainerSide: true})
	if exp := []string{"br-1234@br-1234", "docker0@docker0", "veth1a2b@docker0", "veth3c4d@docker0", "veth5e6f@docker0", "vethaa11@br-1234"}; !slices.Equal(all, exp) {
		t.Errorf("every bridge: %v, want %v", all, exp)
	}
	// A container selects its bridge, every port of it: both ends of a journey.
	web := want(Config{Containers: []string{"web"}, NoContainerSide: true})
	if exp := []string{"docker0@docker0", "veth1a2b@docker0", "veth3c4d@docker0", "veth5e6f@docker0"}; !slices.Equal(web, exp) {
		t.Errorf("-C web: %v, want %v", web, exp)
	}
	// By ID prefix too.
	if byID := want(Config{Containers: []string{"a91"}, NoContainerSide: true}); !slices.Equal(byID, []string{"br-1234@br-1234", "vethaa11@br-1234"}) {
		t.Errorf("-C a91: %v", byID)
	}
	// Interfaces alone: only those.
	if eth := want(Config{Ifaces: []string{"eth0"}}); !slices.Equal(eth, []string{"eth0@"}) {
		t.Errorf("-i eth0: %v", eth)
	}
	// A container that is gone selects nothing (and no error: it may come back).
	if gone := want(Config{Containers: []string{"nosuch"}}); len(gone) != 0 {
		t.Errorf("-C nosuch: %v, want nothing", gone)
	}
	// With container sides, each port's peer (eth0 in the container) is added.
	sides := want(Config{Containers: []string{"api"}})
	if !slices.Contains(sides, "eth0@br-1234") && !slices.Contains(sides, "eth0@") {
		t.Errorf("-C api with container side: %v lacks api's eth0", sides)
	}
}

func TestJourneysHandlerExpiresAtTheWatermark(t *testing.T) {
	var got []*journey.Journey
	h := &Journeys{Asm: journey.New(journey.Config{HostNetnsIno: jt.HostNS}, jt.Namer()), Emit: func(j *journey.Journey) { got = append(got, j) }}
	// A packet whose receiving side is not traced: it can only end by timeout.
	p := jt.TCP(jt.ClientIP, 1000, jt.WebIP, 80, event.TCPSyn, 1)
	for _, hop := range jt.Walk(jt.ClientToWeb[:2], 1_000_000_000, 1000, 0xa, 0xf, p) {
		h.Hop(&hop)
	}
	h.Tick(1_000_000_000 + uint64(journey.DefaultTimeout) - 1_000_000) // before the timeout
	if len(got) != 0 {
		t.Fatalf("journey expired before its timeout: %d", len(got))
	}
	h.Tick(1_000_000_000 + uint64(journey.DefaultTimeout) + 1_000_000)
	if len(got) != 1 || got[0].Verdict != journey.VerdictIncomplete || len(got[0].Hops) != 2 {
		t.Fatalf("after the timeout: %d journeys %+v", len(got), got)
	}
}

// failSink fails every write after the first n.
type failSink struct {
	tracefile.Sink
	n int
}

var errDiskFull = errors.New("disk full")

func (f *failSink) WriteHop(h *event.Hop) error {
	if f.n == 0 {
		return errDiskFull
	}
	f.n--
	return f.Sink.WriteHop(h)
}

func TestRecorderStopsAtFirstWriteError(t *testing.T) {
	var buf bytes.Buffer
	w, err := tracefile.Create(&buf, tracefile.Header{HoptraceVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	stops := 0
	rec := &Recorder{Sink: &failSink{Sink: w, n: 2}, OnError: func(error) { stops++ }}
	rec.Loss(event.Loss{Hops: 3})
	rec.Topology(snap())
	p := jt.TCP(jt.ClientIP, 1000, jt.WebIP, 80, event.TCPSyn, 1)
	for _, hop := range jt.Walk(jt.ClientToWeb, 1000, 1000, 0xa, 0xf, p) {
		rec.Hop(&hop)
	}
	if !errors.Is(rec.Err(), errDiskFull) || stops != 1 {
		t.Fatalf("err %v, OnError called %d times; want disk full once", rec.Err(), stops)
	}
	if err := rec.Close(event.Loss{Hops: 3}); !errors.Is(err, errDiskFull) {
		t.Fatalf("Close: %v, want the first write error", err)
	}
	// What was written before the error reads back.
	r, err := tracefile.Open(&buf)
	if err != nil {
		t.Fatal(err)
	}
	hops := 0
	for {
		rec, err := r.Next()
		if err != nil {
			break
		}
		if rec.Kind == tracefile.KindHop {
			hops++
		}
	}
	if hops != 2 {
		t.Errorf("read back %d hops, want the 2 written before the error", hops)
	}
}

func TestRecorderWritesLossAtClose(t *testing.T) {
	var buf bytes.Buffer
	w, err := tracefile.Create(&buf, tracefile.Header{HoptraceVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{Sink: w}
	if err := rec.Close(event.Loss{Hops: 7, Drops: 1}); err != nil {
		t.Fatal(err)
	}
	r, err := tracefile.Open(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := r.Next(); err != nil {
			break
		}
	}
	if l := r.Loss(); l.Hops != 7 || l.Drops != 1 {
		t.Errorf("loss read back %+v, want 7 hops 1 drop", l)
	}
}
