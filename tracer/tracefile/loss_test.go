package tracefile

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// Evictions travel in an optional record after the loss record: read back
// as part of the loss, and only written when there were some.
func TestLossWithEvictions(t *testing.T) {
	var buf bytes.Buffer
	w, err := Create(&buf, Header{HoptraceVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	w.WriteLoss(event.Loss{Hops: 1})
	w.WriteLoss(event.Loss{Hops: 3, Drops: 1, Evicted: 7})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var got []event.Loss
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Kind == KindLoss {
			got = append(got, rec.Loss)
		}
	}
	if want := (event.Loss{Hops: 3, Drops: 1, Evicted: 7}); r.Loss() != want || got[len(got)-1] != want {
		t.Errorf("loss %+v, records %+v; want %+v last", r.Loss(), got, want)
	}
	if got[0] != (event.Loss{Hops: 1}) {
		t.Errorf("first loss %+v", got[0])
	}
}
