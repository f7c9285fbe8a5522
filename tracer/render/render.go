// Package render prints journeys and the end-of-run summary, as readable
// text or as JSON lines (schema in docs/journey-json.md). Live tracing and
// replay use the same printers, so their output is the same.
package render

import (
	"strconv"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// Options shape the output. The caller decides colour (terminal, NO_COLOR,
// --no-color) and the clock offset; printers never look at the environment.
type Options struct {
	// Color adds ANSI colours to text output.
	Color bool
	// Verbose prints each hop of a journey on its own line, with its time,
	// delta, direction and what it means for the packet.
	Verbose bool
	// WallOffsetNS converts kernel monotonic time to wall time:
	// wall_ns = mono_ns + WallOffsetNS.
	WallOffsetNS int64
	// Location for wall times; nil means time.Local.
	Location *time.Location
}

// Printer writes journeys as they finish and a summary at the end.
type Printer interface {
	Journey(j *journey.Journey) error
	Summary(s Summary) error
}

// Summary is what a run saw, printed at exit.
type Summary struct {
	Stats journey.Stats
	// Loss is what the kernel could not deliver (ring buffer full).
	Loss event.Loss
	// Duration of the run, 0 when unknown (replay).
	Duration time.Duration
	// Names counts journeys held for their names (journey.NameWait).
	Names journey.NameStats
	// NotAssembled: the events were recorded, not assembled into journeys
	// (record without --print: replay assembles them); Stats has only the
	// hop and drop counts.
	NotAssembled bool
}

func (o *Options) wall(mono uint64) time.Time {
	loc := o.Location
	if loc == nil {
		loc = time.Local
	}
	return event.Clock{OffsetNS: o.WallOffsetNS}.Wall(mono).In(loc)
}

// FormatDuration prints a transit or delta compactly: 850ns, 42us, 1.25ms, 2.5s.
func FormatDuration(d time.Duration) string { return string(appendDuration(nil, d)) }

// appendDuration appends FormatDuration(d) to b.
func appendDuration(b []byte, d time.Duration) []byte {
	switch {
	case d < time.Microsecond:
		return append(strconv.AppendInt(b, int64(d), 10), "ns"...)
	case d < time.Millisecond:
		return append(appendTrimmed(b, float64(d)/1e3, 1), "us"...)
	case d < time.Second:
		return append(appendTrimmed(b, float64(d)/1e6, 3), "ms"...)
	}
	return append(appendTrimmed(b, float64(d)/1e9, 3), 's')
}
