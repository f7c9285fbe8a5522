package resolver

import (
	"context"
	"errors"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// dockerSub is a live event subscription.
type dockerSub struct {
	events <-chan DockerEvent
	errc   <-chan error
	stop   context.CancelFunc
}

// dockerConnect subscribes to events, then lists networks and containers
// into the resolver's Docker state.
func (r *Resolver) dockerConnect(ctx context.Context, timeout time.Duration) (*dockerSub, error) {
	// A socket nobody answers on would hang the subscription: ping first.
	pctx, pcancel := context.WithTimeout(ctx, timeout)
	err := r.docker.Ping(pctx)
	pcancel()
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	evs, errc := r.docker.Events(sctx)
	// A stream that fails at once (no socket) reports it right away.
	select {
	case err := <-errc:
		stop()
		return nil, err
	default:
	}
	lctx, lcancel := context.WithTimeout(ctx, timeout)
	defer lcancel()
	nets, err := r.docker.Networks(lctx)
	if err != nil {
		stop()
		return nil, err
	}
	cs, err := r.docker.Containers(lctx)
	if err != nil {
		stop()
		return nil, err
	}
	r.dmu.Lock()
	wasDown := !r.ds.Available && r.ds.Err != ""
	r.ds = dockerState{Available: true, Networks: nets}
	r.cs = make(map[string]topology.Container, len(cs))
	for _, c := range cs {
		r.cs[c.ID] = c
	}
	r.dmu.Unlock()
	if wasDown {
		r.log.Info("docker is reachable again", "host", r.docker.Host())
	}
	return &dockerSub{events: evs, errc: errc, stop: stop}, nil
}

// setDockerDown records that Docker is unreachable, logging it once per
// outage. What Docker last said is kept: containers whose namespaces are
// gone drop out at the next scan.
func (r *Resolver) setDockerDown(err error) {
	msg := err.Error()
	if errors.Is(err, ErrNoDocker) {
		msg = "docker disabled"
	}
	r.dmu.Lock()
	first := r.ds.Available || r.ds.Err == ""
	r.ds.Available, r.ds.Err = false, msg
	r.dmu.Unlock()
	if first && !errors.Is(err, ErrNoDocker) {
		r.log.Warn("docker is not reachable; naming namespaces only", "host", r.docker.Host(), "err", err)
	}
	r.requestRescan()
}

// Backoff between attempts to reach a daemon that went away.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

func (r *Resolver) dockerLoop(ctx context.Context, sub *dockerSub) {
	if _, off := r.docker.(NoDocker); off {
		return
	}
	// A restarted daemon creates its socket anew: try at once when it does,
	// rather than at the end of a backoff.
	sockc := watchSocket(ctx, r.docker.Host(), r.log)
	backoff := minBackoff
	for ctx.Err() == nil {
		if sub == nil {
			var err error
			sub, err = r.dockerConnect(ctx, 10*time.Second)
			if err != nil && ctx.Err() == nil {
				r.setDockerDown(err)
			}
			r.tried()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				select {
				case <-time.After(backoff):
					backoff = min(2*backoff, maxBackoff)
				case <-sockc:
					backoff = minBackoff
				case <-r.wakeDocker:
				case <-ctx.Done():
					return
				}
				continue
			}
			r.requestRescan()
		}
		backoff = minBackoff
		err := r.consume(ctx, sub)
		sub.stop()
		sub = nil
		if ctx.Err() != nil {
			return
		}
		r.setDockerDown(err)
	}
}

// consume applies events until the stream ends.
func (r *Resolver) consume(ctx context.Context, sub *dockerSub) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-sub.errc:
			return err
		case ev, ok := <-sub.events:
			if !ok {
				return <-sub.errc
			}
			if err := r.apply(ctx, ev); err != nil {
				r.log.Debug("apply docker event", "action", ev.Action, "err", err)
			}
		}
	}
}

// apply updates the Docker state for one event and asks for a rescan.
func (r *Resolver) apply(ctx context.Context, ev DockerEvent) error {
	if r.opts.IgnoreEvents {
		return nil
	}
	defer r.requestRescan()
	switch ev.Type + " " + ev.Action {
	case "network create", "network destroy", "network remove":
		nets, err := r.docker.Networks(ctx)
		if err != nil {
			return err
		}
		r.dmu.Lock()
		r.ds.Networks = nets
		r.dmu.Unlock()
		return nil
	case "container die", "container destroy":
		r.dmu.Lock()
		delete(r.cs, ev.ContainerID)
		r.dmu.Unlock()
		return nil
	case "container start", "container restart", "container unpause", "container rename",
		"network connect", "network disconnect":
		// Read the container again below.
	default:
		return nil
	}
	if ev.ContainerID == "" {
		return nil
	}
	c, running, err := r.docker.Container(ctx, ev.ContainerID)
	if err != nil && !isGone(err) {
		return err
	}
	r.dmu.Lock()
	if err == nil && running {
		r.cs[c.ID] = c
	} else {
		delete(r.cs, ev.ContainerID)
	}
	r.dmu.Unlock()
	return nil
}
