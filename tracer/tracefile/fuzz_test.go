package tracefile_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the committed seed corpus in testdata/fuzz/FuzzReader")

// seeds are valid recordings and near misses; the committed corpus holds them.
func seeds(t testing.TB) map[string][]byte {
	full, _, _ := smallFile(t)
	empty, _ := writeAll(t, testHeader(0), nil, true)
	headOnly, _ := writeAll(t, testHeader(0), nil, false)
	drops, _ := writeAll(t, testHeader(0), scenario(tracefiletest.Options{Packets: 6, DropEvery: 2}), true)
	return map[string][]byte{
		"full":       full,
		"empty":      empty,
		"header":     headOnly,
		"drops":      drops,
		"cut":        full[:len(full)*2/3],
		"zerotail":   append(bytes.Clone(headOnly), 0, 0, 0, 0),
		"pcapng":     []byte("\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a"),
		"nothing":    {},
		"magic-only": full[:8],
	}
}

// TestSeedCorpus keeps testdata/fuzz/FuzzReader in step with the format:
// run with -update-corpus after a format change.
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	for name, data := range seeds(t) {
		path := filepath.Join(dir, "seed-"+name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or stale: run go test ./tracer/tracefile/ -run TestSeedCorpus -update-corpus", path)
		}
	}
}

// FuzzReader: any input reads without panicking, and stops either with
// io.EOF or with a one-line error naming a byte offset.
func FuzzReader(f *testing.F) {
	for _, data := range seeds(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := tracefile.Open(bytes.NewReader(data))
		if err != nil {
			checkErr(t, err)
			return
		}
		n := 0
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				checkErr(t, err)
				return
			}
			if rec.Offset < 0 || rec.Offset >= int64(len(data)) {
				t.Fatalf("record offset %d outside the %d-byte input", rec.Offset, len(data))
			}
			if rec.Hop != nil && len(rec.Hop.Data) > int(r.Header().Snaplen) {
				t.Fatalf("hop data %d bytes beyond snaplen %d", len(rec.Hop.Data), r.Header().Snaplen)
			}
			n++
		}
		if tr := r.Truncated(); tr != nil && tr.Offset > int64(len(data)) {
			t.Fatalf("truncation %+v beyond the input", tr)
		}
		if _, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("Next after EOF: %v", err)
		}
	})
}

func checkErr(t *testing.T, err error) {
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "at byte ") {
		t.Fatalf("error %q is not one line naming an offset", msg)
	}
	var fe *tracefile.FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a FormatError", err)
	}
}
