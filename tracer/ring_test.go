package tracer

import (
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
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

// TestRingsInTimeOrder: events written to the rings of different CPUs, in
// turns, are read back all and in the order they happened, not ring by
// ring.
func TestRingsInTimeOrder(t *testing.T) {
	tr := load(t, Options{})
	cpus := runtime.NumCPU()
	if cpus < 2 {
		t.Log("one CPU: the order across rings is not exercised")
	}
	const n = 300
	for i := range n {
		f := flowFrame(i)
		binary.BigEndian.PutUint16(f[18:], uint16(i)) // IP ID: the event's number
		runHopOn(t, tr, i%cpus, f)
	}
	// Each run's skb is freed after it: a drop event may follow each hop.
	var r Record
	var last uint64
	for i := 0; i < n; {
		took, good := tr.readNow(&r)
		if !took || !good {
			t.Fatalf("after %d of %d hops: took %v, decoded %v", i, n, took, good)
		}
		ts := r.Drop.TimeNS
		if r.Kind == KindHop {
			if got := r.Hop.Pkt.IPID; got != uint32(i) {
				t.Fatalf("hop %d read as number %d: rings read out of time order", i, got)
			}
			ts = r.Hop.TimeNS
			i++
		}
		if ts < last {
			t.Fatalf("a %v at %d, before the event read before it (%d)", r.Kind, ts, last)
		}
		last = ts
	}
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
	// Hops on CPU 0: a known number of bytes of its small ring.
	const n = 100
	for i := range n {
		runHopOn(t, tr, 0, flowFrame(i))
	}
	unread := tr.Unread() // the hops, and drops of the runs' freed skbs
	size := float64(tr.ringMaps[0].MaxEntries())
	want := float64(unread) / size
	if peak, spilled := look(); spilled || peak != want {
		t.Fatalf("%d hops: peak %v spilled %v, want %v (%d of %v bytes) and none spilled", n, peak, spilled, want, unread, size)
	}
	if peak, spilled := look(); spilled || peak != want {
		t.Fatalf("a second look, nothing read: peak %v spilled %v, want %v again", peak, spilled, want)
	}
	// Fill CPU 0's small ring: the rest goes to its large ring.
	for i := 0; tr.Unread() < int(size)+4096; i++ {
		runHopOn(t, tr, 0, flowFrame(i))
		if i > 1<<16 {
			t.Fatalf("%d events: %d bytes unread of a %v-byte small ring", i, tr.Unread(), size)
		}
	}
	if _, spilled := look(); !spilled {
		t.Fatal("a full small ring: no events seen in the large one")
	}
	if _, spilled := look(); !spilled {
		t.Fatal("a second look: the large ring's events not seen")
	}
}
