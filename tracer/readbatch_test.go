package tracer

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// TestReadBatch: events already committed come back in batches, a batch
// filled as far as it holds, every event once and in time order; on empty
// rings ReadBatch waits as ReadInto does, until its context ends.
func TestReadBatch(t *testing.T) {
	tr := load(t, Options{})
	cpus := runtime.NumCPU()
	const n = 300
	for i := range n {
		f := flowFrame(i)
		binary.BigEndian.PutUint16(f[18:], uint16(i)) // IP ID: the event's number
		runHopOn(t, tr, i%cpus, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]Record, 64)
	hops, batches := 0, 0
	var last uint64
	for hops < n {
		got, err := tr.ReadBatch(ctx, recs)
		if err != nil {
			t.Fatalf("after %d of %d hops: %v", hops, n, err)
		}
		if got < 1 || got > len(recs) {
			t.Fatalf("a batch of %d records into %d", got, len(recs))
		}
		if batches == 0 && got != len(recs) {
			t.Errorf("first batch: %d records with %d hops committed, want a full batch of %d", got, n, len(recs))
		}
		batches++
		for _, r := range recs[:got] {
			ts := r.Drop.TimeNS
			if r.Kind == KindHop {
				if id := r.Hop.Pkt.IPID; id != uint32(hops) {
					t.Fatalf("hop %d read as number %d", hops, id)
				}
				ts = r.Hop.TimeNS
				hops++
			}
			if ts < last {
				t.Fatalf("a %v at %d, before the event read before it (%d)", r.Kind, ts, last)
			}
			last = ts
		}
	}
	// What is left are drops of the runs' skbs: then the rings are empty.
	for {
		took, _ := tr.readNow(&recs[0])
		if !took {
			break
		}
		if recs[0].Kind == KindHop {
			t.Errorf("a hop more than the %d made", n)
		}
	}
	if got, err := tr.ReadBatch(ctx, nil); got != 0 || err != nil {
		t.Errorf("ReadBatch into no records: %d, %v; want 0, nil", got, err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if got, err := tr.ReadBatch(short, recs); got != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReadBatch on empty rings: %d, %v; want 0 and the context's deadline", got, err)
	}
}

// BenchmarkReadDrain is the reader's own cost an event: hops already in the
// rings (written by the hook beforehand, the timer stopped) read out one
// ReadInto at a time, or 64 a ReadBatch as the capture reads them.
func BenchmarkReadDrain(b *testing.B) {
	for _, batch := range []int{1, 64} {
		name := "ReadInto"
		if batch > 1 {
			name = "ReadBatch64"
		}
		b.Run(name, func(b *testing.B) { benchReadDrain(b, batch) })
	}
}

func benchReadDrain(b *testing.B, batch int) {
	testenv.RequireRoot(b)
	tr, err := Load(Options{RingBufferBytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	prog := tr.coll.Programs["hop_ingress_legacy"]
	frame := testFrame()
	recs := make([]Record, batch)
	ctx := context.Background()
	events := 0
	var took time.Duration
	for range b.N {
		// 4096 runs: well within one CPU's rings.
		if _, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: 4096}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for tr.Unread() > 0 {
			got, err := tr.ReadBatch(ctx, recs)
			if err != nil {
				b.Fatal(err)
			}
			events += got
		}
		took += time.Since(start)
	}
	if loss, _ := tr.Loss(); loss.Hops > 0 {
		b.Fatalf("%d hops lost: a round does not fit the rings", loss.Hops)
	}
	b.ReportMetric(float64(took.Nanoseconds())/float64(events), "ns/event")
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}
