// Package capture runs a live capture: it loads the tracer, keeps its hooks
// attached to the interfaces the resolver reports (docker0, user-defined
// bridges, their veth ports and the containers' eth0) as containers come and
// go, and hands every hop, drop and topology change to one Handler.
//
// `hoptrace trace`, `record` and live `latency` are the same capture with
// different handlers.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hoptrace/hoptrace/resolver"
	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
)

// Config selects what to trace.
type Config struct {
	// Containers are names or IDs (or ID prefixes). When set, hoptrace traces
	// the bridges these containers are on (every port, so a journey shows
	// both ends) instead of every bridge. Empty: every Docker bridge.
	Containers []string
	// Ifaces are extra host interfaces by name (e.g. eth0 to see packets
	// leave the host). With Ifaces and no Containers only these are traced,
	// unless AllBridges.
	Ifaces []string
	// AllBridges traces every Docker bridge (and macvlan/ipvlan network)
	// besides Ifaces: "everything Docker, plus eth0".
	AllBridges bool
	// NoContainerSide skips the eth0 inside each container's namespace.
	NoContainerSide bool
	Tracer          tracer.Options
	Resolver        resolver.Options
	// Logger receives attach problems and topology notes; nil discards.
	Logger *slog.Logger
	// TickInterval is how often Handler.Tick runs; 0 means 50ms.
	TickInterval time.Duration
}

// Handler receives everything a capture sees: it is the pipeline's Input,
// and a Session is a pipeline.Source.
type Handler = pipeline.Input

// ErrUnknownContainer is returned when a selected container does not exist.
// A word that names several containers is a *topology.AmbiguousError.
var ErrUnknownContainer = topology.ErrNoSuchContainer

// DefaultLag is how far behind the clock the watermark stays once the ring
// buffer is drained: events may sit in the ring for one drain interval
// (10ms) and one may be in the reader's hands.
const DefaultLag = 100_000_000 // 100ms in ns

// Session is a running capture.
type Session struct {
	cfg Config
	log *slog.Logger
	res *resolver.Resolver
	tr  *tracer.Tracer

	mu     sync.Mutex // serialises Handler calls
	newest uint64     // the newest event time delivered (under mu)
	// quiet: no event for quietAfter, Handler.Tick runs every quietTick
	// until one comes, and kick brings the ticks back (under mu).
	quiet bool
	kick  chan struct{}

	amu      sync.Mutex // guards the attachments
	attached []resolver.Interface
	warned   map[topology.Key]bool
	noBridge bool
}

// Open starts the resolver and loads the tracer, and attaches to the
// interfaces selected now. Close undoes all of it.
func Open(ctx context.Context, cfg Config) (s *Session, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 50 * time.Millisecond
	}
	if cfg.Resolver.Logger == nil {
		cfg.Resolver.Logger = cfg.Logger
	}
	s = &Session{cfg: cfg, log: cfg.Logger, warned: map[topology.Key]bool{}, kick: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
			s = nil
		}
	}()
	if s.res, err = resolver.New(cfg.Resolver); err != nil {
		return s, fmt.Errorf("start resolver: %w", err)
	}
	if err = s.res.Start(ctx); err != nil {
		return s, fmt.Errorf("start resolver: %w", err)
	}
	snap := s.res.Snapshot()
	for _, name := range cfg.Containers {
		c, err := topology.MatchContainer(snap.Containers, name)
		var amb *topology.AmbiguousError
		if errors.As(err, &amb) {
			return s, err
		}
		if err != nil {
			if !snap.DockerAvailable {
				return s, fmt.Errorf("container %q: %w (Docker is not reachable)", name, ErrUnknownContainer)
			}
			return s, fmt.Errorf("container %q: %w (see 'docker ps' or 'hoptrace links')", name, ErrUnknownContainer)
		}
		if br, nets := placesOf(snap, []string{name}); len(br) == 0 && len(nets) == 0 {
			return s, fmt.Errorf("container %q has no veth on a bridge nor a macvlan or ipvlan interface (network mode %q): nothing to trace", name, c.NetworkMode)
		}
	}
	for _, name := range cfg.Ifaces {
		if _, ok := hostIface(snap, name); !ok {
			return s, fmt.Errorf("interface %q not found in the host namespace", name)
		}
	}
	if s.tr, err = tracer.Load(cfg.Tracer); err != nil {
		return s, err
	}
	if err = s.reconcile(snap, true); err != nil {
		return s, err
	}
	return s, nil
}

// Features are what the running kernel offers the tracer.
func (s *Session) Features() tracer.Features { return s.tr.Features() }

// Clock converts kernel monotonic time to wall time.
func (s *Session) Clock() tracer.Clock { return s.tr.Clock() }

// Names implements pipeline.Source: the resolver names hook interfaces
// with the current topology and reads the names again on demand.
func (s *Session) Names() journey.Names { return s.res }

// Snapshot is the current topology.
func (s *Session) Snapshot() *topology.Snapshot { return s.res.Snapshot() }

// Loss is what the kernel could not deliver so far.
func (s *Session) Loss() (event.Loss, error) { return s.tr.Loss() }

// Attached lists the interfaces hooked now, by name, sorted.
func (s *Session) Attached() []string {
	s.amu.Lock()
	defer s.amu.Unlock()
	out := make([]string, 0, len(s.attached))
	for _, ifc := range s.attached {
		out = append(out, ifc.Name)
	}
	sort.Strings(out)
	return out
}

// Run delivers events to h until ctx ends or the tracer is closed. It keeps
// the attachments in step with the topology while it runs.
func (s *Session) Run(ctx context.Context, h Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel() // first: the goroutines below end with ctx
		wg.Wait()
	}()

	snaps := s.res.Subscribe(ctx)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for snap := range snaps {
			// Attaching (netlink, program attach) happens outside the
			// handler lock, so events keep flowing meanwhile.
			_ = s.reconcile(snap, false)
			s.mu.Lock()
			h.Topology(snap)
			s.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTimer(s.cfg.TickInterval)
		defer t.Stop()
		var loss event.Loss
		lastLoss := time.Now()
		pace := tickPacer{lastEvent: time.Now()}
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.kick:
				t.Reset(s.cfg.TickInterval)
			case now := <-t.C:
				s.mu.Lock()
				if now.Sub(lastLoss) >= lossEvery {
					lastLoss = now
					s.reportLoss(h, &loss)
				}
				h.Tick(s.watermark())
				var next time.Duration
				next, s.quiet = pace.next(s.newest, now, s.cfg.TickInterval)
				s.mu.Unlock()
				t.Reset(next)
			}
		}
	}()
	defer func() {
		// The final counters, after the reader stopped.
		s.mu.Lock()
		var never event.Loss
		s.reportLoss(h, &never)
		s.mu.Unlock()
	}()

	recs := make([]tracer.Record, readBatch)
	for {
		n, err := s.tr.ReadBatch(ctx, recs)
		if err != nil {
			if errors.Is(err, tracer.ErrClosed) {
				return nil
			}
			if ctx.Err() != nil {
				s.drainAfterStop(h, recs)
				return nil
			}
			return fmt.Errorf("read events: %w", err)
		}
		s.deliver(h, recs[:n])
	}
}

// readBatch is how many events the reader takes from the rings, and hands
// on, under one lock: a busy ring is read in batches, a quiet one event by
// event as it comes.
const readBatch = 64

// deliver hands recs, in order, to h.
func (s *Session) deliver(h Handler, recs []tracer.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quiet {
		s.quiet = false
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	for i := range recs {
		rec := &recs[i]
		switch rec.Kind {
		case tracer.KindHop:
			s.newest = max(s.newest, rec.Hop.TimeNS)
			h.Hop(&rec.Hop)
		case tracer.KindDrop:
			s.newest = max(s.newest, rec.Drop.TimeNS)
			h.Drop(&rec.Drop)
		}
	}
}

// stopDrain bounds the reading of what the ring holds at a stop.
const stopDrain = 200 * time.Millisecond

// drainAfterStop delivers what the hooks wrote before the stop and is still
// in the ring: a Ctrl-C just after the traffic must not lose its last
// journeys. It reads only while events are there, for at most stopDrain,
// so a ring a flood keeps filling cannot hold the stop up.
func (s *Session) drainAfterStop(h Handler, recs []tracer.Record) {
	ctx, cancel := context.WithTimeout(context.Background(), stopDrain)
	defer cancel()
	for s.tr.Unread() > 0 {
		n, err := s.tr.ReadBatch(ctx, recs)
		if err != nil {
			return
		}
		s.deliver(h, recs[:n])
	}
}

// lossEvery is how often the kernel's loss counters are read while running.
const lossEvery = time.Second

// Ticks while nothing happens: after quietAfter without an event (longer
// than anything in the pipeline waits: a journey 200 ms, its names 500 ms)
// a tick every quietTick is enough, and the process stays off the CPUs.
const (
	quietAfter = time.Second
	quietTick  = time.Second
)

// tickPacer decides when the next tick comes.
type tickPacer struct {
	lastNewest uint64    // the newest event time at the last change
	lastEvent  time.Time // when that changed
}

// next takes the newest event time delivered so far and the time of this
// tick; it returns how long until the next tick and whether the capture is
// quiet (then the first event must bring the busy ticks back: Session.kick).
func (p *tickPacer) next(newest uint64, now time.Time, busy time.Duration) (time.Duration, bool) {
	if newest != p.lastNewest {
		p.lastNewest, p.lastEvent = newest, now
	}
	// Quiet for a while: everything waiting on time is done (journeys,
	// names), so tick slowly until the next event.
	if now.Sub(p.lastEvent) >= quietAfter {
		return quietTick, true
	}
	return busy, false
}

// reportLoss hands the loss counters to h when they changed since last.
// Called with s.mu.
func (s *Session) reportLoss(h Handler, last *event.Loss) {
	l, err := s.tr.Loss()
	if err != nil || l == *last {
		return
	}
	*last = l
	h.Loss(l)
}

// watermark is the kernel time up to which every event has been delivered,
// so journeys whose deadline is before it can finish. While the ring buffer
// holds unread events it is the newest event time read (a reader that lags
// behind must not split journeys whose later hops are still in the ring);
// once it is drained, the clock less DefaultLag (an event read but not yet
// handed over, or committed a moment after its time stamp). Called with s.mu.
func (s *Session) watermark() uint64 {
	now := tracer.MonoNow()
	if s.tr.Unread() > 0 {
		return min(s.newest, now-DefaultLag)
	}
	return max(s.newest, now-DefaultLag)
}

// Close detaches every hook and stops the resolver.
func (s *Session) Close() error {
	s.amu.Lock()
	defer s.amu.Unlock()
	var errs []error
	if s.tr != nil {
		if err := s.tr.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
		s.tr = nil
	}
	if s.res != nil {
		if err := s.res.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop resolver: %w", err))
		}
		s.res = nil
	}
	return errors.Join(errs...)
}

// Want computes the interfaces a configuration selects in a snapshot, each
// once, sorted. It is pure, so the selection rules are unit-tested.
func Want(cfg *Config, snap *topology.Snapshot) []resolver.Interface {
	var out []resolver.Interface
	sel := resolver.Selection{ContainerSide: !cfg.NoContainerSide}
	switch {
	case len(cfg.Containers) > 0:
		sel.Limit = true
		sel.Bridges, sel.Networks = placesOf(snap, cfg.Containers)
		if len(sel.Bridges) == 0 && len(sel.Networks) == 0 {
			break // the containers are gone (for now): trace nothing of them
		}
		fallthrough
	case len(cfg.Ifaces) == 0 || cfg.AllBridges:
		out = resolver.InterfacesOf(snap, sel)
	}
	for _, name := range cfg.Ifaces {
		if ifc, ok := hostIface(snap, name); ok && !slices.ContainsFunc(out, func(o resolver.Interface) bool {
			return o.Key == ifc.Key && o.Name == ifc.Name
		}) {
			out = append(out, ifc)
		}
	}
	return out
}

// placesOf lists the bridges the named containers have a veth on, and the
// macvlan, ipvlan and overlay networks they have an interface on.
func placesOf(snap *topology.Snapshot, names []string) (bridges, networks []string) {
	for _, name := range names {
		c, err := topology.MatchContainer(snap.Containers, name)
		if err != nil {
			continue
		}
		for _, e := range snap.Endpoints {
			if e.Container == nil || e.Container.ID != c.ID {
				continue
			}
			switch {
			case e.Driver == topology.DriverOverlay && e.Network != "" && !slices.Contains(networks, e.Network):
				networks = append(networks, e.Network)
			case e.Driver == topology.DriverOverlay:
			case e.Role == topology.RoleHostVeth && e.Bridge != "" && !slices.Contains(bridges, e.Bridge):
				bridges = append(bridges, e.Bridge)
			case e.Parent != "" && e.Network != "" && !slices.Contains(networks, e.Network):
				networks = append(networks, e.Network)
			}
		}
	}
	sort.Strings(bridges)
	sort.Strings(networks)
	return bridges, networks
}

func hostIface(snap *topology.Snapshot, name string) (resolver.Interface, bool) {
	for _, e := range snap.Endpoints {
		if e.NetnsIno == snap.HostNetnsIno && e.Name == name {
			return resolver.Interface{Key: e.Key(), Name: e.Name, Role: e.Role, Bridge: e.Bridge}, true
		}
	}
	return resolver.Interface{}, false
}

// reconcile attaches what the snapshot selects and detaches what vanished.
// Interfaces that disappear between the snapshot and the attach are normal
// (containers come and go): they are skipped without noise. One that fails
// to attach otherwise is warned about once and tried again at the next
// change.
func (s *Session) reconcile(snap *topology.Snapshot, initial bool) error {
	want := Want(&s.cfg, snap)
	s.amu.Lock()
	defer s.amu.Unlock()
	if s.tr == nil {
		return nil
	}
	added, removed := resolver.DiffInterfaces(s.attached, want)
	kept := s.attached[:0:0]
	for _, ifc := range s.attached {
		if slices.Contains(removed, ifc) {
			if err := s.tr.Detach(traced(ifc)); err != nil && !gone(err) {
				s.log.Warn("detach failed", "iface", ifc.Name, "netns", ifc.NetnsPath, "err", err)
			}
			continue
		}
		kept = append(kept, ifc)
	}
	var errs []error
	for _, ifc := range added {
		if err := s.tr.Attach(traced(ifc)); err != nil {
			if gone(err) {
				continue
			}
			if errors.Is(err, tracer.ErrPermission) {
				return err
			}
			if id := ifc.Key; !s.warned[id] {
				s.warned[id] = true
				s.log.Warn("cannot attach", "iface", ifc.Name, "netns", ifc.NetnsPath, "err", err)
			}
			if initial {
				errs = append(errs, fmt.Errorf("attach %s: %w", ifc.Name, err))
			}
			continue
		}
		kept = append(kept, ifc)
	}
	s.attached = kept
	if len(want) == 0 && !s.noBridge {
		s.log.Info("no Docker bridge or selected interface found yet; waiting for one")
	}
	s.noBridge = len(want) == 0
	if initial && len(errs) > 0 && len(s.attached) == 0 {
		return errors.Join(errs...)
	}
	return nil
}

// traced is the tracer's view of an interface to hook.
func traced(ifc resolver.Interface) tracer.Iface {
	return tracer.Iface{Index: int(ifc.Key.Ifindex), Name: ifc.Name, Netns: ifc.NetnsPath, NetnsIno: ifc.Key.NetnsIno, TunnelPort: ifc.TunnelPort}
}

// gone reports errors that mean the interface or its namespace vanished.
func gone(err error) bool {
	return tracer.IsGone(err) || errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENXIO)
}
