package journey

import "time"

// Retransmit links a journey to the earlier journey of the same TCP
// segment: the same flow, sender and sequence number, sent again. The
// assembler never sets it; a stage in front of the sinks does
// (tracer/exchange), so printers can say it.
type Retransmit struct {
	// Of is the earlier journey's ID; After the time between the two
	// (first hop to first hop).
	Of    uint64
	After time.Duration
	// OfVerdict is what became of the earlier journey; OfDropWhere and
	// OfDropReason say where and why it was dropped on the way (empty when
	// it was not).
	OfVerdict    Verdict
	OfDropWhere  string
	OfDropReason string
}

// OfFate says what became of the earlier journey as its text line does:
// "DROPPED at veth82f1: NETFILTER_DROP", "delivered", "incomplete".
func (r *Retransmit) OfFate() string {
	if r.OfDropWhere != "" {
		return "DROPPED at " + r.OfDropWhere + ": " + r.OfDropReason
	}
	return r.OfVerdict.String()
}
