package tracer

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock turns kernel monotonic nanoseconds (bpf_ktime_get_ns, the TimeNS
// of hops and drops) into wall time. The offset is taken once, so times
// stay consistent with each other even if the wall clock is stepped.
type Clock struct {
	offset int64 // wall ns minus monotonic ns
}

// NewClock measures the offset between the wall and monotonic clocks now.
func NewClock() Clock {
	var ts unix.Timespec
	before := time.Now()
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	after := time.Now()
	wall := before.UnixNano() + after.Sub(before).Nanoseconds()/2
	return Clock{offset: wall - ts.Nano()}
}

// ClockWithOffset is a Clock with a known offset (wall ns minus monotonic
// ns), for example one stored in a recording.
func ClockWithOffset(offset int64) Clock { return Clock{offset: offset} }

// Offset is wall ns minus monotonic ns.
func (c Clock) Offset() int64 { return c.offset }

// Wall converts a kernel monotonic timestamp to wall time.
func (c Clock) Wall(monoNS uint64) time.Time {
	return time.Unix(0, int64(monoNS)+c.offset)
}
