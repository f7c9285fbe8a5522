package event

import "time"

// Clock turns kernel monotonic nanoseconds (bpf_ktime_get_ns, the TimeNS of
// hops and drops) into wall time. It is the one conversion: a live capture
// measures the offset once (tracer.NewClock), a recording stores it, and
// printers and exporters use it, so times stay consistent with each other
// even if the wall clock is stepped.
type Clock struct {
	// OffsetNS is wall ns minus monotonic ns.
	OffsetNS int64
}

// Wall converts a kernel monotonic timestamp to wall time.
func (c Clock) Wall(monoNS uint64) time.Time {
	return time.Unix(0, int64(monoNS)+c.OffsetNS)
}

// Offset is wall ns minus monotonic ns.
func (c Clock) Offset() int64 { return c.OffsetNS }
