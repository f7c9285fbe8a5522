package capture

import (
	"errors"
	"fmt"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/metrics"
)

// ErrClosed: the session was closed.
var ErrClosed = errors.New("capture closed")

// Metrics reads what the kernel aggregated (a session opened with
// Config.Tracer.Aggregate, as `hoptrace serve` does) with the topology that
// names it now. Safe to call while Run runs.
func (s *Session) Metrics() (*metrics.State, error) {
	s.amu.Lock()
	defer s.amu.Unlock()
	if s.tr == nil {
		return nil, ErrClosed
	}
	agg, err := s.tr.Aggregates()
	if err != nil {
		return nil, fmt.Errorf("read aggregates: %w", err)
	}
	lost, err := s.tr.AggregateLoss()
	if err != nil {
		return nil, fmt.Errorf("read loss counters: %w", err)
	}
	return &metrics.State{Agg: agg, Lost: lost, Snapshot: s.res.Snapshot(), HooksAttached: len(s.attached)}, nil
}

// Discard is a Handler that ignores everything: for Run on a session that
// aggregates in the kernel, where Run only keeps the hooks in step with the
// containers.
type Discard struct{}

func (Discard) Hop(*event.Hop)              {}
func (Discard) Drop(*event.Drop)            {}
func (Discard) Topology(*topology.Snapshot) {}
func (Discard) Loss(event.Loss)             {}
func (Discard) Tick(uint64)                 {}
