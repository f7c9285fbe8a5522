package tracefile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// Record is one record read back. Kind says which field is set.
type Record struct {
	Kind Kind
	// Offset is the byte offset of the record in the file.
	Offset int64

	Hop      *event.Hop         // KindHop
	Drop     *event.Drop        // KindDrop
	Snapshot *topology.Snapshot // KindSnapshot
	Loss     event.Loss         // KindLoss: totals since the capture started
}

// Reader reads a recording record by record. It is not safe for concurrent use.
type Reader struct {
	br      *bufio.Reader
	off     int64
	hdr     Header
	version int
	st      state
	buf     []byte
	hb      [1 + binary.MaxVarintLen64 + 1]byte
	sb      [4]byte

	records   uint64
	loss      event.Loss
	ended     bool
	continued bool
	trunc     *Truncation
	err       error // sticky: io.EOF or the error that stopped reading
}

// Open reads and checks the header of a recording. The Reader never
// allocates much more than the bytes it has actually read, whatever the
// lengths and element counts in the file say, so untrusted files are safe
// to open.
func Open(r io.Reader) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10)}
	if err := rd.readHeader(); err != nil {
		return nil, err
	}
	return rd, nil
}

// Header returns the recording's header.
func (r *Reader) Header() Header { return r.hdr }

// Version is the format version the file was written in.
func (r *Reader) Version() int { return r.version }

// Offset is the number of bytes read so far.
func (r *Reader) Offset() int64 { return r.off }

// Loss returns the latest loss counters read (totals since the capture started).
func (r *Reader) Loss() event.Loss { return r.loss }

// Truncated, after Next returned io.EOF, describes how the file was cut
// short, or is nil when it ended with its end record.
func (r *Reader) Truncated() *Truncation { return r.trunc }

// Continued, after Next returned io.EOF, reports whether the recording goes
// on in the next file of a rotation.
func (r *Reader) Continued() bool { return r.continued }

func (r *Reader) formatErr(off int64, sentinel error, format string, args ...any) error {
	return &FormatError{Offset: off, Msg: fmt.Sprintf(format, args...), Err: sentinel}
}

// readFull reads exactly len(p) bytes; it returns io.EOF when none were
// there and io.ErrUnexpectedEOF when some were.
func (r *Reader) readFull(p []byte) error {
	n, err := io.ReadFull(r.br, p)
	r.off += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("read recording at byte %d: %w", r.off, err)
	}
	return err
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// foreign names some kinds of files that are not recordings.
func foreign(b []byte) string {
	switch {
	case len(b) >= 4 && (bytes.Equal(b[:4], []byte{0xd4, 0xc3, 0xb2, 0xa1}) || bytes.Equal(b[:4], []byte{0xa1, 0xb2, 0xc3, 0xd4}) ||
		bytes.Equal(b[:4], []byte{0x4d, 0x3c, 0xb2, 0xa1}) || bytes.Equal(b[:4], []byte{0xa1, 0xb2, 0x3c, 0x4d})):
		return "this is a pcap file, not a hoptrace recording"
	case len(b) >= 4 && bytes.Equal(b[:4], []byte{0x0a, 0x0d, 0x0d, 0x0a}):
		return "this is a pcapng file, not a hoptrace recording"
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return "this is gzip-compressed: decompress it first (gunzip)"
	case len(b) >= 4 && bytes.Equal(b[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "this is zstd-compressed: decompress it first (zstd -d)"
	}
	return fmt.Sprintf("it starts with % x, not the hoptrace magic % x", b, magic[:len(b)])
}

func (r *Reader) readHeader() error {
	var m [8]byte
	n, err := io.ReadFull(r.br, m[:])
	r.off += int64(n)
	switch {
	case n == 0 && isEOF(err):
		return r.formatErr(0, ErrNotRecording, "the file is empty")
	case err != nil && !isEOF(err):
		return fmt.Errorf("read recording header: %w", err)
	case !bytes.Equal(m[:n], magic[:n]):
		return r.formatErr(0, ErrNotRecording, "%s", foreign(m[:n]))
	case n < len(m):
		return r.formatErr(r.off, ErrTruncated, "the file ends inside the header, so it holds nothing")
	}
	var vl [10]byte
	if err := r.readFull(vl[:]); err != nil {
		return r.headerErr(err)
	}
	// The version is checked before the checksum: a newer format may have
	// changed everything after it.
	r.version = int(binary.LittleEndian.Uint16(vl[:2]))
	sumOK := crc32.Checksum(vl[:6], castagnoli) == binary.LittleEndian.Uint32(vl[6:])
	if r.version > FormatVersion {
		maybe := ""
		if !sumOK {
			maybe = " (or a damaged header)"
		}
		return r.formatErr(8, ErrNewerVersion, "format version %d%s; this hoptrace reads up to version %d: use a newer hoptrace", r.version, maybe, FormatVersion)
	}
	if !sumOK {
		return r.formatErr(8, ErrCorrupt, "header checksum mismatch (version or length damaged)")
	}
	if r.version == 0 {
		return r.formatErr(8, ErrCorrupt, "format version 0")
	}
	jl := binary.LittleEndian.Uint32(vl[2:6])
	if jl > maxHeaderJSON {
		return r.formatErr(10, ErrCorrupt, "header length %d is more than the %d allowed", jl, maxHeaderJSON)
	}
	js := make([]byte, jl+4)
	if err := r.readFull(js); err != nil {
		return r.headerErr(err)
	}
	if crc32.Checksum(js[:jl], castagnoli) != binary.LittleEndian.Uint32(js[jl:]) {
		return r.formatErr(headerFixed, ErrCorrupt, "header checksum mismatch")
	}
	if err := decodeJSON(js[:jl], &r.hdr, headerJSON); err != nil {
		return r.formatErr(headerFixed, ErrCorrupt, "header: %v", err)
	}
	if r.hdr.Snaplen > MaxSnaplen {
		return r.formatErr(headerFixed, ErrCorrupt, "snaplen %d is more than the %d supported", r.hdr.Snaplen, MaxSnaplen)
	}
	return nil
}

func (r *Reader) headerErr(err error) error {
	if isEOF(err) {
		return r.formatErr(r.off, ErrTruncated, "the file ends inside the header, so it holds nothing")
	}
	return err
}

// readPayload reads n bytes into r.buf, growing it only as bytes arrive so a
// lying length cannot make it allocate more than the file holds.
func (r *Reader) readPayload(n int) error {
	const chunk = 64 << 10
	if cap(r.buf) > 1<<20 {
		r.buf = nil // do not keep one huge snapshot's buffer for every hop
	}
	buf := r.buf[:0]
	for len(buf) < n {
		c := min(n-len(buf), chunk)
		if cap(buf)-len(buf) < c {
			nb := make([]byte, len(buf), min(n, max(2*cap(buf), len(buf)+c)))
			copy(nb, buf)
			buf = nb
		}
		err := r.readFull(buf[len(buf) : len(buf)+c])
		buf = buf[:len(buf)+c]
		if err != nil {
			r.buf = buf
			return err
		}
	}
	r.buf = buf
	return nil
}

// Next returns the next record. At the end it returns io.EOF; Truncated then
// says whether the file was cut short. Any other error is final and names
// the byte offset of the problem.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	for {
		rec, err := r.next()
		if err != nil {
			r.err = err
			return Record{}, err
		}
		if rec.Kind&kindOptional != 0 {
			continue // an optional kind this version does not know
		}
		return rec, nil
	}
}

func (r *Reader) next() (Record, error) {
	start := r.off
	hb := &r.hb
	kb, err := r.br.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			if r.ended {
				return Record{}, io.EOF
			}
			r.trunc = &Truncation{Offset: start}
			return Record{}, io.EOF
		}
		return Record{}, fmt.Errorf("read recording at byte %d: %w", start, err)
	}
	r.off++
	if r.ended {
		return Record{}, r.formatErr(start, ErrCorrupt, "data after the end record")
	}
	if kb == 0 {
		return r.zeroTail(start)
	}
	hb[0] = kb
	// Length: a uvarint, read byte by byte.
	n := 1
	var length uint64
	for shift := uint(0); ; shift += 7 {
		b, err := r.br.ReadByte()
		if err != nil {
			return r.cut(start, err)
		}
		r.off++
		if n == len(hb)-1 {
			return Record{}, r.formatErr(start, ErrCorrupt, "record length does not end")
		}
		hb[n] = b
		n++
		length |= uint64(b&0x7f) << shift
		if b < 0x80 {
			break
		}
	}
	check, err := r.br.ReadByte()
	if err != nil {
		return r.cut(start, err)
	}
	r.off++
	if check != byte(crc32.Checksum(hb[:n], castagnoli)) {
		return Record{}, r.formatErr(start, ErrCorrupt, "record header check failed (kind or length damaged)")
	}
	hb[n] = check
	n++
	k := Kind(kb)
	limit := maxLen(k, r.hdr.Snaplen)
	if limit < 0 {
		return Record{}, r.formatErr(start, ErrCorrupt, "unknown record kind %d", kb)
	}
	if length > uint64(limit) {
		return Record{}, r.formatErr(start, ErrCorrupt, "%s record of %d bytes; at most %d allowed", k, length, limit)
	}
	if err := r.readPayload(int(length)); err != nil {
		return r.cut(start, err)
	}
	sb := r.sb[:]
	if err := r.readFull(sb); err != nil {
		return r.cut(start, err)
	}
	sum := crc32.Update(crc32.Checksum(hb[:n], castagnoli), castagnoli, r.buf)
	if sum != binary.LittleEndian.Uint32(sb) {
		return Record{}, r.formatErr(start, ErrCorrupt, "%s record checksum mismatch", k)
	}
	rec := Record{Kind: k, Offset: start}
	switch k {
	case KindHop:
		rec.Hop, err = r.st.decodeHop(r.buf, r.hdr.Snaplen)
	case KindDrop:
		rec.Drop, err = r.st.decodeDrop(r.buf)
	case KindSnapshot:
		rec.Snapshot = new(topology.Snapshot)
		err = decodeJSON(r.buf, rec.Snapshot, snapshotJSON)
	case KindLoss:
		d := dec{b: r.buf}
		rec.Loss = event.Loss{Hops: d.uvarint(), Drops: d.uvarint(), Evicted: r.loss.Evicted}
		d.end()
		err = d.err
		r.loss = rec.Loss
	case kindEvicted:
		d := dec{b: r.buf}
		r.loss.Evicted = d.uvarint()
		d.end()
		err = d.err
		rec.Kind, rec.Loss = KindLoss, r.loss
	case KindEnd:
		d := dec{b: r.buf}
		count, flags := d.uvarint(), d.uvarint()
		d.end()
		switch {
		case d.err != nil:
			err = d.err
		case count != r.records:
			err = fmt.Errorf("end record counts %d records, the file has %d", count, r.records)
		default:
			r.ended = true
			r.continued = flags&endContinued != 0
			return r.next() // must be the end of the file
		}
	}
	if err != nil {
		return Record{}, r.formatErr(start, ErrCorrupt, "%s record: %v", k, err)
	}
	r.records++
	return rec, nil
}

// cut handles the end of the file inside a record: the file was cut short.
func (r *Reader) cut(start int64, err error) (Record, error) {
	if !isEOF(err) {
		return Record{}, err
	}
	r.trunc = &Truncation{Offset: start, Partial: r.off - start}
	return Record{}, io.EOF
}

// zeroTail handles a zero kind byte: a tail of zeros is what a file system
// leaves after a power loss (size extended, data never written); anything
// else is corruption.
func (r *Reader) zeroTail(start int64) (Record, error) {
	var p [4096]byte
	for {
		n, err := r.br.Read(p[:])
		for i, b := range p[:n] {
			if b != 0 {
				return Record{}, r.formatErr(start, ErrCorrupt, "record kind 0 (zero bytes followed by data at byte %d)", r.off+int64(i))
			}
		}
		r.off += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Record{}, fmt.Errorf("read recording at byte %d: %w", r.off, err)
		}
	}
	r.trunc = &Truncation{Offset: start, Partial: r.off - start, ZeroTail: true}
	return Record{}, io.EOF
}
