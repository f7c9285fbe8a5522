package tracefile_test

import (
	"bytes"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

// countingWriter counts the writes it is handed.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// TestWritesAreLarge: between flushes the writer hands records on in
// pieces of about a mebibyte, so a busy recording (a few MB a second)
// makes a few write calls a second, not one per 64 KiB; and Flush hands
// everything over.
func TestWritesAreLarge(t *testing.T) {
	hops := benchHops(0)
	var out countingWriter
	w, err := tracefile.Create(&out, testHeader(0))
	if err != nil {
		t.Fatal(err)
	}
	header := out.writes
	for _, h := range hops {
		if err := w.WriteHop(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	written := out.Len()
	writes := out.writes - header
	if written < 2<<20 {
		t.Fatalf("only %d bytes of hops written: too few to tell the buffer's size", written)
	}
	if perWrite := written / writes; perWrite < 512<<10 {
		t.Errorf("%d bytes in %d writes, %d a write: want writes of about 1 MiB", written, writes, perWrite)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
