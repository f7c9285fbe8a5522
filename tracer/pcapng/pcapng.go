// Package pcapng exports recordings to pcapng for Wireshark and tshark.
//
// Each traced interface becomes one interface block named after what it is
// ("web:eth0", "veth3c4d@docker0", "docker0"); each hop becomes one packet on
// its interface with the direction flag (inbound for a TC ingress hook,
// outbound for egress), the journey ID as its packet ID (epb_packetid, so
// every sighting of one packet shares it: frame.packet_id in Wireshark) and
// a comment saying which journey and hop it is, the containers along the way
// and the time since the previous hop. At the end an interface statistics
// block per interface gives its packet count and, with the recording's loss
// counters, what could not be exported (see Summary). An Exporter is a
// pipeline sink: the journeys come from the same pipeline as live tracing
// (recordings read back by playback.Source).
//
// Hops recorded without packet bytes (snaplen 0) are exported with headers
// built from what the kernel decoded (see Synthesize).
package pcapng

import (
	"container/heap"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

// Options shape an export.
type Options struct {
	// HoptraceVersion names the exporting application in the section header.
	HoptraceVersion string
	// Header is the (first) recording's header: the clock, host and
	// capture settings the section and interface blocks tell of.
	Header tracefile.Header
	// At, if set, exports the hops at these interfaces only: one vantage
	// point, as a capture there would have seen it. Each is a name as
	// InterfaceName gives it ("web:eth0", "veth3c4d@docker0"), an
	// interface name ("veth3c4d", "docker0") or a label.
	At []string
	// Stream flushes the output whenever packets were written, so the
	// reader of a pipe sees them as they come (tshark -i -, wireshark -k -i -).
	Stream bool
}

// Stats count what an export wrote.
type Stats struct {
	Journeys    int // journeys exported
	Packets     int // packets written (one per hop)
	Synthesized int // packets whose headers were built from decoded fields
	Interfaces  int // interface blocks
	Loss        event.Loss
}

// reorderWindow is how far behind the newest journey a packet may be held
// so the output is in time order: journeys finish out of order, by up to
// their timeout.
const reorderWindow = 2 * time.Second

// ErrNoPackets is returned by Summary when nothing was exported.
var ErrNoPackets = errors.New("no packets to export")

// Exporter writes one pcapng file from the journeys of a pipeline.
type Exporter struct {
	out    io.Writer
	opts   Options
	hdr    *tracefile.Header
	w      *pcapgo.NgWriter
	ifaces map[ifaceKey]*ifaceState
	order  []*ifaceState // in the order of their blocks
	queue  packetHeap
	seq    uint64
	newest uint64
	stats  Stats
	err    error
}

type ifaceKey struct {
	netns, ifindex uint32
	name           string
}

type packet struct {
	time  uint64
	seq   uint64 // ties: the order journeys came in
	iface ifaceKey
	desc  string
	ci    gopacket.CaptureInfo
	data  []byte
	opts  pcapgo.NgPacketOptions
	synth bool
}

// New returns an exporter writing to w.
func New(w io.Writer, opts Options) *Exporter {
	return &Exporter{out: w, opts: opts, hdr: &opts.Header, ifaces: make(map[ifaceKey]*ifaceState)}
}

// Journey implements pipeline.Sink: the journey's hops become packets.
func (e *Exporter) Journey(j *journey.Journey) error { return e.journey(j) }

// Summary implements pipeline.Sink: it writes the remaining packets, the
// interface statistics (statistics.go) and flushes (the underlying writer
// stays open). ErrNoPackets when nothing was exported.
func (e *Exporter) Summary(s render.Summary) error {
	if err := e.drain(^uint64(0)); err != nil {
		return err
	}
	e.stats.Loss = s.Loss
	if e.w == nil {
		return ErrNoPackets
	}
	if err := e.writeStatistics(s.Loss); err != nil {
		return err
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("write pcapng: %w", err)
	}
	return nil
}

// Stats are what the export wrote.
func (e *Exporter) Stats() Stats { return e.stats }

// journey queues a finished journey's hops as packets.
func (e *Exporter) journey(j *journey.Journey) error {
	if len(j.Hops) == 0 {
		return nil
	}
	who := containers(j)
	id := j.ID
	queued := false
	for i := range j.Hops {
		h := &j.Hops[i]
		if !e.at(h) {
			continue
		}
		queued = true
		pk := packet{time: h.TimeNS, seq: e.seq, iface: ifaceKey{h.Endpoint.NetnsIno, h.Endpoint.Ifindex, InterfaceName(h)}, desc: describe(h)}
		e.seq++
		pk.data = h.Data
		if len(pk.data) == 0 {
			pk.data = Synthesize(&h.Pkt, h.Len)
			pk.synth = true
		}
		pk.ci = gopacket.CaptureInfo{
			Timestamp:     e.hdr.Wall(h.TimeNS),
			CaptureLength: len(pk.data),
			Length:        max(int(h.Len), len(pk.data)),
		}
		dir := pcapgo.NgEpbFlagDirectionInbound
		if h.Dir == event.Egress {
			dir = pcapgo.NgEpbFlagDirectionOutbound
		}
		pk.opts.Flags = &pcapgo.NgEpbFlags{Direction: dir}
		pk.opts.PacketID = &id
		pk.opts.Comments = []string{comment(j, i, who)}
		heap.Push(&e.queue, pk)
	}
	if queued {
		e.stats.Journeys++
	}
	e.newest = max(e.newest, j.End)
	if e.newest > uint64(reorderWindow) {
		return e.drain(e.newest - uint64(reorderWindow))
	}
	return nil
}

// at reports whether a hop is at an interface of Options.At (any, without).
func (e *Exporter) at(h *journey.Hop) bool {
	if len(e.opts.At) == 0 {
		return true
	}
	for _, want := range e.opts.At {
		if want == h.Endpoint.Name || want == h.Endpoint.Label() || want == InterfaceName(h) {
			return true
		}
	}
	return false
}

// drain writes queued packets older than before, in time order; streaming,
// it flushes them.
func (e *Exporter) drain(before uint64) error {
	wrote := false
	for e.queue.Len() > 0 && e.queue[0].time < before {
		pk := heap.Pop(&e.queue).(packet)
		if err := e.write(&pk); err != nil {
			return err
		}
		wrote = true
	}
	if wrote && e.opts.Stream {
		if err := e.w.Flush(); err != nil {
			return fmt.Errorf("write pcapng: %w", err)
		}
	}
	return nil
}

func (e *Exporter) write(pk *packet) error {
	st, err := e.iface(pk.iface, pk.desc)
	if err != nil {
		return err
	}
	pk.ci.InterfaceIndex = st.id
	if err := e.w.WritePacketWithOptions(pk.ci, pk.data, pk.opts); err != nil {
		return fmt.Errorf("write pcapng: %w", err)
	}
	st.count(pk.ci.Timestamp)
	e.stats.Packets++
	if pk.synth {
		e.stats.Synthesized++
	}
	return nil
}

// iface returns an interface's state, writing its block (and, the first
// time, the section header) when it is new.
func (e *Exporter) iface(k ifaceKey, desc string) (*ifaceState, error) {
	if st, ok := e.ifaces[k]; ok {
		return st, nil
	}
	intf := pcapgo.NgInterface{
		Name:                k.name,
		Description:         desc,
		OS:                  "Linux " + e.hdr.Kernel,
		LinkType:            layers.LinkTypeEthernet,
		TimestampResolution: 9,
		SnapLength:          0,
		Filter:              e.hdr.Filter,
	}
	id, err := e.addInterface(intf)
	if err != nil {
		return nil, err
	}
	st := &ifaceState{id: id}
	e.ifaces[k] = st
	e.order = append(e.order, st)
	e.stats.Interfaces++
	return st, nil
}

// addInterface writes an interface block, and before the first one the
// section header.
func (e *Exporter) addInterface(intf pcapgo.NgInterface) (int, error) {
	if e.w == nil {
		info := pcapgo.NgSectionInfo{
			Application: strings.TrimSpace("hoptrace " + e.opts.HoptraceVersion),
			OS:          "Linux " + e.hdr.Kernel,
			Comment: fmt.Sprintf("recorded by hoptrace %s on %s, started %s; one packet per hop, comments give journey and hop, the packet ID is the journey ID",
				e.hdr.HoptraceVersion, e.hdr.Hostname, e.hdr.Start.UTC().Format(time.RFC3339)),
		}
		w, err := pcapgo.NewNgWriterInterface(e.out, intf, pcapgo.NgWriterOptions{SectionInfo: info})
		if err != nil {
			return 0, fmt.Errorf("write pcapng: %w", err)
		}
		e.w = w
		return 0, nil
	}
	id, err := e.w.AddInterface(intf)
	if err != nil {
		return 0, fmt.Errorf("write pcapng: %w", err)
	}
	return id, nil
}

// InterfaceName names a hop's interface for Wireshark: "web:eth0" for a
// container's interface, "veth3c4d@docker0" for a bridge port, "docker0" for
// a bridge, "if7@ns4026532301" when the recording did not know it.
func InterfaceName(h *journey.Hop) string {
	ep := &h.Endpoint
	if !h.Resolved {
		return fmt.Sprintf("if%d@ns%d", ep.Ifindex, ep.NetnsIno)
	}
	if ep.Role == topology.RoleHostVeth && ep.Bridge != "" {
		return ep.Name + "@" + ep.Bridge
	}
	return ep.Label()
}

// describe is the interface block's description.
func describe(h *journey.Hop) string {
	ep := &h.Endpoint
	var b strings.Builder
	fmt.Fprintf(&b, "%s, ifindex %d in netns %d", ep.Role, ep.Ifindex, ep.NetnsIno)
	if c := ep.Container; c != nil {
		fmt.Fprintf(&b, ", container %s (%s", c.Name, c.ShortID())
		if c.Image != "" {
			fmt.Fprintf(&b, ", %s", c.Image)
		}
		b.WriteString(")")
	}
	if ep.Network != "" {
		fmt.Fprintf(&b, ", network %s", ep.Network)
	}
	return b.String()
}

// containers lists the containers a journey passed, in order: "client -> web".
func containers(j *journey.Journey) string {
	var names []string
	for i := range j.Hops {
		c := j.Hops[i].Endpoint.Container
		if c == nil || (len(names) > 0 && names[len(names)-1] == c.Name) {
			continue
		}
		names = append(names, c.Name)
	}
	return strings.Join(names, " -> ")
}

// comment is a packet's comment, e.g.
// "hoptrace journey 12 hop 2/4 (+2.1us after hop 1): veth1a2b@docker0 ingress,
// left client, entered docker0; client -> web; delivered". The hop after which
// the kernel dropped the packet says so, with the reason.
func comment(j *journey.Journey, i int, who string) string {
	h := &j.Hops[i]
	var b strings.Builder
	fmt.Fprintf(&b, "hoptrace journey %d hop %d/%d", j.ID, i+1, len(j.Hops))
	if h.Parent >= 0 {
		fmt.Fprintf(&b, " (+%s after hop %d)", render.FormatDuration(h.Delta), h.Parent+1)
	}
	fmt.Fprintf(&b, ": %s %s, %s", InterfaceName(h), h.Dir, h.Action())
	if h.GSOSegs > 1 {
		fmt.Fprintf(&b, ", GSO %d segments of %d bytes", h.GSOSegs, h.GSOSize)
	}
	if who != "" {
		b.WriteString("; " + who)
	}
	if d := j.Drop; d != nil && d.After == i {
		fmt.Fprintf(&b, "; dropped after this hop: %s at %s", d.Name(), d.Where(j))
	} else {
		fmt.Fprintf(&b, "; %s", j.Verdict)
	}
	return b.String()
}

type packetHeap []packet

func (q packetHeap) Len() int { return len(q) }
func (q packetHeap) Less(i, j int) bool {
	if q[i].time != q[j].time {
		return q[i].time < q[j].time
	}
	return q[i].seq < q[j].seq
}
func (q packetHeap) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *packetHeap) Push(x any)   { *q = append(*q, x.(packet)) }
func (q *packetHeap) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}
