package resolver

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// Options configure a Resolver.
type Options struct {
	// Docker is the Docker source; nil means NewDocker(DockerHost), and
	// NoDocker{} turns Docker off.
	Docker Docker
	// DockerHost is the daemon address when Docker is nil ("" means
	// $DOCKER_HOST or the default socket).
	DockerHost string
	// Logger gets one line when Docker becomes unreachable or comes back;
	// nil discards.
	Logger *slog.Logger
	// Rescan is the period of the safety-net rescan (namespaces can appear
	// without any link event in the host); 0 means 5s.
	Rescan time.Duration
	// IgnoreEvents drops Docker's container and network events, so names
	// of new containers come only from the refresh a name miss asks for.
	// It is for tests of that path; $HOPTRACE_TEST_IGNORE_DOCKER_EVENTS=1
	// sets it in a built binary.
	IgnoreEvents bool
}

// Resolver keeps a current model of the host's container networking and
// answers lookups from it. Create it with New, then Start it.
type Resolver struct {
	opts   Options
	docker Docker
	log    *slog.Logger
	sc     *scanner

	cur    atomic.Pointer[state]
	scanMu sync.Mutex // one rescan at a time: the newest scan is published last

	dmu sync.Mutex // guards dstate and containers
	ds  dockerState
	cs  map[string]topology.Container

	kick chan struct{} // asks for a rescan (buffered 1)

	// Refreshes asked for by a name miss (see Refresh).
	refreshAsked atomic.Uint64
	refreshDone  atomic.Uint64
	refreshc     chan struct{} // buffered 1
	// wakeDocker makes a Docker loop waiting to reconnect try at once.
	wakeDocker chan struct{} // buffered 1
	// attempt is closed (and replaced) after each try to reach Docker.
	amu     sync.Mutex
	attempt chan struct{}

	smu  sync.Mutex
	subs map[chan *topology.Snapshot]struct{}

	cancel context.CancelFunc
	done   chan struct{} // closed by Close
	closed sync.Once
	wg     sync.WaitGroup
}

// state is one published snapshot and its index. Never modified once stored.
type state struct {
	snap *topology.Snapshot
	ix   *topology.Index
}

// New prepares a resolver. It fails when netlink cannot be opened at all.
func New(opts Options) (*Resolver, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Rescan == 0 {
		opts.Rescan = 5 * time.Second
	}
	if os.Getenv("HOPTRACE_TEST_IGNORE_DOCKER_EVENTS") == "1" {
		opts.IgnoreEvents = true
	}
	d := opts.Docker
	if d == nil {
		var err error
		if d, err = NewDocker(opts.DockerHost); err != nil {
			return nil, err
		}
	}
	sc, err := newScanner()
	if err != nil {
		return nil, err
	}
	r := &Resolver{
		opts:   opts,
		docker: d,
		log:    opts.Logger,
		sc:     sc,
		cs:     map[string]topology.Container{},
		kick:   make(chan struct{}, 1),

		refreshc:   make(chan struct{}, 1),
		wakeDocker: make(chan struct{}, 1),
		attempt:    make(chan struct{}),
		subs:       map[chan *topology.Snapshot]struct{}{},
		done:       make(chan struct{}),
	}
	empty := &topology.Snapshot{HostNetnsIno: sc.hostIno}
	r.cur.Store(&state{snap: empty, ix: topology.NewIndex(empty)})
	return r, nil
}

// dockerConnectTimeout bounds the first contact with Docker in Start, so a
// hung daemon does not hang hoptrace.
const dockerConnectTimeout = 3 * time.Second

// Start reads the whole topology once (Docker first, if it answers), then
// keeps it current in the background until ctx ends or Close is called.
// It returns ErrNotPermitted (wrapped) when namespaces cannot be read.
func (r *Resolver) Start(ctx context.Context) error {
	ctx, r.cancel = context.WithCancel(ctx)
	// Subscribe to link changes before the first scan, like Docker events.
	linkc, err := r.subscribeLinks(ctx)
	if err != nil {
		r.cancel()
		return err
	}
	sub, err := r.dockerConnect(ctx, dockerConnectTimeout)
	if err != nil {
		r.setDockerDown(err)
	}
	res, err := r.rescan()
	if err != nil {
		r.cancel()
		if sub != nil {
			sub.stop()
		}
		return err
	}
	if res.Denied != nil {
		r.cancel()
		if sub != nil {
			sub.stop()
		}
		return fmt.Errorf("read network namespaces: %w", res.Denied)
	}
	r.wg.Add(4)
	go func() { defer r.wg.Done(); r.dockerLoop(ctx, sub) }()
	go func() { defer r.wg.Done(); r.refreshLoop(ctx) }()
	go func() { defer r.wg.Done(); r.scanLoop(ctx) }()
	go func() { defer r.wg.Done(); r.linkLoop(ctx, linkc) }()
	return nil
}

// Close stops the background work and waits for it.
func (r *Resolver) Close() error {
	var err error
	r.closed.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
		r.wg.Wait()
		close(r.done)
		r.sc.close()
		r.smu.Lock()
		for ch := range r.subs {
			close(ch)
			delete(r.subs, ch)
		}
		r.smu.Unlock()
		err = r.docker.Close()
	})
	return err
}

// Lookup implements topology.Namer: an atomic load and a map lookup.
func (r *Resolver) Lookup(k topology.Key) (topology.Endpoint, bool) {
	return r.cur.Load().ix.Lookup(k)
}

// NodeName names the Swarm node at addr, when an overlay lists it.
func (r *Resolver) NodeName(addr netip.Addr) (string, bool) {
	return r.cur.Load().ix.NodeName(addr)
}

// Peer returns the other end of the veth k, when known.
func (r *Resolver) Peer(k topology.Key) (topology.Endpoint, bool) {
	return r.cur.Load().ix.Peer(k)
}

// Snapshot returns the current picture. It is shared: do not modify it.
func (r *Resolver) Snapshot() *topology.Snapshot { return r.cur.Load().snap }

// Subscribe delivers the current snapshot, then each new one as the
// topology changes. Slow readers get the latest only. The channel closes
// when ctx ends or the resolver is closed.
func (r *Resolver) Subscribe(ctx context.Context) <-chan *topology.Snapshot {
	ch := make(chan *topology.Snapshot, 1)
	ch <- r.Snapshot()
	r.smu.Lock()
	r.subs[ch] = struct{}{}
	r.smu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-r.done:
		}
		r.smu.Lock()
		if _, ok := r.subs[ch]; ok {
			delete(r.subs, ch)
			close(ch)
		}
		r.smu.Unlock()
	}()
	return ch
}

func (r *Resolver) publish(s *topology.Snapshot) {
	r.cur.Store(&state{snap: s, ix: topology.NewIndex(s)})
	r.smu.Lock()
	defer r.smu.Unlock()
	for ch := range r.subs {
		// Latest wins: replace an unread older snapshot.
		select {
		case <-ch:
		default:
		}
		ch <- s
	}
}

func (r *Resolver) requestRescan() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// rescan scans and publishes if anything changed.
func (r *Resolver) rescan() (scanResult, error) {
	r.scanMu.Lock()
	defer r.scanMu.Unlock()
	r.dmu.Lock()
	ds := r.ds
	ds.Containers = make([]topology.Container, 0, len(r.cs))
	for _, c := range r.cs {
		ds.Containers = append(ds.Containers, c)
	}
	ds.Networks = append([]Network(nil), r.ds.Networks...)
	r.dmu.Unlock()

	res, err := r.sc.scan(ds.Containers)
	if err != nil {
		return res, err
	}
	s := build(res, ds, time.Now())
	if !sameTopology(r.Snapshot(), s) {
		r.publish(s)
	}
	return res, nil
}

// sameTopology compares two snapshots but for their time.
func sameTopology(a, b *topology.Snapshot) bool {
	x, y := *a, *b
	x.Time, y.Time = time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

// settle lets a burst of changes (a container start is several link
// events and a Docker event) end in one rescan.
const settle = 30 * time.Millisecond

// followUp is when a change is read again: a namespace's insides (the
// veth peer renamed to eth0, its address) are configured after the host
// side appeared, and nothing in the host announces that.
const followUp = 300 * time.Millisecond

func (r *Resolver) scanLoop(ctx context.Context) {
	t := time.NewTicker(r.opts.Rescan)
	defer t.Stop()
	again := time.NewTimer(time.Hour)
	again.Stop()
	defer again.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-again.C:
		case <-r.kick:
			select {
			case <-time.After(settle):
			case <-ctx.Done():
				return
			}
			// Drain a kick that arrived while settling.
			select {
			case <-r.kick:
			default:
			}
			again.Reset(followUp)
		}
		if _, err := r.rescan(); err != nil {
			r.log.Warn("rescan network namespaces", "err", err)
		}
	}
}

// subscribeLinks listens to link changes in the host namespace: every
// container start, stop and network connect adds or removes a host veth.
func (r *Resolver) subscribeLinks(ctx context.Context) (<-chan netlink.LinkUpdate, error) {
	ns, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open host netns: %w", permErr(err))
	}
	defer ns.Close()
	ch := make(chan netlink.LinkUpdate, 64)
	err = netlink.LinkSubscribeWithOptions(ch, ctx.Done(), netlink.LinkSubscribeOptions{
		Namespace: &ns,
		// An overrun socket loses updates: the periodic rescan covers it.
		ErrorCallback: func(err error) { r.requestRescan() },
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to link updates: %w", permErr(err))
	}
	return ch, nil
}

func (r *Resolver) linkLoop(ctx context.Context, ch <-chan netlink.LinkUpdate) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return // subscription ended (error): the ticker still rescans
			}
			r.requestRescan()
		}
	}
}
