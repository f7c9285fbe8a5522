package tracefile_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

// rawRecord is a record payload framed as it is, valid or not.
type rawRecord struct {
	kind    tracefile.Kind
	payload []byte
}

// rawFile frames the header JSON and records with the writer's own framing
// (lengths and checksums valid whatever the bytes), without an end record.
func rawFile(t testing.TB, header []byte, recs ...rawRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := tracefile.CreateRaw(&buf, header)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WriteRaw(r.kind, r.payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAlloc reads a recording to its end and returns how many bytes that
// allocated, and the error that stopped it (nil at io.EOF).
func readAlloc(data []byte) (uint64, error) {
	var before, after runtimeMem
	before.read()
	_, _, err := readAll(data)
	after.read()
	return after.total - before.total, err
}

// repeatJSON is prefix, then elem n times separated by commas, then suffix.
func repeatJSON(prefix, elem, suffix string, size int) []byte {
	n := (size - len(prefix) - len(suffix)) / (len(elem) + 1)
	b := make([]byte, 0, size)
	b = append(b, prefix...)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, elem...)
	}
	return append(b, suffix...)
}

// TestSnapshotMemory: snapshot and header JSON made of many tiny elements
// (issue 10: 32 MiB of {"endpoints":[{},{},...]} took 7.3 GB to read) must
// not make the reader allocate more than a small multiple of the file.
func TestSnapshotMemory(t *testing.T) {
	header := []byte(jsonOf(t, testHeader(0)))
	for _, tc := range []struct {
		name   string
		header []byte // nil: the test header
		snap   []byte
	}{
		{name: "empty endpoints", snap: repeatJSON(`{"endpoints":[`, `{}`, `]}`, 8<<20)},
		{name: "empty containers", snap: repeatJSON(`{"containers":[`, `{}`, `]}`, 1<<20)},
		{name: "empty namespaces", snap: repeatJSON(`{"namespaces":[`, `{}`, `]}`, 1<<20)},
		{name: "empty networks", snap: repeatJSON(`{"containers":[{"networks":[`, `{}`, `]}]}`, 1<<20)},
		{name: "empty containers of endpoints", snap: repeatJSON(`{"endpoints":[`, `{"container":{}}`, `]}`, 1<<20)},
		{name: "bridge ports", snap: repeatJSON(`{"bridges":[{"ports":[`, `0`, `]}]}`, 1<<20)},
		{name: "addresses", snap: repeatJSON(`{"endpoints":[{"addrs":[`, `"::/0"`, `]}]}`, 1<<20)},
		{name: "empty names", snap: repeatJSON(`{"endpoints":[`, `{"name":"","bridge":"","network":""}`, `]}`, 1<<20)},
		{name: "escaped names", snap: repeatJSON(`{"endpoints":[`, `{"name":"\n"}`, `]}`, 1<<20)},
		{name: "header features", header: repeatJSON(`{"hoptrace_version":"x","features":[`, `""`, `]}`, 60<<10), snap: []byte(`{}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := header
			if tc.header != nil {
				hdr = tc.header
			}
			data := rawFile(t, hdr, rawRecord{tracefile.KindSnapshot, tc.snap})
			alloc, err := readAlloc(data)
			if err != nil && (!errors.Is(err, tracefile.ErrCorrupt) || strings.Contains(err.Error(), "\n")) {
				t.Fatalf("error %q, want a one-line ErrCorrupt or none", err)
			}
			limit := 8*uint64(len(data)) + 512<<10
			t.Logf("%d-byte file: %d bytes allocated (%.1f per byte); %v", len(data), alloc, float64(alloc)/float64(len(data)), err)
			if alloc > limit {
				t.Fatalf("reading a %d-byte file allocated %d bytes, more than %d", len(data), alloc, limit)
			}
		})
	}
}

// TestBigSnapshot: a real snapshot of a few thousand containers reads back
// whole, within the same bound.
func TestBigSnapshot(t *testing.T) {
	snap := tracefiletest.Snapshot()
	one := *snap
	for len(snap.Endpoints) < 5000 {
		snap.Endpoints = append(snap.Endpoints, one.Endpoints...)
		snap.Containers = append(snap.Containers, one.Containers...)
		snap.Namespaces = append(snap.Namespaces, one.Namespaces...)
	}
	js, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	data := rawFile(t, []byte(jsonOf(t, testHeader(0))), rawRecord{tracefile.KindSnapshot, js})
	alloc, err := readAlloc(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d-byte file: %d bytes allocated (%.1f per byte)", len(data), alloc, float64(alloc)/float64(len(data)))
	if limit := 8 * uint64(len(data)); alloc > limit {
		t.Fatalf("reading a %d-byte file allocated %d bytes, more than %d", len(data), alloc, limit)
	}
	_, recs, _ := readAll(data)
	if g, w := jsonOf(t, recs[0].Snapshot), string(js); g != w {
		t.Fatal("snapshot read back differs")
	}
}
