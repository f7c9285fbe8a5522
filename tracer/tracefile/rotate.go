package tracefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// RotateConfig says when a long capture moves on to a new file, in the spirit
// of tcpdump's -C, -G and -W.
type RotateConfig struct {
	// Path is the recording's name, e.g. "trace.hop"; the parts are named
	// by PartName ("trace.0001.hop", "trace.0002.hop", ...).
	Path string
	// MaxBytes starts a new file once the current one holds this many bytes
	// (tcpdump -C); 0 means no size limit.
	MaxBytes int64
	// MaxAge starts a new file once the current one is this old
	// (tcpdump -G); 0 means no time limit.
	MaxAge time.Duration
	// MaxFiles keeps only the newest MaxFiles parts, removing older ones
	// (tcpdump -W); 0 keeps all.
	MaxFiles int
	// Now is the clock used for MaxAge; nil means time.Now.
	Now func() time.Time
}

// PartName is the name of part n (1, 2, ...) of a rotated recording: the
// number goes before the extension, zero-padded so names sort in order.
func PartName(path string, n int) string {
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s.%04d%s", strings.TrimSuffix(path, ext), n, ext)
}

// Rotator writes a recording as a series of files. Each part is a complete
// recording on its own: it starts with a header (Part set) and a copy of the
// latest snapshot and loss counters, and ends with an end record marked as
// continued, so any part can be replayed alone and all of them in order.
type Rotator struct {
	cfg      RotateConfig
	hdr      Header
	w        *Writer
	part     int
	opened   time.Time
	snapshot *topology.Snapshot
	loss     event.Loss
	haveLoss bool
	files    []string
}

// CreateRotating creates the first part of a rotated recording.
func CreateRotating(cfg RotateConfig, hdr Header) (*Rotator, error) {
	if cfg.MaxBytes < 0 || cfg.MaxAge < 0 || cfg.MaxFiles < 0 {
		return nil, errors.New("create recording: negative rotation limit")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Rotator{cfg: cfg, hdr: hdr}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// Files returns the parts written so far that were not removed by MaxFiles.
func (r *Rotator) Files() []string { return append([]string(nil), r.files...) }

func (r *Rotator) open() error {
	r.part++
	hdr := r.hdr
	hdr.Part = r.part
	now := r.cfg.Now()
	if r.part > 1 {
		// Hops keep their monotonic times; Start says when this part began.
		hdr.Start = now
	}
	name := PartName(r.cfg.Path, r.part)
	w, err := CreateFile(name, hdr)
	if err != nil {
		return err
	}
	r.w, r.opened = w, now
	r.files = append(r.files, name)
	if r.cfg.MaxFiles > 0 && len(r.files) > r.cfg.MaxFiles {
		old := r.files[0]
		r.files = r.files[1:]
		if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old recording part: %w", err)
		}
	}
	if r.snapshot != nil {
		if err := w.WriteSnapshot(r.snapshot); err != nil {
			return err
		}
	}
	if r.haveLoss {
		return w.WriteLoss(r.loss)
	}
	return nil
}

// rotate moves to the next part when a limit is reached. It runs before a
// hop or drop is written, so a part never ends with only a snapshot.
func (r *Rotator) rotate() error {
	full := r.cfg.MaxBytes > 0 && r.w.Size() >= r.cfg.MaxBytes
	old := r.cfg.MaxAge > 0 && r.cfg.Now().Sub(r.opened) >= r.cfg.MaxAge
	if !full && !old {
		return nil
	}
	if err := r.w.close(endContinued); err != nil {
		return err
	}
	return r.open()
}

// WriteHop implements Sink.
func (r *Rotator) WriteHop(h *event.Hop) error {
	if err := r.rotate(); err != nil {
		return err
	}
	return r.w.WriteHop(h)
}

// WriteDrop implements Sink.
func (r *Rotator) WriteDrop(d *event.Drop) error {
	if err := r.rotate(); err != nil {
		return err
	}
	return r.w.WriteDrop(d)
}

// WriteSnapshot implements Sink; the snapshot is also kept to start the next part.
func (r *Rotator) WriteSnapshot(s *topology.Snapshot) error {
	r.snapshot = s
	return r.w.WriteSnapshot(s)
}

// WriteLoss implements Sink; the counters are also kept to start the next part.
func (r *Rotator) WriteLoss(l event.Loss) error {
	r.loss, r.haveLoss = l, true
	return r.w.WriteLoss(l)
}

// Flush implements Sink.
func (r *Rotator) Flush() error { return r.w.Flush() }

// Close implements Sink: it closes the current part.
func (r *Rotator) Close() error { return r.w.Close() }
