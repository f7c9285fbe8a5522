package tracer

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// runHopOn runs the ingress hop program once on frame, on CPU cpu: its
// event goes to that CPU's ring.
func runHopOn(t *testing.T, tr *Tracer, cpu int, frame []byte) {
	t.Helper()
	prog := tr.coll.Programs["hop_ingress_tcx"]
	if prog == nil {
		prog = tr.coll.Programs["hop_ingress_legacy"]
	}
	var err error
	onCPU(cpu, func() { _, err = prog.Run(&ebpf.RunOptions{Data: frame}) })
	if err != nil {
		t.Fatal(err)
	}
}

// writeNumberedHops writes n hops to the rings of the CPUs in turn, each
// numbered by its IP ID. Each run's skb is freed after it: a drop event may
// follow each hop.
func writeNumberedHops(t *testing.T, tr *Tracer, n int) {
	t.Helper()
	cpus := runtime.NumCPU()
	for i := range n {
		f := flowFrame(i)
		binary.BigEndian.PutUint16(f[18:], uint16(i)) // IP ID: the event's number
		runHopOn(t, tr, i%cpus, f)
	}
}

// inOrder checks events read back from writeNumberedHops: hops in their
// numbers' order, every event no older than the one before it.
type inOrder struct {
	hops int
	last uint64
}

func (o *inOrder) see(t *testing.T, r *Record) {
	t.Helper()
	ts := r.Drop.TimeNS
	if r.Kind == KindHop {
		if got := r.Hop.Pkt.IPID; got != uint32(o.hops) {
			t.Fatalf("hop %d read as number %d: rings read out of time order", o.hops, got)
		}
		ts = r.Hop.TimeNS
		o.hops++
	}
	if ts < o.last {
		t.Fatalf("a %v at %d, before the event read before it (%d)", r.Kind, ts, o.last)
	}
	o.last = ts
}

// readRest reads what is left after the n hops (their skbs' drops) and
// checks that the rings are then empty.
func readRest(t *testing.T, tr *Tracer, n int) {
	t.Helper()
	var r Record
	for {
		took, _ := tr.readNow(&r)
		if !took {
			break
		}
		if r.Kind == KindHop {
			t.Errorf("a hop more than the %d made", n)
		}
	}
	if tr.Unread() != 0 {
		t.Errorf("%d bytes unread after reading every event", tr.Unread())
	}
}

// TestRingsInTimeOrder: events written to the rings of different CPUs, in
// turns, are read back all and in the order they happened, not ring by
// ring.
func TestRingsInTimeOrder(t *testing.T) {
	tr := load(t, Options{})
	if runtime.NumCPU() < 2 {
		t.Log("one CPU: the order across rings is not exercised")
	}
	const n = 300
	writeNumberedHops(t, tr, n)
	var r Record
	var o inOrder
	for o.hops < n {
		took, good := tr.readNow(&r)
		if !took || !good {
			t.Fatalf("after %d of %d hops: took %v, decoded %v", o.hops, n, took, good)
		}
		o.see(t, &r)
	}
	readRest(t, tr, n)
}

// TestRingsWakeSleepingReader: a sleeping reader is woken by an event on
// any CPU's ring, not only by one ring's.
func TestRingsWakeSleepingReader(t *testing.T) {
	tr := load(t, Options{})
	tr.idle.after, tr.idle.check = 20*time.Millisecond, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ids := make(chan uint32, 16)
	go func() {
		var r Record
		for tr.ReadInto(ctx, &r) == nil {
			if r.Kind == KindHop {
				ids <- r.Hop.Pkt.IPID
			}
		}
	}()
	for cpu := range runtime.NumCPU() {
		waitAsleep(t, tr)
		f := flowFrame(cpu)
		binary.BigEndian.PutUint16(f[18:], uint16(1000+cpu))
		runHopOn(t, tr, cpu, f)
		select {
		case id := <-ids:
			if id != uint32(1000+cpu) {
				t.Fatalf("woken on cpu %d by event %d", cpu, id)
			}
		case <-time.After(30 * time.Second):
			// Asleep, the reader would look again only in an hour.
			t.Fatalf("an event on cpu %d did not wake the sleeping reader", cpu)
		}
	}
}

// TestCPURingBytes: by default the rings share 16 MiB, each between 2 and
// 4 MiB; a size asked for is each ring's, a power of two of at least a page.
func TestCPURingBytes(t *testing.T) {
	const mib = 1 << 20
	page := os.Getpagesize()
	for _, c := range []struct{ asked, cpus, want int }{
		{0, 1, 4 * mib}, {0, 2, 4 * mib}, {0, 4, 4 * mib}, {0, 8, 2 * mib}, {0, 64, 2 * mib}, {0, 6, 4 * mib},
		{1, 2, page}, {3 * mib, 2, 4 * mib}, {16 * mib, 64, 16 * mib},
	} {
		if got := cpuRingBytes(c.asked, c.cpus); got != c.want {
			t.Errorf("cpuRingBytes(%d, %d cpus) = %d, want %d", c.asked, c.cpus, got, c.want)
		}
	}
}

// TestRingsFill: a look measures the busiest small ring's unread share and
// sees events in a large ring; fill reports them once.
func TestRingsFill(t *testing.T) {
	tr := load(t, Options{RingBufferBytes: 1 << 20})
	look := func() (float64, bool) {
		tr.rings.mu.Lock()
		defer tr.rings.mu.Unlock()
		tr.rings.look()
		return tr.rings.fill()
	}
	if peak, spilled := look(); peak != 0 || spilled {
		t.Fatalf("empty rings: peak %v spilled %v", peak, spilled)
	}
	// Hops on CPU 0 go to its fast ring, the drops of the runs' freed
	// skbs to its small kernel ring: a known number of bytes of each.
	const n = 100
	for i := range n {
		runHopOn(t, tr, 0, flowFrame(i))
	}
	cpus := len(tr.ringMaps) / 2
	fast, small := &tr.rings.rings[0], &tr.rings.rings[cpus]
	share := func(rg *cpuRing) float64 {
		return float64(*rg.prodPos-*rg.consPos) / float64(rg.mask+1)
	}
	if *fast.prodPos < n*56 {
		t.Fatalf("%d hops: %d bytes in CPU 0's fast ring", n, *fast.prodPos)
	}
	want := max(share(fast), share(small))
	if peak, spilled := look(); spilled || peak != want {
		t.Fatalf("%d hops: peak %v spilled %v, want %v and none spilled", n, peak, spilled, want)
	}
	if peak, spilled := look(); spilled || peak != want {
		t.Fatalf("a second look, nothing read: peak %v spilled %v, want %v again", peak, spilled, want)
	}
	// Fill CPU 0's fast ring and its small ring: the rest goes to its
	// large ring.
	size := int(fast.mask+1) + int(small.mask+1)
	for i := 0; tr.Unread() < size+4096; i++ {
		runHopOn(t, tr, 0, flowFrame(i))
		if i > 1<<16 {
			t.Fatalf("%d events: %d bytes unread of %d in the fast and small rings", i, tr.Unread(), size)
		}
	}
	if _, spilled := look(); !spilled {
		t.Fatal("full fast and small rings: no events seen in the large one")
	}
	if _, spilled := look(); !spilled {
		t.Fatal("a second look: the large ring's events not seen")
	}
}

// TestFastRingWraps: a CPU's hops go round its fast ring several times
// while the reader keeps up, each record whole (the end of the ring is
// skipped where one would not fit), none lost and none sent to the large
// ring, and all read back in order.
func TestFastRingWraps(t *testing.T) {
	tr := load(t, Options{RingBufferBytes: 64 << 10, countHookCalls: true})
	cpus := len(tr.ringMaps) / 2
	fast := &tr.rings.rings[0]
	size := fast.mask + 1
	// Bytes of 1 where nothing was written yet: a record read at the
	// wrong place would be a hop (kind 1) of nonsense or too long.
	ones := bytes.Repeat([]byte{1}, fastRingStride)
	if err := tr.coll.Maps["fast_ring"].Update(uint32(0), ones, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var r Record
	var hops, last uint64
	read := func() {
		for tr.Unread() > 0 {
			if err := tr.ReadInto(ctx, &r); err != nil {
				t.Fatal(err)
			}
			if r.Kind != KindHop {
				continue
			}
			if r.Hop.TimeNS < last {
				t.Fatalf("hop at %d after one at %d", r.Hop.TimeNS, last)
			}
			last = r.Hop.TimeNS
			hops++
		}
	}
	runs := 0
	for *fast.prodPos < 3*size {
		// A few hundred runs at a time, well under a ring's worth.
		for range 200 {
			runHopOn(t, tr, 0, flowFrame(runs))
			runs++
		}
		read()
	}
	read()
	loss, err := tr.Loss()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d runs, %d hops read; %d bytes through a %d-byte fast ring", runs, hops, *fast.prodPos, size)
	if loss.Hops != 0 || hops != uint64(runs) {
		t.Errorf("%d runs: read %d hops, lost %d", runs, hops, loss.Hops)
	}
	if n := tr.skipped.Load(); n != 0 {
		t.Errorf("%d records read that were no event", n)
	}
	tr.rings.mu.Lock()
	defer tr.rings.mu.Unlock()
	for i, rg := range tr.rings.rings[2*cpus:] { // after the fast and small rings
		if rg.pos != 0 {
			t.Errorf("%d bytes went to CPU %d's large ring", rg.pos, i)
		}
	}
}

// TestFastRingLayout: the reader's idea of struct fast_pos and of a CPU's
// fast_ring value is the program's.
func TestFastRingLayout(t *testing.T) {
	spec, err := loadHoptrace()
	if err != nil {
		t.Fatal(err)
	}
	pos := spec.Maps["fast_pos"]
	if pos.ValueSize != fastPosSize {
		t.Errorf("struct fast_pos: %d bytes, the reader takes %d", pos.ValueSize, fastPosSize)
	}
	st, ok := btf.UnderlyingType(pos.Value).(*btf.Struct)
	if !ok {
		t.Fatalf("fast_pos's value is a %T", pos.Value)
	}
	offsets := map[string]int{}
	for _, m := range st.Members {
		offsets[m.Name] = int(m.Offset.Bytes())
	}
	if offsets["prod"] != fastProdOff || offsets["cons"] != fastConsOff {
		t.Errorf("prod at %d and cons at %d, the reader takes %d and %d", offsets["prod"], offsets["cons"], fastProdOff, fastConsOff)
	}
	if n := spec.Maps["fast_ring"].ValueSize; n != fastRingStride {
		t.Errorf("a CPU's fast_ring value: %d bytes, the reader takes %d", n, fastRingStride)
	}
	if smallRingBytes > fastRingStride {
		t.Errorf("the fast ring would be %d bytes, in a value of %d", smallRingBytes, fastRingStride)
	}
}
