package tracer

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// Clock converts the hooks' kernel monotonic time to wall time.
type Clock = event.Clock

// NewClock measures the offset between the wall and monotonic clocks now.
func NewClock() Clock {
	before := time.Now()
	mono := MonoNow()
	after := time.Now()
	wall := before.UnixNano() + after.Sub(before).Nanoseconds()/2
	return Clock{OffsetNS: wall - int64(mono)}
}

// MonoNow is the kernel monotonic clock the hooks stamp events with.
func MonoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
