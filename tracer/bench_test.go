package tracer

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

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
		for tr.Unread() > 0 {
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

// flowFrame is testFrame from flow i of 4096 (source port), with its own
// IP ID and sequence number, so every frame is a distinct packet.
func flowFrame(i int) []byte {
	f := testFrame()
	binary.BigEndian.PutUint16(f[18:], uint16(i))
	binary.BigEndian.PutUint16(f[34:], 40000+uint16(i%4096))
	binary.BigEndian.PutUint32(f[38:], uint32(i)*1000)
	return f
}

// hopStats sums the bpf_stats run time and run count of the tracer's hop
// programs, in every collection of them.
func hopStats(b *testing.B, tr *Tracer) (time.Duration, uint64) {
	b.Helper()
	tr.mu.Lock()
	colls := []*ebpf.Collection{tr.coll}
	for _, c := range tr.hopColls {
		colls = append(colls, c)
	}
	tr.mu.Unlock()
	var rt time.Duration
	var n uint64
	for _, c := range colls {
		for name, p := range c.Programs {
			if !strings.HasPrefix(name, "hop_") {
				continue
			}
			st, err := p.Stats()
			if err != nil {
				b.Fatal(err)
			}
			rt += st.Runtime
			n += st.RunCount
		}
	}
	return rt, n
}

// enableStats turns on bpf_stats (run time per program) for the benchmark.
func enableStats(b *testing.B) {
	b.Helper()
	st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Skipf("bpf_stats: %v", err)
	}
	b.Cleanup(func() { st.Close() })
}

// onCPU runs fn on a thread bound to cpu.
func onCPU(cpu int, fn func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	_ = unix.SchedSetaffinity(0, &set)
	fn()
}

// BenchmarkHookCostFlows is the hook on distinct packets from 4096 flows,
// run with BPF_PROG_TEST_RUN on every CPU at once (one fresh skb per run),
// with no filter and with a filter that rejects them all. kernel-ns/hook is
// from bpf_stats, so it includes the cost of reading the clock.
func BenchmarkHookCostFlows(b *testing.B) {
	for _, bc := range []struct{ name, expr string }{{"none", ""}, {"nomatch", "udp and dst port 5001"}} {
		b.Run(bc.name, func(b *testing.B) {
			testenv.RequireRoot(b)
			opts := Options{RingBufferBytes: 16 << 20}
			if bc.expr != "" {
				opts.Filter = mustCompile(b, bc.expr)
			}
			tr, err := Load(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			enableStats(b)
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
			frames := make([][]byte, 1<<14)
			for i := range frames {
				frames[i] = flowFrame(i)
			}
			cpus := runtime.NumCPU()
			rt0, n0 := hopStats(b, tr)
			b.ResetTimer()
			for done := 0; done < b.N; {
				// Chunks the ring holds, drained in between.
				n := min(8192*cpus, b.N-done)
				var wg sync.WaitGroup
				errs := make(chan error, cpus)
				for c := range cpus {
					wg.Add(1)
					go func() {
						defer wg.Done()
						onCPU(c, func() {
							for i := done + c; i < done+n; i += cpus {
								if _, err := prog.Run(&ebpf.RunOptions{Data: frames[i%len(frames)]}); err != nil {
									errs <- err
									return
								}
							}
						})
					}()
				}
				wg.Wait()
				close(errs)
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
				done += n
				for tr.Unread() > 0 {
					time.Sleep(time.Millisecond)
				}
			}
			b.StopTimer()
			rt, n := hopStats(b, tr)
			cancel()
			<-done
			reportHooks(b, tr, rt-rt0, n-n0)
		})
	}
}

// BenchmarkHookCostFloor is BenchmarkHookCostFlows' measurement of a TC
// program that does nothing: what bpf_stats and BPF_PROG_TEST_RUN cost by
// themselves on this machine, to read the hooks' figures against.
func BenchmarkHookCostFloor(b *testing.B) {
	testenv.RequireRoot(b)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	enableStats(b)
	frames := make([][]byte, 1<<14)
	for i := range frames {
		frames[i] = flowFrame(i)
	}
	st0, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	cpus := runtime.NumCPU()
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			onCPU(c, func() {
				for i := c; i < b.N; i += cpus {
					_, _ = prog.Run(&ebpf.RunOptions{Data: frames[i%len(frames)]})
				}
			})
		}()
	}
	wg.Wait()
	b.StopTimer()
	st, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	if st.RunCount == st0.RunCount {
		b.Fatal("the program never ran")
	}
	b.ReportMetric(float64((st.Runtime-st0.Runtime).Nanoseconds())/float64(st.RunCount-st0.RunCount), "kernel-ns/hook")
}

func reportHooks(b *testing.B, tr *Tracer, rt time.Duration, n uint64) {
	b.Helper()
	if n == 0 {
		b.Fatal("no hook ran")
	}
	b.ReportMetric(float64(rt.Nanoseconds())/float64(n), "kernel-ns/hook")
	b.ReportMetric(float64(n)/float64(b.N), "hooks/op")
	loss, err := tr.Loss()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(loss.Hops)/float64(b.N), "lost/op")
}

// BenchmarkHookCostTraffic is the hooks' kernel cost on real traffic: UDP
// from 2x32 flows out of two namespaces (senders bound to different CPUs)
// to a third, through a bridge, with all four hooks of each path attached.
// One op is one datagram; kernel-ns/hook is from bpf_stats.
func BenchmarkHookCostTraffic(b *testing.B) {
	hookCostTraffic(b, Options{RingBufferBytes: 16 << 20})
}

// BenchmarkHookCostTrafficAggregate is BenchmarkHookCostTraffic with the
// hooks aggregating in the kernel, as in `hoptrace serve`.
func BenchmarkHookCostTrafficAggregate(b *testing.B) {
	hookCostTraffic(b, Options{Aggregate: true})
}

// BenchmarkHookCostTrafficAggregateSampled is BenchmarkHookCostTrafficAggregate
// with serve's default timing: each CPU times DefaultTimedPerCPU new packets
// a second one by one and one in DefaultTimeOneIn past that, which this
// flood is far beyond.
func BenchmarkHookCostTrafficAggregateSampled(b *testing.B) {
	hookCostTraffic(b, Options{Aggregate: true, TimedPerCPU: DefaultTimedPerCPU, TimeOneIn: DefaultTimeOneIn})
}

// BenchmarkHookCostTrafficNomatch is BenchmarkHookCostTraffic with a filter
// that rejects every datagram: the kernel cost of a trace that records
// nothing.
func BenchmarkHookCostTrafficNomatch(b *testing.B) {
	hookCostTraffic(b, Options{RingBufferBytes: 16 << 20, Filter: mustCompile(b, "udp and port 9")})
}

// tracedTopology makes a topology of n hosts, loads a tracer with opts,
// attaches it at both ends of every host's veth, turns on bpf_stats and
// reads the events as they come. stop ends the reading; the tracer is
// closed when b ends.
func tracedTopology(b *testing.B, n int, opts Options) (*testenv.Topology, *Tracer, func()) {
	topo := testenv.NewTopology(b, n)
	tr, err := Load(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close() })
	for _, h := range topo.Hosts {
		for _, i := range []Iface{{Name: h.HostVeth}, {Name: h.Iface, Netns: h.Path}} {
			if err := tr.Attach(i); err != nil {
				b.Fatal(err)
			}
		}
	}
	enableStats(b)
	ctx, cancel := context.WithCancel(context.Background())
	read := make(chan struct{})
	go func() {
		defer close(read)
		var r Record
		for tr.ReadInto(ctx, &r) == nil {
		}
	}()
	return topo, tr, func() {
		cancel()
		<-read
	}
}

func hookCostTraffic(b *testing.B, opts Options) {
	topo, tr, stop := tracedTopology(b, 3, opts)
	dst := topo.Hosts[2]
	rx := dst.UDPConn(b, 0)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	const flows = 32
	senders := make([][]*net.UDPConn, 2)
	for s := range senders {
		for range flows {
			senders[s] = append(senders[s], topo.Hosts[s].UDPConn(b, 0))
		}
	}
	payload := make([]byte, 64)
	to := rx.LocalAddr()
	rt0, n0 := hopStats(b, tr)
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(16384, b.N-done)
		var wg sync.WaitGroup
		for s, conns := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				onCPU(s%runtime.NumCPU(), func() {
					for i := done + s; i < done+n; i += len(senders) {
						_, _ = conns[(i/len(senders))%flows].WriteTo(payload, to)
					}
				})
			}()
		}
		wg.Wait()
		done += n
		for tr.Unread() > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	rt, n := hopStats(b, tr)
	stop()
	reportHooks(b, tr, rt-rt0, n-n0)
}

// BenchmarkHookCostPingPong is the hooks' kernel cost when packets are
// sparse: one UDP datagram out of one namespace and its echo back (a CPU
// each), one op per round trip, as in make bench's W3. Between packets the
// CPUs wait, and what a hook touches has left their caches: this is the
// cost a latency-bound workload pays, unlike the flood of
// BenchmarkHookCostTraffic.
func BenchmarkHookCostPingPong(b *testing.B) {
	hookCostPingPong(b, Options{RingBufferBytes: 16 << 20})
}

// BenchmarkHookCostPingPongAggregate is BenchmarkHookCostPingPong as serve
// hooks, with serve's default timing.
func BenchmarkHookCostPingPongAggregate(b *testing.B) {
	hookCostPingPong(b, Options{Aggregate: true, TimedPerCPU: DefaultTimedPerCPU, TimeOneIn: DefaultTimeOneIn})
}

// BenchmarkHookCostPingPongAggregateTimed is BenchmarkHookCostPingPongAggregate
// timing every packet (--timed-rate 0): what the sample saves.
func BenchmarkHookCostPingPongAggregateTimed(b *testing.B) {
	hookCostPingPong(b, Options{Aggregate: true})
}

// BenchmarkHookCostPingPongNomatch is BenchmarkHookCostPingPong with a
// filter that rejects every datagram.
func BenchmarkHookCostPingPongNomatch(b *testing.B) {
	hookCostPingPong(b, Options{RingBufferBytes: 16 << 20, Filter: mustCompile(b, "udp and port 9")})
}

func hookCostPingPong(b *testing.B, opts Options) {
	topo, tr, stop := tracedTopology(b, 2, opts)
	srv, cli := topo.Hosts[1].UDPConn(b, 0), topo.Hosts[0].UDPConn(b, 0)
	go onCPU(1, func() {
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteToUDPAddrPort(buf[:n], from)
		}
	})
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	payload, buf := make([]byte, 1), make([]byte, 64)
	rt0, n0 := hopStats(b, tr)
	b.ResetTimer()
	onCPU(0, func() {
		for range b.N {
			if _, err := cli.WriteToUDPAddrPort(payload, to); err != nil {
				b.Fatal(err)
			}
			_ = cli.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := cli.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	rt, n := hopStats(b, tr)
	stop()
	reportHooks(b, tr, rt-rt0, n-n0)
}

// BenchmarkReadRate is the end-to-end rate through the reader: the kernel
// produces events as fast as BPF_PROG_TEST_RUN runs the hook on one CPU
// while the reader decodes them on another. ns/op is per event read.
func BenchmarkReadRate(b *testing.B) {
	tr, prog, frame := loadForReading(b)
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

// loadForReading loads a tracer with rings of 16 MiB for the reader's
// benchmarks, and the hop program and frame that fill them.
func loadForReading(b *testing.B) (*Tracer, *ebpf.Program, []byte) {
	testenv.RequireRoot(b)
	tr, err := Load(Options{RingBufferBytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close() })
	return tr, tr.coll.Programs["hop_ingress_legacy"], testFrame()
}
