package tracer

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

func sampleHop() []byte {
	ev := hoptraceHopEvent{
		Kind: uint8(hoptraceEventKindEVENT_HOP), Dir: 1, Ifindex: 7, NetnsIno: 4026531840, Len: 98,
		Ts: 123456789, Skb: 0xffff888012345678, Id: 1<<48 | 42, Fp: 0xdeadbeef,
	}
	ev.Pkt.Layers = uint16(event.LayerEth | event.LayerIPv4 | event.LayerTCP)
	ev.Pkt.Ethertype = event.EtherTypeIPv4
	ev.Pkt.Proto = event.ProtoTCP
	copy(ev.Pkt.Src[:], []byte{10, 0, 0, 1})
	copy(ev.Pkt.Dst[:], []byte{10, 0, 0, 2})
	ev.Pkt.Sport, ev.Pkt.Dport, ev.Pkt.Seq = 40000, 80, 1000
	b := make([]byte, unsafe.Sizeof(ev))
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&ev)), len(b)))
	return b
}

func TestDecodeHop(t *testing.T) {
	var h event.Hop
	decodeHop(sampleHop(), &h)
	if h.Dir != event.Egress || h.Ifindex != 7 || h.PacketID != 1<<48|42 || h.SkbKey != 0xffff888012345678 ||
		h.Pkt.Src != netip.MustParseAddr("10.0.0.1") || h.Pkt.DstPort != 80 || h.Pkt.Seq != 1000 || h.Data != nil {
		t.Errorf("decoded %+v", h)
	}
	// The kernel's layer bits are event.Layer's.
	for k, l := range map[hoptraceLayer]event.Layer{
		hoptraceLayerL_ETH: event.LayerEth, hoptraceLayerL_VLAN: event.LayerVLAN, hoptraceLayerL_ARP: event.LayerARP,
		hoptraceLayerL_IPV4: event.LayerIPv4, hoptraceLayerL_IPV6: event.LayerIPv6, hoptraceLayerL_TCP: event.LayerTCP,
		hoptraceLayerL_UDP: event.LayerUDP, hoptraceLayerL_ICMP: event.LayerICMP, hoptraceLayerL_ICMPV6: event.LayerICMPv6,
		hoptraceLayerL_FRAG: event.LayerFragment,
	} {
		if uint32(k) != uint32(l) {
			t.Errorf("layer %d in C is %d in Go", k, l)
		}
	}
}

// BenchmarkDecodeHop: one ring buffer sample to an event.Hop.
func BenchmarkDecodeHop(b *testing.B) {
	raw := sampleHop()
	var h event.Hop
	b.ReportAllocs()
	for b.Loop() {
		decodeHop(raw, &h)
	}
}

// testFrame is an Ethernet/IPv4/TCP frame for BPF_PROG_TEST_RUN.
func testFrame() []byte {
	f := make([]byte, 14+20+20+64)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	f[14], f[14+9] = 0x45, 6
	binary.BigEndian.PutUint16(f[16:], uint16(len(f)-14))
	copy(f[26:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(f[34:], 40000)
	binary.BigEndian.PutUint16(f[36:], 80)
	f[34+12] = 5 << 4
	f[34+13] = 0x18
	return f
}

// BenchmarkHookCost is the kernel cost of one hop event (hook, decode,
// packet id, ring buffer), measured with BPF_PROG_TEST_RUN while a reader
// drains the ring.
func BenchmarkHookCost(b *testing.B) {
	loss := hookCost(b, Options{RingBufferBytes: 16 << 20})
	b.ReportMetric(float64(loss.Hops)/float64(b.N), "lost/op")
}

// hookCost runs the ingress hop program b.N times on testFrame with a
// tracer loaded with opts, reports kernel-ns/event and returns the loss.
func hookCost(b *testing.B, opts Options) event.Loss {
	testenv.RequireRoot(b)
	tr, err := Load(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var r Record
		for tr.ReadInto(ctx, &r) == nil {
		}
	}()
	prog := tr.coll.Programs["hop_ingress_tcx"]
	if prog == nil {
		prog = tr.coll.Programs["hop_ingress_legacy"]
	}
	// Run in chunks the ring can hold and let the reader drain between
	// them, so every run takes the full path, not the ring-full one.
	frame := testFrame()
	var total time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(8192, b.N-done)
		_, d, err := prog.Benchmark(frame, n, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += d * time.Duration(n)
		done += n
		for tr.rd.AvailableBytes() > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64((total / time.Duration(b.N)).Nanoseconds()), "kernel-ns/event")
	loss, _ := tr.Loss()
	return loss
}

// BenchmarkReadRate is the end-to-end rate through the reader: the kernel
// produces events as fast as BPF_PROG_TEST_RUN runs the hook on one CPU
// while the reader decodes them on another. ns/op is per event read.
func BenchmarkReadRate(b *testing.B) {
	testenv.RequireRoot(b)
	tr, err := Load(Options{RingBufferBytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	prog := tr.coll.Programs["hop_ingress_legacy"]
	frame := testFrame()
	var stop atomic.Bool
	produced := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() {
		// Produce in chunks until the reader has its b.N events.
		for !stop.Load() {
			if _, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: 4096}); err != nil {
				produced <- err
				return
			}
		}
		produced <- nil
	}()
	var r Record
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if err := tr.ReadInto(ctx, &r); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop.Store(true)
	if err := <-produced; err != nil {
		b.Fatal(err)
	}
	loss, _ := tr.Loss()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(loss.Hops)/float64(b.N), "lost/read")
}
