package tracer

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
)

// The reader's two modes. Busy, the kernel submits events without waking
// anyone and the reader looks at the ring every drain interval, which
// batches events (a wakeup per event would cost more than the event).
// Idle, after sleepAfter of empty looks, the reader asks the kernel to wake
// it (reader_asleep) and sleeps: a tracer with nothing to read stays off the
// CPUs. On a VM a process that wakes 100 times a second costs the traced
// traffic several percent by itself, more than the hooks (docs/BENCHMARKS.md).
const (
	// sleepAfter of empty ring: the reader sleeps until woken.
	sleepAfter = 200 * time.Millisecond
	// sleepCheck bounds a sleep: a wakeup lost to the race below costs at
	// most this much delay, never a hang.
	sleepCheck = 2 * time.Second
)

// idleReader is the reader's sleep state; its methods are called from
// ReadInto, possibly by several goroutines.
type idleReader struct {
	asleepMap *ebpf.Map     // reader_asleep; nil: never sleep
	after     time.Duration // sleepAfter
	check     time.Duration // sleepCheck
	asleep    atomic.Bool
	seen      atomic.Bool // an event was read since the last empty look

	mu         sync.Mutex
	emptySince time.Time // first empty look of the current idle spell
	stopWake   func() bool
	sleepCtx   context.Context
	fence      atomic.Uint32
}

// empty is called when a look found the ring empty. It returns the next
// deadline: a drain interval away while busy, r.check away asleep.
// flush interrupts a sleep (the ring reader's Flush); it is called when
// ctx ends.
func (r *idleReader) empty(ctx context.Context, drain time.Duration, available func() int, flush func() error) time.Time {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.asleep.Load() {
		if r.sleepCtx != ctx { // a new caller: its ctx must end the sleep
			r.watch(ctx, flush)
		}
		return now.Add(r.check)
	}
	if r.seen.Swap(false) || r.emptySince.IsZero() {
		r.emptySince = now
	}
	if r.asleepMap == nil || now.Sub(r.emptySince) < r.after {
		return now.Add(drain)
	}
	if r.asleepMap.Put(uint32(0), uint32(1)) != nil {
		return now.Add(drain)
	}
	// The flag is stored before the ring is looked at again (a locked
	// instruction orders them): an event reserved before the kernel read
	// the flag is seen here, and one reserved after it wakes us. The
	// kernel reads the flag after its reservation without a full barrier,
	// so in a window of nanoseconds a wakeup can still be missed; then
	// sleepCheck bounds the delay.
	r.fence.Add(1)
	if available() > 0 {
		_ = r.asleepMap.Put(uint32(0), uint32(0))
		return now
	}
	r.asleep.Store(true)
	r.watch(ctx, flush)
	return now.Add(r.check)
}

// watch makes ctx's end interrupt the sleep. r.mu is held.
func (r *idleReader) watch(ctx context.Context, flush func() error) {
	if r.stopWake != nil {
		r.stopWake()
	}
	r.sleepCtx = ctx
	r.stopWake = context.AfterFunc(ctx, func() { _ = flush() })
}

// event is called for every event read. It ends a sleep: the reader looks
// every drain interval again, and the kernel stops waking it.
func (r *idleReader) event() {
	if !r.seen.Load() {
		r.seen.Store(true)
	}
	if !r.asleep.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.asleep.Load() {
		return
	}
	_ = r.asleepMap.Put(uint32(0), uint32(0))
	r.asleep.Store(false)
	if r.stopWake != nil {
		r.stopWake()
		r.stopWake, r.sleepCtx = nil, nil
	}
}
