package tracefile_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

func testHeader(snaplen uint32) tracefile.Header {
	return tracefile.Header{
		HoptraceVersion: "v0.1.0-test",
		Kernel:          "6.1.0-test-amd64",
		Hostname:        "box",
		Start:           tracefiletest.Start,
		MonoOffsetNS:    tracefiletest.MonoOffset,
		Snaplen:         snaplen,
		Filter:          "tcp port 80",
		Containers:      []string{"web"},
		Features:        []string{"tcx", "skb-key"},
	}
}

// item is what was written, in order, to compare with what is read.
type item struct {
	kind tracefile.Kind
	hop  *event.Hop
	drop *event.Drop
	snap *topology.Snapshot
	loss event.Loss
}

// writeAll writes the items and returns the file and the offset at which
// each record ends (so cut-off tests know what a prefix must hold).
func writeAll(t testing.TB, hdr tracefile.Header, items []item, close bool) ([]byte, []int64) {
	t.Helper()
	var buf bytes.Buffer
	w, err := tracefile.Create(&buf, hdr)
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64
	for _, it := range items {
		switch it.kind {
		case tracefile.KindHop:
			err = w.WriteHop(it.hop)
		case tracefile.KindDrop:
			err = w.WriteDrop(it.drop)
		case tracefile.KindSnapshot:
			err = w.WriteSnapshot(it.snap)
		case tracefile.KindLoss:
			err = w.WriteLoss(it.loss)
		}
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, w.Size())
	}
	if close {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	} else if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), ends
}

func scenario(o tracefiletest.Options) []item {
	items := []item{{kind: tracefile.KindSnapshot, snap: tracefiletest.Snapshot()}}
	for i, ev := range tracefiletest.Events(o) {
		if ev.Hop != nil {
			items = append(items, item{kind: tracefile.KindHop, hop: ev.Hop})
		} else {
			items = append(items, item{kind: tracefile.KindDrop, drop: ev.Drop})
		}
		if i%7 == 6 {
			items = append(items, item{kind: tracefile.KindLoss, loss: event.Loss{Hops: uint64(i), Drops: 1}})
		}
	}
	return items
}

// readAll reads every record; it returns the records and the final error
// (nil when Next ended with io.EOF).
func readAll(data []byte) (*tracefile.Reader, []tracefile.Record, error) {
	r, err := tracefile.Open(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	var recs []tracefile.Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r, recs, nil
		}
		if err != nil {
			return r, recs, err
		}
		recs = append(recs, rec)
	}
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkItems(t *testing.T, want []item, got []tracefile.Record, snaplen uint32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d records, wrote %d", len(got), len(want))
	}
	for i, it := range want {
		rec := got[i]
		if rec.Kind != it.kind {
			t.Fatalf("record %d: kind %v, want %v", i, rec.Kind, it.kind)
		}
		switch it.kind {
		case tracefile.KindHop:
			want := *it.hop
			if len(want.Data) > int(snaplen) {
				want.Data = want.Data[:snaplen]
			}
			if len(want.Data) == 0 {
				want.Data = nil
			}
			if !reflect.DeepEqual(*rec.Hop, want) {
				t.Fatalf("record %d: hop\n got %+v\nwant %+v", i, *rec.Hop, want)
			}
		case tracefile.KindDrop:
			if !reflect.DeepEqual(*rec.Drop, *it.drop) {
				t.Fatalf("record %d: drop\n got %+v\nwant %+v", i, *rec.Drop, *it.drop)
			}
		case tracefile.KindSnapshot:
			if g, w := jsonOf(t, rec.Snapshot), jsonOf(t, it.snap); g != w {
				t.Fatalf("record %d: snapshot\n got %s\nwant %s", i, g, w)
			}
		case tracefile.KindLoss:
			if rec.Loss != it.loss {
				t.Fatalf("record %d: loss %+v, want %+v", i, rec.Loss, it.loss)
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, snaplen := range []uint32{0, 96} {
		hdr := testHeader(snaplen)
		items := scenario(tracefiletest.Options{Packets: 600, Snaplen: int(snaplen), DropEvery: 9})
		data, _ := writeAll(t, hdr, items, true)
		r, recs, err := readAll(data)
		if err != nil {
			t.Fatal(err)
		}
		if r.Truncated() != nil {
			t.Errorf("complete file reads as truncated: %v", r.Truncated())
		}
		if r.Version() != tracefile.FormatVersion {
			t.Errorf("version %d", r.Version())
		}
		if g, w := jsonOf(t, r.Header()), jsonOf(t, hdr); g != w {
			t.Errorf("header\n got %s\nwant %s", g, w)
		}
		if got := r.Header().Wall(tracefiletest.StartMono); !got.Equal(tracefiletest.Start) {
			t.Errorf("Wall(StartMono) = %v, want %v", got, tracefiletest.Start)
		}
		checkItems(t, items, recs, snaplen)
		if r.Loss() != items[len(items)-1].loss && r.Loss().Hops == 0 {
			t.Errorf("Loss() = %+v", r.Loss())
		}
	}
}

// smallFile is a complete recording small enough to cut and damage at every byte.
func smallFile(t testing.TB) ([]byte, []item, []int64) {
	items := scenario(tracefiletest.Options{Packets: 4, Snaplen: 16, DropEvery: 3})
	data, ends := writeAll(t, testHeader(16), items, true)
	return data, items, ends
}

func headerLen(t testing.TB) int64 {
	data, _ := writeAll(t, testHeader(16), nil, false)
	return int64(len(data))
}

func TestCutEverywhere(t *testing.T) {
	data, items, ends := smallFile(t)
	hl := headerLen(t)
	for cut := 0; cut < len(data); cut++ {
		r, recs, err := readAll(data[:cut])
		if int64(cut) < hl {
			want := tracefile.ErrTruncated
			if cut == 0 {
				want = tracefile.ErrNotRecording
			}
			if !errors.Is(err, want) {
				t.Fatalf("cut at %d (inside the header): err %v, want %v", cut, err, want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		complete := 0
		for _, e := range ends {
			if e <= int64(cut) {
				complete++
			}
		}
		if len(recs) != complete {
			t.Fatalf("cut at %d: read %d records, want the %d complete ones", cut, len(recs), complete)
		}
		checkItems(t, items[:complete], recs, 16)
		tr := r.Truncated()
		if tr == nil {
			t.Fatalf("cut at %d: not reported as truncated", cut)
		}
		if !strings.Contains(tr.String(), "cut short") {
			t.Fatalf("cut at %d: note %q", cut, tr)
		}
	}
	if r, _, err := readAll(data); err != nil || r.Truncated() != nil {
		t.Fatalf("whole file: err %v, truncated %v", err, r.Truncated())
	}
}

// TestCorruptEveryByte damages each byte in turn: every damage must be
// reported as an error that names a byte offset, in one line, never as a
// clean read.
func TestCorruptEveryByte(t *testing.T) {
	data, _, _ := smallFile(t)
	for _, mask := range []byte{0xff, 0x01, 0x80} {
		for i := range data {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			r, _, err := readAll(bad)
			if err == nil {
				t.Errorf("byte %d ^ %#x: read without error (truncated: %v)", i, mask, r.Truncated())
				continue
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, "at byte ") {
				t.Errorf("byte %d ^ %#x: error %q is not one line naming an offset", i, mask, msg)
			}
			if !errors.Is(err, tracefile.ErrCorrupt) && !errors.Is(err, tracefile.ErrNewerVersion) && !errors.Is(err, tracefile.ErrNotRecording) {
				t.Errorf("byte %d ^ %#x: error %v wraps no sentinel", i, mask, err)
			}
		}
	}
}

func TestForeignFiles(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"empty", "", "empty"},
		{"pcap", "\xd4\xc3\xb2\xa1\x02\x00\x04\x00", "pcap file"},
		{"pcapng", "\x0a\x0d\x0d\x0a\x1c\x00\x00\x00", "pcapng file"},
		{"gzip", "\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip"},
		{"text", "hello, world\n", "not the hoptrace magic"},
		{"short", "\x89H", "ends inside the header"},
	} {
		_, err := tracefile.Open(strings.NewReader(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line mentioning %q", tc.name, err, tc.want)
		}
		if tc.name != "short" && !errors.Is(err, tracefile.ErrNotRecording) {
			t.Errorf("%s: error %v is not ErrNotRecording", tc.name, err)
		}
	}
}

func TestNewerVersion(t *testing.T) {
	data, _ := writeAll(t, testHeader(0), nil, true)
	binary.LittleEndian.PutUint16(data[8:], tracefile.FormatVersion+1)
	binary.LittleEndian.PutUint32(data[14:], crc32.Checksum(data[8:14], crc32.MakeTable(crc32.Castagnoli)))
	_, err := tracefile.Open(bytes.NewReader(data))
	if !errors.Is(err, tracefile.ErrNewerVersion) || !strings.Contains(err.Error(), "newer hoptrace") || strings.Contains(err.Error(), "damaged") {
		t.Fatalf("err %v, want ErrNewerVersion", err)
	}
	t.Log(err)
}

func TestZeroTail(t *testing.T) {
	data, _ := writeAll(t, testHeader(0), scenario(tracefiletest.Options{Packets: 3}), false)
	n := len(data)
	data = append(data, make([]byte, 10000)...)
	r, recs, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	tr := r.Truncated()
	if tr == nil || !tr.ZeroTail || tr.Offset != int64(n) || len(recs) == 0 {
		t.Fatalf("truncation %+v, %d records", tr, len(recs))
	}
	t.Log(tr)
	data[len(data)-1] = 1
	if _, _, err := readAll(data); !errors.Is(err, tracefile.ErrCorrupt) {
		t.Fatalf("zeros then data: err %v, want ErrCorrupt", err)
	}
}

func TestDataAfterEnd(t *testing.T) {
	data, _ := writeAll(t, testHeader(0), scenario(tracefiletest.Options{Packets: 2}), true)
	_, _, err := readAll(append(data, 1, 2, 3))
	if !errors.Is(err, tracefile.ErrCorrupt) || !strings.Contains(err.Error(), "after the end record") {
		t.Fatalf("err %v", err)
	}
}

// TestLyingLength: a record that claims 32 MB in a tiny file must not make
// the reader allocate 32 MB.
func TestLyingLength(t *testing.T) {
	data, _ := writeAll(t, testHeader(0), nil, false)
	hdr := []byte{byte(tracefile.KindSnapshot)}
	hdr = binary.AppendUvarint(hdr, 32<<20)
	hdr = append(hdr, crc8(hdr))
	data = append(append(data, hdr...), "{}"...)
	var before, after runtimeMem
	before.read()
	r, _, err := readAll(data)
	after.read()
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated() == nil || r.Truncated().Partial == 0 {
		t.Fatalf("truncation %+v", r.Truncated())
	}
	if d := after.total - before.total; d > 4<<20 {
		t.Fatalf("allocated %d bytes reading a %d-byte file", d, len(data))
	}
}

// failingWriter accepts limit bytes, then fails as a full disk does.
type failingWriter struct {
	buf   bytes.Buffer
	limit int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	room := f.limit - f.buf.Len()
	if len(p) > room {
		f.buf.Write(p[:room])
		return room, syscall.ENOSPC
	}
	return f.buf.Write(p)
}

func TestFullDisk(t *testing.T) {
	fw := &failingWriter{limit: 3000}
	w, err := tracefile.Create(fw, testHeader(0))
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	written := 0
	for _, ev := range tracefiletest.Events(tracefiletest.Options{Packets: 1000}) {
		if ev.Hop == nil {
			continue
		}
		if werr = w.WriteHop(ev.Hop); werr == nil {
			werr = w.Flush()
		}
		if werr != nil {
			break
		}
		written++
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("write error %v, want ENOSPC", werr)
	}
	if err := w.WriteLoss(event.Loss{}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error is not sticky: %v", err)
	}
	if err := w.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("close: %v", err)
	}
	r, recs, err := readAll(fw.buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated() == nil || len(recs) < written-1 || len(recs) > written {
		t.Fatalf("full disk: %d records back of %d written, truncation %v", len(recs), written, r.Truncated())
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	now := tracefiletest.Start
	clock := func() time.Time { return now }
	rot, err := tracefile.CreateRotating(tracefile.RotateConfig{
		Path: filepath.Join(dir, "trace.hop"), MaxBytes: 2000, MaxFiles: 3, Now: clock,
	}, testHeader(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := rot.WriteSnapshot(tracefiletest.Snapshot()); err != nil {
		t.Fatal(err)
	}
	hops := 0
	for _, ev := range tracefiletest.Events(tracefiletest.Options{Packets: 120}) {
		if err := rot.WriteHop(ev.Hop); err != nil {
			t.Fatal(err)
		}
		hops++
	}
	if err := rot.Close(); err != nil {
		t.Fatal(err)
	}
	files := rot.Files()
	if len(files) != 3 {
		t.Fatalf("files %v, want the newest 3", files)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("%d files in the directory, want 3", len(entries))
	}
	last := 0
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, recs, err := readAll(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if r.Header().Part <= last {
			t.Fatalf("%s: part %d after %d", f, r.Header().Part, last)
		}
		last = r.Header().Part
		if filepath.Base(f) != filepath.Base(tracefile.PartName(filepath.Join(dir, "trace.hop"), last)) {
			t.Fatalf("file %s is part %d", f, last)
		}
		if recs[0].Kind != tracefile.KindSnapshot {
			t.Fatalf("%s: starts with %v, want the snapshot", f, recs[0].Kind)
		}
		if r.Truncated() != nil || r.Continued() != (i < len(files)-1) {
			t.Fatalf("%s: truncated %v, continued %v", f, r.Truncated(), r.Continued())
		}
	}

	// By time: a new part once the clock passes MaxAge.
	rot, err = tracefile.CreateRotating(tracefile.RotateConfig{Path: filepath.Join(dir, "t2.hop"), MaxAge: time.Minute, Now: clock}, testHeader(0))
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range tracefiletest.Events(tracefiletest.Options{Packets: 10}) {
		now = now.Add(25 * time.Second)
		if err := rot.WriteHop(ev.Hop); err != nil {
			t.Fatal(err, i)
		}
	}
	rot.Close()
	if n := len(rot.Files()); n < 10 || n > 15 {
		t.Fatalf("%d parts for 40 hops 25s apart with -G 1m", n)
	}
}
