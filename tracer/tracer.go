package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/tracer/filter"

	"github.com/hoptrace/hoptrace/tracer/nsio"
)

// Errors Load can return, for errors.Is.
var (
	// ErrPermission: the process may not load BPF programs.
	ErrPermission = errors.New("not permitted: run as root, or with CAP_SYS_ADMIN and CAP_NET_ADMIN (see the README's Privileges)")
	// ErrNoBTF: the kernel has no BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF).
	ErrNoBTF = errors.New("kernel has no BTF (needs CONFIG_DEBUG_INFO_BTF=y)")
	// ErrClosed: the tracer was closed; readers get it once the ring is drained.
	ErrClosed = errors.New("tracer closed")
)

const (
	defaultRingBytes = 16 << 20 // shared out among the CPUs' rings
	minCPURingBytes  = 2 << 20  // by default: a CPU alone can flood its ring
	maxCPURingBytes  = 4 << 20
	// Each CPU's fast ring and its small ring in front of its ring
	// (fast_ring, events and spill in bpf/hoptrace.c), each this size at
	// most: the reader empties them before they are half full
	// (pace.go), so it holds what a CPU sends between two looks unless it
	// floods (W3 of make bench: about 30 KiB a CPU in 10ms), and it stays
	// in the caches.
	smallRingBytes  = 256 << 10
	defaultInFlight = 8192    // per CPU
	maxTableEntries = 1 << 18 // about 32 MiB of kernel memory
	maxFlightSlots  = 1024    // FLIGHT_SLOTS in bpf/hoptrace.c: per CPU, about 120 KiB
	defaultDrain    = 10 * time.Millisecond
	maxSnaplen      = 1536 // MAX_SNAPLEN in bpf/hoptrace.c
)

// MaxSnaplen is the most packet bytes a hop can carry (Options.Snaplen).
const MaxSnaplen = maxSnaplen

// Options configure Load. The zero value is a good default.
type Options struct {
	// Snaplen is how many leading packet bytes each hop carries (0: none,
	// at most 1536).
	Snaplen uint32
	// ForceLegacy attaches with clsact + cls_bpf even where TCX works.
	ForceLegacy bool
	// RingBufferBytes is the size of each CPU's ring buffer, rounded up to
	// a power of two of at least a page (0: 16 MiB shared out among the
	// CPUs, at least 2 and at most 4 MiB each). In front of it each CPU has
	// a fast ring and a small ring of 256 KiB each (no larger than the
	// ring) that events go to first.
	RingBufferBytes int
	// DrainInterval is how often, at least, the reader looks at the ring
	// buffers when it found them empty: the kernel submits without wakeups
	// (0: 10ms). While they fill slowly the looks go up to 4 times as far
	// apart (pace.go). After 200ms of empty looks the reader sleeps until
	// the kernel wakes it.
	DrainInterval time.Duration
	// Filter, compiled by filter.Compile, is evaluated in the kernel at a
	// packet's first hook; packets it rejects make no hops and no drops and
	// cost no table entry (nil: every packet). A packet keeps the decision
	// of its first hook while it is tracked; a rejected one is looked at
	// again at each hook, so one NAT rewrites to match is traced from there.
	Filter *filter.Program
	// InFlightPerCPU is how many packets each CPU can keep track of between
	// their first and last traced hooks (0: 8192, about 8ms of a CPU
	// forwarding a million packets a second). Past it the oldest are
	// forgotten, which Loss counts.
	InFlightPerCPU int
	// Aggregate makes the hooks count into latency histograms and drop
	// counters in the kernel (read by Aggregates) instead of sending
	// events: `hoptrace serve`. ReadInto then delivers nothing.
	Aggregate bool
	// TimedPerCPU is how many new packets a second each CPU times into
	// Aggregate's latency histograms one by one (0: every packet), a
	// budget that grows with time and saves up at most 4 ms of it. Past
	// it a CPU times one packet in TimeOneIn and counts it TimeOneIn
	// times, so the histograms estimate every packet; the packet counts
	// stay exact. The histogram updates of
	// timing were a third of what an aggregating hook cost.
	TimedPerCPU int
	// TimeOneIn is the sampling past TimedPerCPU (0 or 1: none past it).
	TimeOneIn int

	// countHookCalls makes the hooks count every invocation (tests).
	countHookCalls bool
	// noSkbKey loads as on a kernel without bpf_cast_to_kern_ctx (tests).
	noSkbKey bool
	// interpretFilter keeps filter_match's interpreter instead of the
	// filter's own code (filtercode.go), to compare the two (tests).
	interpretFilter bool
}

// serve's timing: each CPU times DefaultTimedPerCPU new packets a second
// one by one and one in DefaultTimeOneIn past that, at least 120000 timed
// packets a minute, where a p99 needs a few thousand. A 1-byte
// request-response between two containers sends ~20000 new packets a
// second on each CPU: with a budget above that (it was 16000) every one
// was timed, which costs a clock read and a histogram update at each hook.
const (
	DefaultTimedPerCPU = 2000
	DefaultTimeOneIn   = 8
)

// Features are what the running kernel offers hoptrace.
type Features struct {
	// TCX: TC programs attach through BPF links (kernel >= 6.6).
	TCX bool
	// SkbKey: bpf_cast_to_kern_ctx gives each hop the kernel skb address
	// (kernel >= 6.3). Without it hops are joined by content only.
	SkbKey bool
	// Drops: the tp_btf/kfree_skb tracepoint with drop reasons (kernel >= 5.17).
	Drops bool
}

func (f Features) String() string {
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	return fmt.Sprintf("tcx=%s skb-key=%s drops=%s", yn(f.TCX), yn(f.SkbKey), yn(f.Drops))
}

// Tracer owns the loaded BPF objects, the attachments and the reader.
type Tracer struct {
	opts     Options
	features Features
	spec     *ebpf.CollectionSpec // for per-netns copies without kern ctx
	coll     *ebpf.Collection
	hostIno  uint32
	reasons  map[uint32]string
	rings    *cpuRings
	skipped  atomic.Uint64 // records read and not delivered: a kind not known, too short, a compact hop without its headers
	ringMaps []*ebpf.Map   // each CPU's small kernel ring (events map), then each CPU's ring (spill map); rings has the fast rings too
	drop     closer        // the kfree_skb link, nil without drops
	pacer    pacer         // the pause between looks (pace.go); under rings.mu
	idle     idleReader
	headers  *headerCache // compact hops' headers (headers.go); under rings.mu
	clock    Clock

	mu       sync.Mutex
	hopColls map[hopCollKey]*ebpf.Collection // more hop programs: see hopPrograms
	attached map[ifaceKey]*attachment
	// hookFlagsOf mirrors the hook flags in the kernel (hookflags.go).
	hookFlagsOf map[hoptraceHookKey]uint32
	order       []ifaceKey // attach order, detached in reverse
	closed      bool
}

type closer interface{ Close() error }

// Load checks the kernel, loads the BPF programs and maps and starts the
// drop tracepoint. Interfaces are added with Attach.
func Load(opts Options) (t *Tracer, err error) {
	if opts.Snaplen > maxSnaplen {
		return nil, fmt.Errorf("snaplen %d: at most %d", opts.Snaplen, maxSnaplen)
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w: %w", ErrPermission, err)
	}
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("load kernel btf: %w: %w", ErrNoBTF, err)
	}
	feat := probeFeatures(kspec)
	if opts.noSkbKey {
		feat.SkbKey = false
	}

	spec, err := loadHoptrace()
	if err != nil {
		return nil, fmt.Errorf("parse bpf objects: %w", err)
	}
	hostIno, err := netnsInode("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count cpus: %w", err)
	}
	ringBytes := cpuRingBytes(opts.RingBufferBytes, cpus)
	spec.Maps["events"].MaxEntries = uint32(cpus)
	spec.Maps["events"].InnerMap.MaxEntries = uint32(min(smallRingBytes, ringBytes))
	spec.Maps["spill"].MaxEntries = uint32(cpus)
	spec.Maps["spill"].InnerMap.MaxEntries = uint32(ringBytes)
	fastBytes := min(smallRingBytes, ringBytes)
	spec.Maps["fast_pos"].MaxEntries = uint32(cpus)
	spec.Maps["fast_ring"].MaxEntries = uint32(cpus)
	spec.Maps["seen_pkts"].MaxEntries = tableEntries(cpus, opts.InFlightPerCPU)
	slots := flightSlots(opts.InFlightPerCPU)
	spec.Maps["flights"].MaxEntries = slots
	for name, v := range map[string]any{
		"snaplen":          opts.Snaplen,
		"have_kern_ctx":    feat.SkbKey,
		"attach_netns_ino": hostIno,
		"count_hook_calls": opts.countHookCalls,
		"flight_mask":      slots - 1,
		"nr_cpus":          uint32(cpus),
		"fast_bytes":       uint32(fastBytes),
		"fast_room":        uint32(fastBytes - fastRecordMax(opts.Snaplen)),
		"ordered_stores":   orderedStores,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	if err := setFilter(spec, opts.Filter); err != nil {
		return nil, err
	}
	if !opts.interpretFilter {
		if err := inlineFilter(spec, opts.Filter); err != nil {
			return nil, err
		}
	}
	if err := setAggregate(spec, opts); err != nil {
		return nil, err
	}
	if !feat.Drops {
		delete(spec.Programs, "drop")
	}
	if !feat.TCX || opts.ForceLegacy {
		delete(spec.Programs, "hop_ingress_tcx")
		delete(spec.Programs, "hop_egress_tcx")
	}

	// The underlay programs are verified when an underlay is attached,
	// not at every start: they cost more than all the others together.
	main := spec.Copy()
	for name := range main.Programs {
		if strings.HasPrefix(name, underlayPrefix) {
			delete(main.Programs, name)
		}
	}
	coll, err := newCollection(main, nil)
	if err != nil {
		return nil, err
	}
	t = &Tracer{
		opts: opts, features: feat, spec: spec, coll: coll, hostIno: hostIno,
		pacer: newPacer(opts.DrainInterval), clock: NewClock(), headers: newHeaderCache(cpus),
		hopColls: map[hopCollKey]*ebpf.Collection{}, attached: map[ifaceKey]*attachment{},
		hookFlagsOf: map[hoptraceHookKey]uint32{},
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
		}
	}()
	if feat.Drops {
		t.reasons = dropReasons(kspec)
		l, err := attachDrop(coll.Programs["drop"])
		if err != nil {
			return t, err
		}
		t.drop = l
	}
	for _, outer := range []string{"events", "spill"} {
		for cpu := range cpus {
			m, err := ebpf.NewMap(spec.Maps[outer].InnerMap)
			if err != nil {
				return t, fmt.Errorf("create ring buffer of cpu %d: %w", cpu, err)
			}
			t.ringMaps = append(t.ringMaps, m)
			if err := coll.Maps[outer].Put(uint32(cpu), m); err != nil {
				return t, fmt.Errorf("add ring buffer of cpu %d: %w", cpu, err)
			}
		}
	}
	fast := fastRings{pos: coll.Maps["fast_pos"], data: coll.Maps["fast_ring"], cpus: cpus, bytes: fastBytes}
	if t.rings, err = newCPURings(fast, t.ringMaps, cpus); err != nil {
		return t, fmt.Errorf("open ring buffers: %w", err)
	}
	t.idle = idleReader{asleepMap: coll.Maps["reader_asleep"], after: sleepAfter, check: sleepCheck}
	return t, nil
}

// setFilter writes a compiled filter into the programs' load-time constants.
func setFilter(spec *ebpf.CollectionSpec, f *filter.Program) error {
	if f == nil {
		return nil
	}
	if len(f.Clauses) > filter.MaxClauses {
		return fmt.Errorf("filter %q: %w: %d clauses, at most %d", f.Expr, filter.ErrTooComplex, len(f.Clauses), filter.MaxClauses)
	}
	var lens [filter.MaxClauses]uint8
	var preds [filter.MaxClauses][filter.MaxPreds]hoptraceFilterPred
	for c, clause := range f.Clauses {
		if len(clause) > filter.MaxPreds {
			return fmt.Errorf("filter %q: %w: %d conditions in a clause, at most %d", f.Expr, filter.ErrTooComplex, len(clause), filter.MaxPreds)
		}
		lens[c] = uint8(len(clause))
		for i, p := range clause {
			k := &preds[c][i]
			k.Field, k.Layers, k.Lo, k.Hi = uint8(p.Field), uint16(p.Layers), p.Lo, p.Hi
			if p.Not {
				k.Negate = 1
			}
			for w := range 4 {
				// Words in memory order, as the kernel loads them.
				k.Val[w] = binary.NativeEndian.Uint32(p.Addr[4*w:])
				k.Mask[w] = binary.NativeEndian.Uint32(p.Mask[4*w:])
			}
		}
	}
	for name, v := range map[string]any{
		"filter_on":         true,
		"filter_nclauses":   uint32(len(f.Clauses)),
		"filter_clause_len": lens,
		"filter_preds":      preds,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// newCollection loads spec and explains the usual failures.
func newCollection(spec *ebpf.CollectionSpec, replace map[string]*ebpf.Map) (*ebpf.Collection, error) {
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replace})
	if err == nil {
		return coll, nil
	}
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		return nil, fmt.Errorf("load bpf programs: verifier rejected: %w\n%+v", err, ve)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return nil, fmt.Errorf("load bpf objects: %w: %w", ErrPermission, err)
	}
	return nil, fmt.Errorf("load bpf objects: %w", err)
}

// probeFeatures reads the kernel's abilities from its BTF, which loads
// nothing and attaches nothing.
func probeFeatures(k *btf.Spec) Features {
	var f Features
	var attachType *btf.Enum
	if err := k.TypeByName("bpf_attach_type", &attachType); err == nil {
		for _, v := range attachType.Values {
			if v.Name == "BPF_TCX_INGRESS" {
				f.TCX = true
			}
		}
	}
	var fn *btf.Func
	f.SkbKey = k.TypeByName("bpf_cast_to_kern_ctx", &fn) == nil
	var tp *btf.Typedef
	var reason *btf.Enum
	f.Drops = k.TypeByName("btf_trace_kfree_skb", &tp) == nil && k.TypeByName("skb_drop_reason", &reason) == nil
	return f
}

// dropReasons maps enum skb_drop_reason values to names without the prefix.
func dropReasons(k *btf.Spec) map[uint32]string {
	m := map[uint32]string{}
	var e *btf.Enum
	if err := k.TypeByName("skb_drop_reason", &e); err != nil {
		return m
	}
	for _, v := range e.Values {
		m[uint32(v.Value)] = strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")
	}
	return m
}

// ReasonName is the kernel's name for a drop reason code, without the
// SKB_DROP_REASON_ prefix, or "reason(N)" when the kernel does not name it.
func (t *Tracer) ReasonName(code uint32) string {
	if n, ok := t.reasons[code]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", code)
}

// tableEntries sizes the packet table: perCPU packets for each possible CPU
// (each CPU evicts only from its own share), within bounds.
func tableEntries(cpus, perCPU int) uint32 {
	if perCPU <= 0 {
		perCPU = defaultInFlight
	}
	n := max(cpus, 1) * perCPU
	return uint32(min(n, maxTableEntries))
}

// flightSlots sizes each CPU's slots for packets in flight (flights in the
// kernel): a power of two, at most maxFlightSlots, no more than perCPU.
func flightSlots(perCPU int) uint32 {
	n := uint32(maxFlightSlots)
	for perCPU > 0 && n > 1 && int(n) > perCPU {
		n /= 2
	}
	return n
}

// cpuRingBytes sizes each CPU's ring: n (Options.RingBufferBytes), or by
// default defaultRingBytes shared out, within [minCPURingBytes,
// maxCPURingBytes]: the reader drains every 10ms, and one CPU flooding
// alone must not find its ring full before that (1 MiB lost 8-20% of
// `record -s 128`'s hops under W2 of make bench, 4 MiB none).
func cpuRingBytes(n, cpus int) int {
	if n <= 0 {
		n = min(max(defaultRingBytes/max(cpus, 1), minCPURingBytes), maxCPURingBytes)
	}
	return roundRing(n)
}

func roundRing(n int) int {
	page := os.Getpagesize()
	if n < page {
		n = page
	}
	return 1 << bits.Len(uint(n-1))
}

func netnsInode(path string) (uint32, error) {
	ino, err := nsio.PathIno(path)
	if err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", path, err)
	}
	return ino, nil
}

// Features reports what the kernel offers, as found by Load.
func (t *Tracer) Features() Features { return t.features }

// Clock converts the kernel monotonic times of events to wall time.
func (t *Tracer) Clock() Clock { return t.clock }

// Close detaches every interface, stops the drop tracepoint and frees the
// BPF objects. Readers blocked in Read return ErrClosed.
func (t *Tracer) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	var errs []error
	for i := len(t.order) - 1; i >= 0; i-- {
		if a := t.attached[t.order[i]]; a != nil {
			errs = append(errs, a.detach())
		}
	}
	t.attached, t.order = nil, nil
	t.mu.Unlock()

	if t.drop != nil {
		errs = append(errs, t.drop.Close())
	}
	if t.rings != nil {
		errs = append(errs, t.rings.close())
	}
	for _, m := range t.ringMaps {
		errs = append(errs, m.Close())
	}
	for _, c := range t.hopColls {
		c.Close()
	}
	if t.coll != nil {
		t.coll.Close()
	}
	return errors.Join(errs...)
}
