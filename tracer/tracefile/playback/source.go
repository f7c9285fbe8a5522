package playback

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

// Source is one or more recordings read back in order as one capture: a
// pipeline.Source, so replay, latency and export run the pipeline live
// tracing runs. Journeys open at the end of a part continue in the next
// (rotated recordings).
type Source struct {
	paths []string
	open  func(path string) (io.ReadCloser, error)
	// Note, if set, gets one line per recording cut short.
	Note func(path, note string)

	first       *tracefile.Reader // the first recording, opened by NewSource
	firstCloser io.Closer
	header      tracefile.Header
	namer       Namer
}

// NewSource opens the first of paths (to read its header: the clock
// offset every part's times convert with) with open; the others are
// opened in turn by Run. Errors name the file.
func NewSource(paths []string, open func(path string) (io.ReadCloser, error)) (*Source, error) {
	if len(paths) == 0 {
		return nil, errors.New("no recording given")
	}
	s := &Source{paths: paths, open: open}
	r, c, err := s.openReader(paths[0])
	if err != nil {
		return nil, err
	}
	s.first, s.firstCloser, s.header = r, c, r.Header()
	return s, nil
}

// Header is the first recording's header.
func (s *Source) Header() tracefile.Header { return s.header }

// Names implements pipeline.Source: the recording's snapshots, the latest
// one read before each hop.
func (s *Source) Names() journey.Names { return &s.namer }

// Close closes a first recording that Run did not get to read.
func (s *Source) Close() error {
	if s.firstCloser == nil {
		return nil
	}
	c := s.firstCloser
	s.firstCloser = nil
	return c.Close()
}

func (s *Source) openReader(path string) (*tracefile.Reader, io.Closer, error) {
	f, err := s.open(path)
	if err != nil {
		return nil, nil, err
	}
	r, err := tracefile.Open(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, f, nil
}

// Run implements pipeline.Source.
func (s *Source) Run(ctx context.Context, in pipeline.Input) error {
	defer s.Close()
	for i, path := range s.paths {
		r, c := s.first, s.firstCloser
		if i > 0 {
			var err error
			if r, c, err = s.openReader(path); err != nil {
				return err
			}
		} else {
			s.firstCloser = nil
		}
		err := s.play(ctx, r, in)
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if t := r.Truncated(); t != nil && s.Note != nil {
			s.Note(path, t.String())
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

// play feeds one recording's records; errors name the byte offset.
func (s *Source) play(ctx context.Context, r *tracefile.Reader, in pipeline.Input) error {
	for {
		if ctx.Err() != nil {
			return nil
		}
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch rec.Kind {
		case tracefile.KindSnapshot:
			s.namer.Set(rec.Snapshot)
			in.Topology(rec.Snapshot)
		case tracefile.KindLoss:
			in.Loss(rec.Loss)
		case tracefile.KindHop:
			in.Hop(rec.Hop)
		case tracefile.KindDrop:
			in.Drop(rec.Drop)
		}
	}
}
