package tracer

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// sleepingReader loads a tracer on a two-host topology whose reader falls
// asleep after 20ms of empty ring and then looks again only after an hour:
// an event read while it sleeps came through the kernel's wakeup.
func sleepingReader(t *testing.T, opts Options) (*Tracer, *testenv.Topology) {
	t.Helper()
	topo := testenv.NewTopology(t, 2)
	tr := load(t, opts)
	tr.idle.after, tr.idle.check = 20*time.Millisecond, time.Hour
	attachAll(t, tr, topo)
	return tr, topo
}

// waitAsleep waits until the reader sleeps, with the kernel asked to wake it.
// The topology's own packets (IPv6 router solicitations and the like) may
// wake it between the two looks, so it waits for both to hold at once: the
// reader asleep before and after the kernel's flag was read as set.
func waitAsleep(t *testing.T, tr *Tracer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	everAsleep := false
	for {
		if tr.idle.asleep.Load() {
			everAsleep = true
			if readerAsleepFlag(t, tr) == 1 && tr.idle.asleep.Load() {
				return
			}
		}
		if time.Now().After(deadline) {
			if everAsleep {
				t.Fatal("reader asleep, but reader_asleep never 1 in the kernel meanwhile")
			}
			t.Fatal("the reader never fell asleep on an empty ring")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readerAsleepFlag(t *testing.T, tr *Tracer) uint32 {
	t.Helper()
	var v uint32
	if err := tr.coll.Maps["reader_asleep"].Lookup(uint32(0), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestIdleReaderWokenByEvent(t *testing.T) {
	allModes(t, func(t *testing.T, opts Options) {
		tr, topo := sleepingReader(t, opts)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ports := make(chan uint16, 16)
		go func() {
			var rec Record
			for tr.ReadInto(ctx, &rec) == nil {
				if rec.Kind == KindHop && rec.Hop.Pkt.Layers.Has(event.LayerUDP) {
					ports <- rec.Hop.Pkt.DstPort
				}
			}
		}()
		// waitPort waits for a hop of the datagram to port, ignoring what
		// else the topology sends (IPv6 router solicitations and the like).
		waitPort := func(port uint16, why string) {
			t.Helper()
			timeout := time.After(30 * time.Second)
			for {
				select {
				case p := <-ports:
					if p == port {
						return
					}
				case <-timeout:
					t.Fatal(why)
				}
			}
		}
		a, b := topo.Hosts[0], topo.Hosts[1]
		send := func(port int) {
			udpTo(t, a, net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.IP, uint16(port))), []byte("wake up"), 1, 0)
		}

		waitAsleep(t, tr)
		// Once woken, it is not to fall asleep again in this test.
		tr.idle.mu.Lock()
		tr.idle.after = time.Hour
		tr.idle.mu.Unlock()
		send(9)
		// Asleep, the reader would look again only in an hour.
		waitPort(9, "a sleeping reader was not woken by an event")
		if tr.idle.asleep.Load() {
			t.Fatal("the reader still counts as asleep after reading an event")
		}
		if v := readerAsleepFlag(t, tr); v != 0 {
			t.Errorf("reader_asleep is %d after the reader woke: every event would wake it", v)
		}
		// Awake, it must look at the ring every drain interval: events
		// come without wakeups now.
		send(10)
		waitPort(10, "after a wakeup the reader stopped looking at the ring")
	})
}

func TestIdleReaderStopsOnCancel(t *testing.T) {
	tr, _ := sleepingReader(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		var rec Record
		for {
			if err := tr.ReadInto(ctx, &rec); err != nil {
				got <- err
				return
			}
		}
	}()
	waitAsleep(t, tr)
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ReadInto returned %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cancelling the context did not end a sleeping ReadInto")
	}
}

func TestIdleReaderStopsOnClose(t *testing.T) {
	tr, _ := sleepingReader(t, Options{})
	got := make(chan error, 1)
	go func() {
		var rec Record
		for {
			if err := tr.ReadInto(context.Background(), &rec); err != nil {
				got <- err
				return
			}
		}
	}()
	waitAsleep(t, tr)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("ReadInto returned %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("closing the tracer did not end a sleeping ReadInto")
	}
}
