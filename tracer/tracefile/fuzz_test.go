package tracefile_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the committed seed corpora in testdata/fuzz")

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

// TestSeedCorpus keeps testdata/fuzz/FuzzReader and FuzzRecords in step
// with the format: run with -update-corpus after a format change.
func TestSeedCorpus(t *testing.T) {
	corpus := map[string][]byte{}
	for name, data := range seeds(t) {
		corpus[filepath.Join("FuzzReader", "seed-"+name)] = corpusEntry(data)
	}
	for name, s := range recordSeeds(t) {
		corpus[filepath.Join("FuzzRecords", "seed-"+name)] = corpusEntry(s.header, s.before, byte(s.kind), s.payload)
	}
	for name, want := range corpus {
		path := filepath.Join("testdata", "fuzz", name)
		dir := filepath.Dir(path)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale: run go test ./tracer/tracefile/ -run TestSeedCorpus -update-corpus", path)
		}
	}
}

// corpusEntry is a corpus file as go test writes them.
func corpusEntry(args ...any) []byte {
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		switch a := a.(type) {
		case byte:
			b = fmt.Appendf(b, "byte(%q)\n", a)
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", a)
		}
	}
	return b
}

// FuzzReader: any input reads without panicking, stops either with io.EOF
// or with a one-line error naming a byte offset, and allocates at most a
// small multiple of its size. Mutations rarely get past the checksums:
// FuzzRecords reaches the decoders.
func FuzzReader(f *testing.F) {
	for _, data := range seeds(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRead(t, data)
	})
}

// FuzzRecords: the input is a header's JSON, the records before the one
// under test (as kind, uvarint length, payload), and the kind and payload
// of the one under test. They are framed with the writer's own code,
// lengths and checksums valid, so every mutation reaches the header,
// snapshot, hop, drop, loss and end decoders. Reading them back is checked
// as in FuzzReader.
func FuzzRecords(f *testing.F) {
	for _, s := range recordSeeds(f) {
		f.Add(s.header, s.before, byte(s.kind), s.payload)
	}
	f.Fuzz(func(t *testing.T, header, before []byte, kind byte, payload []byte) {
		recs := append(splitRecords(before), rawRecord{tracefile.Kind(kind), payload})
		checkRead(t, rawFile(t, header, recs...))
	})
}

// checkRead reads a recording to its end and checks how it went.
func checkRead(t *testing.T, data []byte) {
	var before, after runtimeMem
	before.read()
	r, err := tracefile.Open(bytes.NewReader(data))
	if err != nil {
		after.read()
		checkErr(t, err)
		checkAlloc(t, after.total-before.total, len(data), 0, 0)
		return
	}
	records, snapshots := 0, 0
	var end error
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			end = err
			break
		}
		if err != nil {
			checkErr(t, err)
			end = err
			break
		}
		if rec.Offset < 0 || rec.Offset >= int64(len(data)) {
			t.Fatalf("record offset %d outside the %d-byte input", rec.Offset, len(data))
		}
		if rec.Hop != nil && len(rec.Hop.Data) > int(r.Header().Snaplen) {
			t.Fatalf("hop data %d bytes beyond snaplen %d", len(rec.Hop.Data), r.Header().Snaplen)
		}
		records++
		if rec.Kind == tracefile.KindSnapshot {
			snapshots++
		}
	}
	after.read()
	// The record that failed, if one did, may have been a snapshot.
	checkAlloc(t, after.total-before.total, len(data), records+1, snapshots+1)
	if tr := r.Truncated(); tr != nil && tr.Offset > int64(len(data)) {
		t.Fatalf("truncation %+v beyond the input", tr)
	}
	if _, err := r.Next(); err != end {
		t.Fatalf("Next after %v: %v", end, err)
	}
}

// checkAlloc fails when reading a file of size bytes with that many records
// (snapshots of them) allocated more than docs/recording-format.md says:
// 8 bytes per byte; 256 KiB for the reader (its 64 KiB read buffer, the
// coding context, 64 KiB read ahead for a record cut short); 8 KiB for the
// header and each snapshot (JSON decoding); 512 bytes for each other record
// (a decoded hop or drop, whatever its size).
func checkAlloc(t *testing.T, alloc uint64, size, records, snapshots int) {
	t.Helper()
	limit := 8*uint64(size) + 256<<10 + 8<<10*uint64(1+snapshots) + 512*uint64(records)
	if alloc > limit {
		t.Fatalf("reading %d bytes (%d records, %d snapshots) allocated %d bytes, more than %d", size, records, snapshots, alloc, limit)
	}
}

// splitRecords reads records written as kind, uvarint length, payload; the
// last payload is what is left when the length is longer or broken.
func splitRecords(b []byte) []rawRecord {
	var recs []rawRecord
	for len(b) > 0 {
		k := tracefile.Kind(b[0])
		b = b[1:]
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			recs = append(recs, rawRecord{k, b[max(w, 0):]})
			break
		}
		b = b[w:]
		recs = append(recs, rawRecord{k, b[:n]})
		b = b[n:]
	}
	return recs
}

// recordSeed is FuzzRecords' input.
type recordSeed struct {
	header, before []byte // header JSON; records as kind, uvarint length, payload
	kind           tracefile.Kind
	payload        []byte
}

// unframe turns a recording into FuzzRecords' input: its header's JSON,
// its records but the last, and the last.
func unframe(t testing.TB, data []byte) recordSeed {
	t.Helper()
	jl := int(binary.LittleEndian.Uint32(data[10:]))
	s := recordSeed{header: data[18 : 18+jl]}
	for b := data[18+jl+4:]; len(b) > 0; {
		n, w := binary.Uvarint(b[1:])
		if w <= 0 || len(b) < 1+w+1+int(n)+4 {
			t.Fatalf("unframe: bad record at %d", len(data)-len(b))
		}
		if s.payload != nil {
			s.before = append(s.before, byte(s.kind))
			s.before = binary.AppendUvarint(s.before, uint64(len(s.payload)))
			s.before = append(s.before, s.payload...)
		}
		s.kind, s.payload = tracefile.Kind(b[0]), b[1+w+1:1+w+1+int(n)]
		b = b[1+w+1+int(n)+4:]
	}
	if s.payload == nil {
		t.Fatal("unframe: no records")
	}
	return s
}

// TestRecordSeeds: FuzzRecords starts from recordings that read back whole,
// but for the snapshot of empty endpoints.
func TestRecordSeeds(t *testing.T) {
	for name, s := range recordSeeds(t) {
		recs := append(splitRecords(s.before), rawRecord{s.kind, s.payload})
		r, got, err := readAll(rawFile(t, s.header, recs...))
		if name == "empties" {
			if !errors.Is(err, tracefile.ErrCorrupt) {
				t.Errorf("%s: error %v, want ErrCorrupt", name, err)
			}
			continue
		}
		want := len(recs)
		if s.kind == tracefile.KindEnd || s.kind >= 0x80 { // not returned
			want--
		}
		if err != nil || len(got) != want {
			t.Errorf("%s: %d records of %d, error %v", name, len(got), want, err)
		}
		if (r.Truncated() == nil) != (s.kind == tracefile.KindEnd) {
			t.Errorf("%s: truncated %v", name, r.Truncated())
		}
	}
}

// recordSeeds are FuzzRecords' seeds, one or more for each record kind; the
// committed corpus holds them.
func recordSeeds(t testing.TB) map[string]recordSeed {
	of := func(hdr tracefile.Header, items ...item) recordSeed {
		data, _ := writeAll(t, hdr, items, false)
		return unframe(t, data)
	}
	full, _, _ := smallFile(t)
	hops := scenario(tracefiletest.Options{Packets: 3, Snaplen: 16})[1:]
	drops := scenario(tracefiletest.Options{Packets: 6, DropEvery: 2})[1:]
	withEnd, _ := writeAll(t, testHeader(16), hops[:2], true)
	tiny := unframe(t, rawFile(t, []byte(jsonOf(t, testHeader(0))), rawRecord{tracefile.KindSnapshot, []byte(`{"endpoints":[{},{},{}],"containers":[{"networks":[{}]}]}`)}))
	// 602 empty endpoints, refused. Decoded by encoding/json alone, one
	// more regrows the array and takes reading past the limit.
	empty := unframe(t, rawFile(t, []byte(jsonOf(t, testHeader(0))), rawRecord{tracefile.KindSnapshot, repeatJSON(`{"endpoints":[`, `{}`, `]}`, 16+602*3)}))
	optional := of(testHeader(0), hops[0])
	optional.before = append(binary.AppendUvarint([]byte{byte(optional.kind)}, uint64(len(optional.payload))), optional.payload...)
	optional.kind, optional.payload = 0x80, []byte("abc")
	return map[string]recordSeed{
		"full":      unframe(t, full),
		"header":    {header: []byte(jsonOf(t, testHeader(0))), kind: tracefile.KindLoss, payload: []byte{0, 0}},
		"snapshot":  of(testHeader(0), item{kind: tracefile.KindSnapshot, snap: tracefiletest.Snapshot()}),
		"tiny-snap": tiny,
		"empties":   empty,
		"hop":       of(testHeader(16), hops[:5]...),
		"drop":      of(testHeader(0), drops[:slices.IndexFunc(drops, func(it item) bool { return it.kind == tracefile.KindDrop })+1]...),
		"loss":      of(testHeader(0), item{kind: tracefile.KindLoss, loss: event.Loss{Hops: 12345, Drops: 6}}),
		"end":       unframe(t, withEnd),
		"optional":  optional,
	}
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
