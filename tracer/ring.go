package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// cpuRings reads the kernel's per-CPU ring buffers (events in
// bpf/hoptrace.c) as one stream in time order. Each CPU writes its events
// to its own ring, so CPUs that trace at once never wait for each other;
// the price is here: a look takes every ring's producer position once and
// then hands out the events below those positions, oldest first. An event
// committed after the look was timed after it (give or take the few
// nanoseconds between a hook reading the clock and reserving), so the
// stream is as ordered as one shared ring's was.
//
// The rings are read in place (memory mapped, as the kernel's ring buffer
// ABI lays them out): an event is decoded where it lies and its space given
// back after, without a copy or a system call per event.
//
// Each CPU has three: its fast ring (fast_ring in bpf/hoptrace.c, a plain
// ring in an array's memory that only the TC hooks write), the small ring
// behind it (a kernel ring buffer: the drops, and hops when the fast ring
// is full) and the large one (a flood). The fast rings and the small ones
// are the "small" rings below.
type cpuRings struct {
	mu     sync.Mutex // the look and the positions; held while an event is decoded
	rings  []cpuRing
	active []int // rings with an event to hand out in this look
	mapped [][]byte

	// The most found unread in one look since the reader last paced its
	// looks (pace.go): of a small ring, as a share of its size; and
	// whether a large ring had any.
	small   int // rings[:small] are the small rings
	peak    float64
	spilled bool

	life   sync.RWMutex // wait holds it shared: close unmaps only after
	closed atomic.Bool
	epfd   int // every ring's fd and evfd: a sleeping reader waits on all
	evfd   int // flush: interrupts a wait
}

// cpuRing is one CPU's ring. A kernel ring buffer is mapped as the kernel
// lays it out: the consumer page (ours to write), then the producer page
// and the data pages, mapped twice in a row so that no record wraps. A
// fast ring's records never wrap: the kernel fills the end with a
// discarded record instead.
type cpuRing struct {
	consPos *uint64
	prodPos *uint64
	data    []byte
	mask    uint64

	pos, end uint64 // in this look: the next record, the producer position
	ts       uint64 // time of the record at pos, when the ring is active
	n        int    // its sample length
}

// Ring buffer record header (kernel/bpf/ringbuf.c): a 32-bit length with a
// busy bit (reserved, not committed yet) and a discard bit, then the page
// offset; samples are padded to 8 bytes.
const (
	ringHdrLen     = 8
	ringBusyBit    = 1 << 31
	ringDiscardBit = 1 << 30
)

var errRingFlushed = errors.New("ring wait interrupted")

// Where the kernel time of each kind of event lies in its sample.
var (
	hopTimeOff  = int(unsafe.Offsetof(hoptraceHopEvent{}.Ts))
	dropTimeOff = int(unsafe.Offsetof(hoptraceDropEvent{}.Ts))
)

// fastRings is every CPU's fast ring: fast_pos and fast_ring of
// bpf/hoptrace.c, bytes of each CPU's value used.
type fastRings struct {
	pos, data *ebpf.Map
	cpus      int
	bytes     int
}

// Where a CPU's positions lie in its fast_pos value (struct fast_pos).
const (
	fastPosSize    = 128
	fastProdOff    = 0
	fastConsOff    = 64
	fastRingStride = 256 << 10 // FAST_RING_BYTES: a CPU's fast_ring value
)

// fastRecordMax is the largest record a hook writes to a fast ring: a
// hop_event with its snaplen bytes, after the record header.
func fastRecordMax(snaplen uint32) int {
	n := int(unsafe.Sizeof(hoptraceHopEvent{})) + int(min(snaplen, maxSnaplen))
	return ringHdrLen + (n+7)&^7
}

// orderedStores: this CPU makes a core's stores visible to the others in
// the order it made them (x86's total store order), so a hook can publish
// a record in a fast ring with a plain store of the producer position.
const orderedStores = runtime.GOARCH == "amd64" || runtime.GOARCH == "386"

// newCPURings maps the rings: fast's, then maps[:small] the small kernel
// rings and the rest the large ones.
func newCPURings(fast fastRings, maps []*ebpf.Map, small int) (r *cpuRings, err error) {
	r = &cpuRings{epfd: -1, evfd: -1, small: fast.cpus + small}
	defer func() {
		if err != nil {
			r.close()
			r = nil
		}
	}()
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return r, fmt.Errorf("epoll_create: %w", err)
	}
	if r.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return r, fmt.Errorf("eventfd: %w", err)
	}
	if err = r.watch(r.evfd); err != nil {
		return r, err
	}
	page := os.Getpagesize()
	if fast.cpus > 0 {
		if err := r.mapFast(fast, page); err != nil {
			return r, err
		}
	}
	for _, m := range maps {
		size := int(m.MaxEntries())
		cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return r, fmt.Errorf("map ring buffer consumer page: %w", err)
		}
		prod, err := unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			_ = unix.Munmap(cons)
			return r, fmt.Errorf("map ring buffer data: %w", err)
		}
		r.mapped = append(r.mapped, cons, prod)
		ring := cpuRing{
			consPos: (*uint64)(unsafe.Pointer(&cons[0])),
			prodPos: (*uint64)(unsafe.Pointer(&prod[0])),
			data:    prod[page:],
			mask:    uint64(size - 1),
		}
		ring.pos = atomic.LoadUint64(ring.consPos)
		ring.end = ring.pos
		r.rings = append(r.rings, ring)
		if err := r.watch(m.FD()); err != nil {
			return r, err
		}
	}
	return r, nil
}

// mapFast maps the fast rings and their positions.
func (r *cpuRings) mapFast(fast fastRings, page int) error {
	roundUp := func(n int) int { return (n + page - 1) / page * page }
	pos, err := unix.Mmap(fast.pos.FD(), 0, roundUp(fast.cpus*fastPosSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the fast rings' positions: %w", err)
	}
	r.mapped = append(r.mapped, pos)
	data, err := unix.Mmap(fast.data.FD(), 0, roundUp(fast.cpus*fastRingStride), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the fast rings: %w", err)
	}
	r.mapped = append(r.mapped, data)
	for cpu := range fast.cpus {
		p := pos[cpu*fastPosSize:]
		ring := cpuRing{
			consPos: (*uint64)(unsafe.Pointer(&p[fastConsOff])),
			prodPos: (*uint64)(unsafe.Pointer(&p[fastProdOff])),
			data:    data[cpu*fastRingStride : cpu*fastRingStride+fast.bytes],
			mask:    uint64(fast.bytes - 1),
		}
		ring.pos = atomic.LoadUint64(ring.consPos)
		ring.end = ring.pos
		r.rings = append(r.rings, ring)
	}
	return nil
}

func (r *cpuRings) watch(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// next returns the oldest event of this look and its ring, or false when
// the look is done. r.mu is held; the sample is valid until consume.
func (r *cpuRings) next() ([]byte, int, bool) {
	if len(r.active) == 0 {
		return nil, 0, false
	}
	best := r.active[0]
	for _, i := range r.active[1:] {
		if r.rings[i].ts < r.rings[best].ts {
			best = i
		}
	}
	rg := &r.rings[best]
	start := (rg.pos + ringHdrLen) & rg.mask
	return rg.data[start : start+uint64(rg.n)], best, true
}

// consume gives ring i's current record back to the kernel. r.mu is held.
func (r *cpuRings) consume(i int) {
	rg := &r.rings[i]
	rg.pos += ringHdrLen + uint64((rg.n+7)&^7)
	atomic.StoreUint64(rg.consPos, rg.pos)
	if !rg.head() {
		for k, a := range r.active {
			if a == i {
				r.active = append(r.active[:k], r.active[k+1:]...)
				break
			}
		}
	}
}

// look starts a look: every ring's producer position now. r.mu is held.
// It returns whether there is an event to hand out.
func (r *cpuRings) look() bool {
	if r.closed.Load() {
		return false
	}
	r.active = r.active[:0]
	for i := range r.rings {
		rg := &r.rings[i]
		rg.end = atomic.LoadUint64(rg.prodPos)
		if unread := rg.end - rg.pos; unread > 0 {
			if i < r.small {
				r.peak = max(r.peak, float64(unread)/float64(rg.mask+1))
			} else {
				r.spilled = true
			}
		}
		if rg.head() {
			r.active = append(r.active, i)
		}
	}
	return len(r.active) > 0
}

// fill returns and forgets what the looks found since it was last called
// (see peak). r.mu is held.
func (r *cpuRings) fill() (peak float64, spilled bool) {
	peak, spilled = r.peak, r.spilled
	r.peak, r.spilled = 0, false
	return peak, spilled
}

// head readies the record at pos: whether there is a committed one before
// end. Discarded records are skipped; a record still being written ends
// the ring's part in this look (the next look finds it committed).
func (rg *cpuRing) head() bool {
	for rg.pos < rg.end {
		start := rg.pos & rg.mask
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&rg.data[start])))
		if hdr&ringBusyBit != 0 {
			rg.end = rg.pos
			return false
		}
		n := int(hdr &^ (ringBusyBit | ringDiscardBit))
		if hdr&ringDiscardBit != 0 || n == 0 {
			rg.pos += ringHdrLen + uint64((n+7)&^7)
			atomic.StoreUint64(rg.consPos, rg.pos)
			continue
		}
		rg.n = n
		rg.ts = 0
		sample := rg.data[start+ringHdrLen : start+ringHdrLen+uint64(n)]
		off := hopTimeOff
		if Kind(sample[0]) == KindDrop {
			off = dropTimeOff
		}
		if off+8 <= n {
			rg.ts = binary.NativeEndian.Uint64(sample[off:])
		}
		return true
	}
	return false
}

// available is the number of bytes committed or reserved and not read,
// summed over the rings.
func (r *cpuRings) available() int {
	if r.closed.Load() {
		return 0
	}
	var n uint64
	for i := range r.rings {
		rg := &r.rings[i]
		n += atomic.LoadUint64(rg.prodPos) - atomic.LoadUint64(rg.consPos)
	}
	return int(n)
}

// wait blocks until a ring may have events (the kernel woke a ring), the
// deadline passes (os.ErrDeadlineExceeded), flush is called
// (errRingFlushed) or the rings are closed (ErrClosed).
func (r *cpuRings) wait(deadline time.Time) error {
	r.life.RLock()
	defer r.life.RUnlock()
	if r.closed.Load() {
		return ErrClosed
	}
	var evs [4]unix.EpollEvent
	for {
		ms := -1
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return os.ErrDeadlineExceeded
			}
			ms = int((d + time.Millisecond - 1) / time.Millisecond)
		}
		n, err := unix.EpollWait(r.epfd, evs[:], ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if r.closed.Load() {
			return ErrClosed
		}
		if n == 0 {
			return os.ErrDeadlineExceeded
		}
		for _, ev := range evs[:n] {
			if int(ev.Fd) == r.evfd {
				var b [8]byte
				_, _ = unix.Read(r.evfd, b[:])
				return errRingFlushed
			}
		}
		return nil
	}
}

// flush interrupts a wait.
func (r *cpuRings) flush() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, err := unix.Write(r.evfd, one[:])
	return err
}

// close wakes a waiter and unmaps the rings once no one reads them.
func (r *cpuRings) close() error {
	if r.closed.Swap(true) {
		return nil
	}
	if r.evfd >= 0 {
		_ = r.flush()
	}
	r.life.Lock()
	defer r.life.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, m := range r.mapped {
		errs = append(errs, unix.Munmap(m))
	}
	r.rings, r.active, r.mapped = nil, nil, nil
	for _, fd := range []int{r.epfd, r.evfd} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	return errors.Join(errs...)
}
