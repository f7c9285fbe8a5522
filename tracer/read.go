package tracer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// Kind says which field of a Record holds the event.
type Kind uint8

const (
	KindHop  Kind = Kind(hoptraceEventKindEVENT_HOP)
	KindDrop Kind = Kind(hoptraceEventKindEVENT_DROP)
	// kindHopNext is a compact hop in the ring (headers.go); ReadInto
	// delivers it as KindHop.
	kindHopNext Kind = Kind(hoptraceEventKindEVENT_HOP_NEXT)
)

func (k Kind) String() string {
	switch k {
	case KindHop:
		return "hop"
	case KindDrop:
		return "drop"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Record is one event from the kernel: Hop when Kind is KindHop, Drop when
// Kind is KindDrop. A Record passed to ReadInto again reuses its buffers.
type Record struct {
	Kind Kind
	Hop  event.Hop
	Drop event.Drop
}

// Read returns the next event. See ReadInto.
func (t *Tracer) Read(ctx context.Context) (Record, error) {
	var r Record
	err := t.ReadInto(ctx, &r)
	return r, err
}

// ReadInto blocks until the next event and decodes it into r. Events are
// delivered within about the drain interval, in time order across CPUs
// (ring.go). It returns ctx.Err() when ctx ends (within a drain interval,
// even while the rings never empty) and ErrClosed once the tracer is
// closed. Several goroutines may read at once; each event goes to one of
// them.
func (t *Tracer) ReadInto(ctx context.Context, r *Record) error {
	rings := t.rings
	for {
		// Checked on every read, not only when the rings are drained:
		// under a flood they may never be (ctx.Err is an atomic load).
		if err := ctx.Err(); err != nil {
			return err
		}
		if took, good := t.readNow(r); took {
			t.idle.event()
			if good {
				return nil
			}
			continue
		}
		if rings.closed.Load() {
			return ErrClosed
		}
		// Drained: look again in a paced drain interval (pace.go), or,
		// idle for a while, sleep until the kernel wakes us (idle.go).
		next := t.idle.empty(ctx, t.pace(), rings.available, rings.flush)
		if t.idle.asleep.Load() {
			if err := rings.wait(next); errors.Is(err, ErrClosed) {
				return ErrClosed
			} else if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, errRingFlushed) {
				return fmt.Errorf("wait for ring buffers: %w", err)
			}
			continue
		}
		// Busy, the wait is a Go timer, not a blocking epoll_wait: a
		// thread blocked in a system call for the whole interval has
		// its P taken away by the runtime's monitor, which then polls
		// at its fastest for a while; 100 times a second that was a
		// third of a recording's CPU time.
		if err := pause(ctx, next); err != nil {
			return err
		}
	}
}

// ReadBatch blocks until the next event, as ReadInto, then decodes into the
// rest of recs the events already committed, up to len(recs), without
// waiting for more; it returns how many it filled (at least one unless err
// is set). A busy reader then takes the rings' lock and looks at ctx once a
// batch, not once an event. Records passed again reuse their buffers.
func (t *Tracer) ReadBatch(ctx context.Context, recs []Record) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	if err := t.ReadInto(ctx, &recs[0]); err != nil {
		return 0, err
	}
	return 1 + t.readMore(recs[1:]), nil
}

// readMore decodes committed events into recs until they run out or recs
// is full, without waiting; it returns how many it filled.
func (t *Tracer) readMore(recs []Record) int {
	if len(recs) == 0 {
		return 0
	}
	rings := t.rings
	rings.mu.Lock()
	defer rings.mu.Unlock()
	n := 0
	looked := false
	for n < len(recs) {
		b, i, ok := rings.next()
		if !ok {
			if looked || !rings.look() {
				break
			}
			looked = true // once a batch: the positions are the producers' lines
			continue
		}
		if t.decode(b, &recs[n]) {
			n++
		} else {
			t.skipped.Add(1)
		}
		rings.consume(i)
	}
	if n > 0 {
		t.idle.event()
	}
	return n
}

// readNow decodes the next committed event into r, without waiting: whether
// there was one, and whether it decoded (a kind this tracer knows).
func (t *Tracer) readNow(r *Record) (took, good bool) {
	rings := t.rings
	rings.mu.Lock()
	defer rings.mu.Unlock()
	b, i, ok := rings.next()
	if !ok && rings.look() {
		b, i, ok = rings.next()
	}
	if !ok {
		return false, false
	}
	good = t.decode(b, r)
	if !good {
		t.skipped.Add(1)
	}
	rings.consume(i)
	return true, good
}

// pause waits until the time next, or returns ctx.Err() when ctx ends first.
func pause(ctx context.Context, next time.Time) error {
	d := time.Until(next)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// decode fills r from the sample b; false for a record it does not know.
// b lies in the ring: everything r keeps is copied.
func (t *Tracer) decode(b []byte, r *Record) bool {
	if len(b) == 0 {
		return false
	}
	switch Kind(b[0]) {
	case KindHop:
		if len(b) < int(unsafe.Sizeof(hoptraceHopEvent{})) {
			return false
		}
		r.Kind = KindHop
		decodeHop(b, &r.Hop)
		t.headers.keep(&r.Hop)
		return true
	case kindHopNext:
		if len(b) < int(unsafe.Sizeof(hoptraceHopNextEvent{})) {
			return false
		}
		r.Kind = KindHop
		decodeHopNext(b, &r.Hop)
		return t.headers.fill(&r.Hop)
	case KindDrop:
		if len(b) < int(unsafe.Sizeof(hoptraceDropEvent{})) {
			return false
		}
		r.Kind = KindDrop
		decodeDrop(b, &r.Drop)
		r.Drop.ReasonName = t.ReasonName(r.Drop.Reason)
		return true
	}
	return false
}

// decodeHop converts a ring buffer sample (the generated hop_event, native
// byte order, length checked by the caller) to an event.Hop.
func decodeHop(b []byte, h *event.Hop) {
	ev := (*hoptraceHopEvent)(unsafe.Pointer(&b[0]))
	*h = event.Hop{
		TimeNS:      ev.Ts,
		Ifindex:     ev.Ifindex,
		NetnsIno:    ev.NetnsIno,
		Dir:         event.Direction(ev.Dir),
		Len:         ev.Len,
		GSOSegs:     ev.GsoSegs,
		GSOSize:     ev.GsoSize,
		SkbKey:      ev.Skb,
		PacketID:    ev.Id,
		Fingerprint: ev.Fp,
	}
	decodePkt(&ev.Pkt, &h.Pkt)
	if ev.Tunnel&uint32(hoptraceTunnelBitsTUNNEL_VXLAN) != 0 {
		h.Tunnel.VNI = ev.Tunnel & uint32(hoptraceTunnelBitsTUNNEL_VNI_MASK)
		if ev.Tunnel&uint32(hoptraceTunnelBitsTUNNEL_PEER_V6) != 0 {
			h.Tunnel.Peer = netip.AddrFrom16(ev.TunnelPeer)
		} else {
			h.Tunnel.Peer = netip.AddrFrom4([4]byte(ev.TunnelPeer[:4]))
		}
	}
	if n := int(ev.CapLen); n > 0 {
		off := int(unsafe.Sizeof(*ev))
		if off+n <= len(b) {
			h.Data = append([]byte(nil), b[off:off+n]...)
		}
	}
}

// decodeHopNext converts a compact hop (the generated hop_next_event) to an
// event.Hop without its headers and fingerprint (headerCache.fill).
func decodeHopNext(b []byte, h *event.Hop) {
	ev := (*hoptraceHopNextEvent)(unsafe.Pointer(&b[0]))
	*h = event.Hop{
		TimeNS:   ev.Ts,
		Ifindex:  ev.Ifindex,
		NetnsIno: ev.NetnsIno,
		Dir:      event.Direction(ev.Dir),
		Len:      ev.Len,
		GSOSegs:  ev.GsoSegs,
		GSOSize:  ev.GsoSize,
		SkbKey:   ev.Skb,
		PacketID: ev.Id,
	}
}

func decodeDrop(b []byte, d *event.Drop) {
	ev := (*hoptraceDropEvent)(unsafe.Pointer(&b[0]))
	*d = event.Drop{
		TimeNS:      ev.Ts,
		SkbKey:      ev.Skb,
		PacketID:    ev.Id,
		Fingerprint: ev.Fp,
		Reason:      ev.Reason,
		Ifindex:     ev.Ifindex,
		NetnsIno:    ev.NetnsIno,
		Location:    ev.Location,
	}
	decodePkt(&ev.Pkt, &d.Pkt)
}

func decodePkt(p *hoptracePkt, out *event.Packet) {
	l := event.Layer(p.Layers)
	*out = event.Packet{
		Layers:    l,
		SrcMAC:    p.SrcMac,
		DstMAC:    p.DstMac,
		EtherType: p.Ethertype,
		VLAN:      p.Vlan,
		Proto:     p.Proto,
		IPID:      p.IpId,
		TTL:       p.Ttl,
		SrcPort:   p.Sport,
		DstPort:   p.Dport,
		TCPFlags:  p.TcpFlags,
		Seq:       p.Seq,
		Ack:       p.Ack,
		ICMPType:  p.IcmpType,
		ICMPCode:  p.IcmpCode,
		ICMPID:    p.IcmpId,
		ICMPSeq:   p.IcmpSeq,
		ARPOp:     p.ArpOp,
	}
	switch {
	case l&(event.LayerIPv4|event.LayerARP) != 0:
		out.Src = netip.AddrFrom4([4]byte(p.Src[:4]))
		out.Dst = netip.AddrFrom4([4]byte(p.Dst[:4]))
	case l&event.LayerIPv6 != 0:
		out.Src = netip.AddrFrom16(p.Src)
		out.Dst = netip.AddrFrom16(p.Dst)
	}
	if l&event.LayerARP != 0 {
		out.ARPSenderMAC = p.ArpSha
		out.ARPTargetMAC = p.ArpTha
	}
}

// Loss returns the events lost so far because the ring buffer was full,
// and the packets evicted in flight, summed over CPUs.
func (t *Tracer) Loss() (event.Loss, error) {
	var c [hoptraceLostIdxLOST_MAX]uint64
	for i := range c {
		n, err := sumPerCPU(t.coll.Maps["lost"], uint32(i))
		if err != nil {
			return event.Loss{}, err
		}
		c[i] = n
	}
	return event.Loss{
		// Compact hops whose headers went with a lost event are lost too.
		Hops:    c[hoptraceLostIdxLOST_HOPS] + t.headers.missing.Load(),
		Drops:   c[hoptraceLostIdxLOST_DROPS],
		Evicted: c[hoptraceLostIdxLOST_EVICTED],
	}, nil
}

// hookCalls is the number of hook invocations (Options.countHookCalls).
func (t *Tracer) hookCalls() (uint64, error) {
	return sumPerCPU(t.coll.Maps["hook_calls"], 0)
}

// hopsContinued is the number of hops the hooks joined to their packet
// without decoding them, their frame unchanged since its last hop
// (continue_here; Options.countHookCalls).
func (t *Tracer) hopsContinued() (uint64, error) {
	return sumPerCPU(t.coll.Maps["hook_calls"], 1)
}

func sumPerCPU(m *ebpf.Map, key uint32) (uint64, error) {
	var vals []uint64
	if err := m.Lookup(key, &vals); err != nil {
		return 0, fmt.Errorf("read %s counters: %w", m, err)
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	return sum, nil
}

func attachDrop(p *ebpf.Program) (link.Link, error) {
	l, err := link.AttachTracing(link.TracingOptions{Program: p})
	if err != nil {
		return nil, fmt.Errorf("attach kfree_skb tracepoint: %w", err)
	}
	return l, nil
}
