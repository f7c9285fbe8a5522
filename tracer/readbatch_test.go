package tracer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestReadBatch: events already committed come back in batches, a batch
// filled as far as it holds, every event once and in time order; on empty
// rings ReadBatch waits as ReadInto does, until its context ends.
func TestReadBatch(t *testing.T) {
	tr := load(t, Options{})
	const n = 300
	writeNumberedHops(t, tr, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]Record, 64)
	var o inOrder
	for batches := 0; o.hops < n; batches++ {
		got, err := tr.ReadBatch(ctx, recs)
		if err != nil {
			t.Fatalf("after %d of %d hops: %v", o.hops, n, err)
		}
		if got < 1 || got > len(recs) {
			t.Fatalf("a batch of %d records into %d", got, len(recs))
		}
		if batches == 0 && got != len(recs) {
			t.Errorf("first batch: %d records with %d hops committed, want a full batch of %d", got, n, len(recs))
		}
		for i := range recs[:got] {
			o.see(t, &recs[i])
		}
	}
	readRest(t, tr, n)
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
	tr, prog, frame := loadForReading(b)
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
