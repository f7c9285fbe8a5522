package tracefile

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"syscall"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// Sink is what a capture loop writes to: a Writer, or a Rotator that spreads
// a long capture over several files.
type Sink interface {
	WriteHop(*event.Hop) error
	WriteDrop(*event.Drop) error
	WriteSnapshot(*topology.Snapshot) error
	WriteLoss(event.Loss) error
	Flush() error
	Close() error
}

var (
	_ Sink = (*Writer)(nil)
	_ Sink = (*Rotator)(nil)
)

// Writer writes one recording. It is not safe for concurrent use: the
// capture loop owns it.
//
// Records are buffered; Flush hands them to the underlying writer, so a
// capture loop should Flush about once a second: what was flushed survives
// a SIGKILL. After the first error every method returns that error, so a
// full disk stops the capture cleanly instead of writing a hole.
type Writer struct {
	bw      *bufio.Writer
	file    *os.File // set by CreateFile: synced and closed by Close
	hdr     Header
	st      state
	fpIndex *fpIndex
	nameIDs map[string]uint64
	e       enc
	hb      [binary.MaxVarintLen64 + 1]byte
	size    int64
	records uint64
	hops    uint64
	err     error
	closed  bool
}

// writeBuffer is how many bytes of records are held before a write: a busy
// recording (~3 MB/s) then makes a few system calls a second instead of
// dozens, each of which can wake another thread of the Go runtime on a CPU
// the traced traffic uses. Flush still hands everything over once a second.
const writeBuffer = 1 << 20

// Create writes the header of a new recording to w and returns a Writer for
// its records. The header is flushed at once, so even a capture killed
// before its first packet leaves a readable file.
func Create(w io.Writer, hdr Header) (*Writer, error) {
	if hdr.Snaplen > MaxSnaplen {
		return nil, fmt.Errorf("create recording: snaplen %d is more than the %d supported", hdr.Snaplen, MaxSnaplen)
	}
	js, err := hdr.marshal()
	if err != nil {
		return nil, fmt.Errorf("create recording: %w", err)
	}
	return create(w, hdr, js)
}

// create writes a header with the JSON js (hdr marshalled) and returns the
// Writer for the records.
func create(w io.Writer, hdr Header, js []byte) (*Writer, error) {
	wr := &Writer{
		bw:      bufio.NewWriterSize(w, writeBuffer),
		hdr:     hdr,
		fpIndex: new(fpIndex),
		nameIDs: make(map[string]uint64),
	}
	// magic | version u16 | JSON length u32 | CRC32C(version, length) u32 |
	// JSON | CRC32C(JSON) u32. The first checksum tells a damaged length
	// from a file cut short inside the header.
	b := make([]byte, 0, headerFixed+len(js)+4)
	b = append(b, magic[:]...)
	b = binary.LittleEndian.AppendUint16(b, FormatVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(js)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[len(magic):], castagnoli))
	b = append(b, js...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(js, castagnoli))
	if err := wr.write(b); err != nil {
		return nil, err
	}
	if err := wr.Flush(); err != nil {
		return nil, err
	}
	return wr, nil
}

// CreateFile creates (or truncates) the file at path and writes a recording
// to it; Close syncs and closes the file.
func CreateFile(path string, hdr Header) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create recording: %w", err)
	}
	w, err := Create(f, hdr)
	if err != nil {
		f.Close()
		return nil, err
	}
	w.file = f
	return w, nil
}

// Header returns the header the recording was created with.
func (w *Writer) Header() Header { return w.hdr }

// Size is the number of bytes written so far, buffered ones included.
func (w *Writer) Size() int64 { return w.size }

// Records is the number of records written so far.
func (w *Writer) Records() uint64 { return w.records }

// Hops is the number of hops written so far.
func (w *Writer) Hops() uint64 { return w.hops }

func (w *Writer) write(b []byte) error {
	if w.err != nil {
		return w.err
	}
	n, err := w.bw.Write(b)
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write recording: %w", err)
	}
	return w.err
}

func (w *Writer) check() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// frame writes the record being built in w.e.b (after the reserved frame
// header room) as a record of kind k.
//
// Frame: kind u8 | payload length uvarint | header check u8 | payload | CRC32C u32.
// The header check (low byte of CRC32C of kind and length) tells a corrupted
// length from a file cut short; the CRC covers everything before it.
func (w *Writer) frame(k Kind) error {
	const room = 1 + binary.MaxVarintLen64 + 1
	payload := w.e.b[room:]
	// The frame header goes right before the payload, in the reserved room.
	n := 1 + binary.PutUvarint(w.hb[1:], uint64(len(payload)))
	start := room - n - 1
	w.hb[0] = byte(k)
	copy(w.e.b[start:], w.hb[:n])
	w.e.b[room-1] = byte(crc32.Checksum(w.e.b[start:start+n], castagnoli))
	w.e.b = binary.LittleEndian.AppendUint32(w.e.b, crc32.Checksum(w.e.b[start:], castagnoli))
	if err := w.write(w.e.b[start:]); err != nil {
		return err
	}
	w.records++
	return nil
}

func (w *Writer) begin() {
	const room = 1 + binary.MaxVarintLen64 + 1
	if cap(w.e.b) < 512 {
		w.e.b = make([]byte, 0, 512)
	}
	w.e.b = w.e.b[:room]
}

// WriteHop appends a hop. Packet bytes beyond the header's Snaplen are cut off.
func (w *Writer) WriteHop(h *event.Hop) error {
	if err := w.check(); err != nil {
		return err
	}
	if h.Dir > hopDirMask {
		return fmt.Errorf("write hop: invalid direction %d", h.Dir)
	}
	w.begin()
	w.st.encodeHop(&w.e, h, w.fpIndex, w.hdr.Snaplen)
	w.hops++
	return w.frame(KindHop)
}

// WriteDrop appends a drop.
func (w *Writer) WriteDrop(d *event.Drop) error {
	if err := w.check(); err != nil {
		return err
	}
	w.begin()
	w.st.encodeDrop(&w.e, d, w.fpIndex, w.nameIDs)
	return w.frame(KindDrop)
}

// WriteSnapshot appends the resolver's view of the host. Readers name the
// records that follow from the latest snapshot before them, so write one
// before the first hop and again whenever the topology changes.
func (w *Writer) WriteSnapshot(s *topology.Snapshot) error {
	if err := w.check(); err != nil {
		return err
	}
	js, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	if len(js) > maxSnapshot {
		return fmt.Errorf("write snapshot: %d bytes, more than the %d allowed", len(js), maxSnapshot)
	}
	w.begin()
	w.e.b = append(w.e.b, js...)
	return w.frame(KindSnapshot)
}

// WriteLoss appends loss counters: the totals since the capture started, so
// the last loss record of a file has the final figures.
func (w *Writer) WriteLoss(l event.Loss) error {
	if err := w.check(); err != nil {
		return err
	}
	w.begin()
	w.e.uvarint(l.Hops)
	w.e.uvarint(l.Drops)
	if err := w.frame(KindLoss); err != nil || l.Evicted == 0 {
		return err
	}
	w.begin()
	w.e.uvarint(l.Evicted)
	return w.frame(kindEvicted)
}

// endContinued marks an end record whose recording goes on in the next file.
const endContinued = 1

func (w *Writer) writeEnd(flags uint64) error {
	w.begin()
	w.e.uvarint(w.records)
	w.e.uvarint(flags)
	return w.frame(KindEnd)
}

// Flush writes buffered records to the underlying writer.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("write recording: %w", err)
	}
	return w.err
}

// Close writes the end record, which tells readers the recording is complete,
// and flushes. For CreateFile it also syncs and closes the file.
func (w *Writer) Close() error {
	return w.close(0)
}

func (w *Writer) close(flags uint64) error {
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	err := w.err
	if err == nil {
		if err = w.writeEnd(flags); err == nil {
			err = w.Flush()
		}
	}
	if w.file != nil {
		if err == nil {
			// EINVAL: a file that cannot be synced (/dev/null, a FIFO);
			// there is nothing to make durable.
			if serr := w.file.Sync(); serr != nil && !errors.Is(serr, syscall.EINVAL) {
				err = fmt.Errorf("sync recording: %w", serr)
			}
		}
		if cerr := w.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close recording: %w", cerr)
		}
	}
	return err
}
