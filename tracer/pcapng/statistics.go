package pcapng

import (
	"fmt"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// LostInterface names the interface block that carries the recording's
// loss when there was any: events the kernel's ring buffer could not
// deliver belong to no interface (the kernel counts them per CPU), so they
// are not charged to one, and Wireshark's per-interface and total "dropped"
// counts stay true.
const LostInterface = "hoptrace:lost"

// ifaceState is what the export wrote on one interface.
type ifaceState struct {
	id          int
	packets     uint64
	first, last time.Time
}

func (s *ifaceState) count(t time.Time) {
	if s.packets == 0 || t.Before(s.first) {
		s.first = t
	}
	if t.After(s.last) {
		s.last = t
	}
	s.packets++
}

// writeStatistics writes an interface statistics block per interface: its
// first and last packet and the packets exported on it (isb_ifrecv), with
// isb_ifdrop 0 when the recording lost nothing and left out (unknown)
// otherwise. A recording that lost events gets one more interface,
// LostInterface, with no packets, whose isb_ifdrop is the number of hops
// lost.
func (e *Exporter) writeStatistics(loss event.Loss) error {
	dropped := uint64(0)
	if loss.Total() > 0 {
		dropped = pcapgo.NgNoValue64
	}
	for _, st := range e.order {
		if err := e.w.WriteInterfaceStats(st.id, pcapgo.NgInterfaceStatistics{
			LastUpdate:      st.last,
			StartTime:       st.first,
			EndTime:         st.last,
			PacketsReceived: st.packets,
			PacketsDropped:  dropped,
		}); err != nil {
			return fmt.Errorf("write pcapng: %w", err)
		}
	}
	if loss.Total() == 0 {
		return nil
	}
	id, err := e.addInterface(pcapgo.NgInterface{
		Name: LostInterface,
		Description: fmt.Sprintf("events the kernel's ring buffer could not deliver, at interfaces unknown: %d hops (the dropped packets here) and %d drops",
			loss.Hops, loss.Drops),
		OS:                  "Linux " + e.hdr.Kernel,
		LinkType:            layers.LinkTypeEthernet,
		TimestampResolution: 9,
	})
	if err != nil {
		return err
	}
	if err := e.w.WriteInterfaceStats(id, pcapgo.NgInterfaceStatistics{
		PacketsReceived: 0,
		PacketsDropped:  loss.Hops,
	}); err != nil {
		return fmt.Errorf("write pcapng: %w", err)
	}
	return nil
}
