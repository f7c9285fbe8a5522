// Package tracefile is hoptrace's recording format: a versioned header, then a
// stream of length-prefixed, checksummed records (hops, drops, resolver
// snapshots, loss counters), closed by an end record.
//
// The format is built for capture on a troubled host and analysis elsewhere:
//   - streaming and crash-safe: every record is complete on its own, so a file
//     cut off anywhere (SIGKILL, full disk, power loss) reads back up to its
//     last complete record, and the Reader says that it was cut short;
//   - compact: hops are delta-coded against the previous hop of the same packet
//     (or the previous hop), so a hop without packet bytes costs a few tens of bytes;
//   - safe to read when untrusted: lengths are bounded per record kind, buffers
//     grow only as bytes actually arrive, JSON is sized before it is decoded,
//     and every failure is a one-line error naming the byte offset.
//
// docs/recording-format.md describes the layout byte by byte.
package tracefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// FormatVersion is the version of the format this package writes. Readers
// accept this version and older ones, and reject newer ones with ErrNewerVersion.
// Version 2 codes a hop's packet bytes as its reference hop's when they are
// the same (a packet's hops across a bridge); version 1 never did, so a
// version 1 file reads as it always did.
const FormatVersion = 2

// magic opens every recording. The high byte and the CR/LF/^Z sequence (as in
// PNG) catch text-mode transfers that mangle line endings.
var magic = [8]byte{0x89, 'H', 'O', 'P', '\r', '\n', 0x1a, '\n'}

// headerFixed is the size of the header before its JSON: magic, version,
// JSON length, and the checksum of version and length.
const headerFixed = 8 + 2 + 4 + 4

// Limits that bound what a reader allocates for one record.
const (
	// MaxSnaplen is the largest snaplen a recording may declare.
	MaxSnaplen = 256 << 10
	// maxHeaderJSON bounds the header's JSON part.
	maxHeaderJSON = 64 << 10
	// maxSnapshot bounds one topology snapshot (JSON); thousands of
	// containers take a few MB.
	maxSnapshot = 32 << 20
	// maxSmall bounds drops, loss and end records.
	maxSmall = 1 << 10
	// maxSkippable bounds records of unknown optional kinds.
	maxSkippable = 1 << 20
	// hopOverhead is what a hop may take beside its packet bytes.
	hopOverhead = 512
	// maxReasonName bounds a drop reason's name.
	maxReasonName = 128
)

// Kind is the type of a record.
type Kind uint8

// Record kinds. Kinds from 0x80 up are optional: a reader that does not know
// one skips it, so later versions can add information old readers ignore.
const (
	KindHop      Kind = 1
	KindDrop     Kind = 2
	KindSnapshot Kind = 3
	KindLoss     Kind = 4
	KindEnd      Kind = 5

	kindOptional Kind = 0x80
	// kindEvicted (optional): uvarint packets evicted from the kernel's
	// packet table in flight, a total since the start; it follows a loss
	// record when the count is not zero. The reader folds it into the
	// loss it returns; readers from before it skip it.
	kindEvicted Kind = 0x81
)

func (k Kind) String() string {
	switch k {
	case KindHop:
		return "hop"
	case KindDrop:
		return "drop"
	case KindSnapshot:
		return "snapshot"
	case KindLoss:
		return "loss"
	case KindEnd:
		return "end"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// maxLen is the largest payload a record of kind k may have.
func maxLen(k Kind, snaplen uint32) int {
	switch k {
	case KindHop:
		return hopOverhead + int(snaplen)
	case KindDrop, KindLoss, KindEnd:
		return maxSmall
	case KindSnapshot:
		return maxSnapshot
	}
	if k&kindOptional != 0 {
		return maxSkippable
	}
	return -1
}

// Header describes a recording. It is stored as JSON, so fields can be added
// without a format version change; readers ignore fields they do not know.
type Header struct {
	// HoptraceVersion is the version of the hoptrace that wrote the file.
	HoptraceVersion string `json:"hoptrace_version"`
	// Kernel is the recording host's kernel release (uname -r).
	Kernel string `json:"kernel,omitempty"`
	// Hostname is the recording host's name.
	Hostname string `json:"hostname,omitempty"`
	// Start is the wall-clock time the recording started.
	Start time.Time `json:"start"`
	// MonoOffsetNS converts the kernel monotonic clock of hops and drops to
	// wall time: wall = mono + MonoOffsetNS (see Wall).
	MonoOffsetNS int64 `json:"mono_offset_ns"`
	// Snaplen is the most packet bytes kept per hop (0: headers only).
	Snaplen uint32 `json:"snaplen"`
	// Filter is the packet filter expression the capture used, if any.
	Filter string `json:"filter,omitempty"`
	// Containers and Interfaces are the capture's selection, if any.
	Containers []string `json:"containers,omitempty"`
	Interfaces []string `json:"interfaces,omitempty"`
	// Features names what the capturing kernel and tracer could do
	// (for example "tcx", "skb-key", "drop-reasons").
	Features []string `json:"features,omitempty"`
	// Part is the sequence number of this file in a rotated recording
	// (1, 2, ...), or 0 when the recording is not rotated.
	Part int `json:"part,omitempty"`
}

// Wall converts a kernel monotonic timestamp to wall-clock time.
func (h Header) Wall(monoNS uint64) time.Time {
	return event.Clock{OffsetNS: h.MonoOffsetNS}.Wall(monoNS)
}

func (h *Header) marshal() ([]byte, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode header: %w", err)
	}
	if len(b) > maxHeaderJSON {
		return nil, fmt.Errorf("encode header: %d bytes, more than the %d allowed", len(b), maxHeaderJSON)
	}
	return b, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors; reader errors wrap one of them (test with errors.Is).
var (
	// ErrNotRecording: the input is not a hoptrace recording (empty, or
	// another kind of file).
	ErrNotRecording = errors.New("not a hoptrace recording")
	// ErrNewerVersion: the file was written in a format version newer than
	// this package reads.
	ErrNewerVersion = errors.New("recording format is newer than this hoptrace")
	// ErrCorrupt: the file has bytes that cannot have been written by a
	// hoptrace writer (bad checksum, impossible length, invalid field).
	ErrCorrupt = errors.New("corrupt recording")
	// ErrTruncated: the file ends inside its header, so it holds nothing.
	// A file cut off after its header is not an error: see Reader.Truncated.
	ErrTruncated = errors.New("recording cut short")
	// ErrClosed: the writer was closed.
	ErrClosed = errors.New("recording closed")
)

// FormatError is a problem found at a byte offset of a recording.
type FormatError struct {
	Offset int64  // byte offset in the file where the problem is
	Msg    string // what is wrong
	Err    error  // sentinel: ErrNotRecording, ErrNewerVersion, ErrCorrupt or ErrTruncated
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%v at byte %d: %s", e.Err, e.Offset, e.Msg)
}

func (e *FormatError) Unwrap() error { return e.Err }

// Truncation describes a recording that ends without its end record: the
// writer was killed, the disk filled up, or the power went out. Everything
// before Offset was read.
type Truncation struct {
	// Offset is where the last complete record ends.
	Offset int64
	// Partial is how many bytes of an incomplete record follow Offset.
	Partial int64
	// ZeroTail is true when those bytes are all zero, as a file system
	// leaves them after a power loss.
	ZeroTail bool
}

func (t *Truncation) String() string {
	switch {
	case t.ZeroTail:
		return fmt.Sprintf("recording was cut short at byte %d (followed by %d zero bytes, as after a power loss); read up to its last complete record", t.Offset, t.Partial)
	case t.Partial > 0:
		return fmt.Sprintf("recording was cut short at byte %d, inside a record (%d bytes of it present); read up to its last complete record", t.Offset, t.Partial)
	}
	return fmt.Sprintf("recording was cut short at byte %d: it has no end record (hoptrace was killed or the disk filled up); read up to its last complete record", t.Offset)
}
