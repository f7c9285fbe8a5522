package resolver

import (
	"context"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// Names read again on demand: a hop from an interface the resolver cannot
// name yet (a container started a moment ago, before Docker's event about
// it arrived or while hoptrace was reconnecting to a restarted daemon) asks
// for a refresh, and its journey waits for it (journey.NameWait).

// refreshGap is the least time between two refreshes: a burst of misses
// ends in one refresh.
const refreshGap = 50 * time.Millisecond

// refreshDockerWait bounds how long a refresh waits for a daemon that is
// down to be reached again.
const refreshDockerWait = time.Second

// Naming tells whether k's name may still change once Docker is asked
// again (topology.Index.Naming on the current snapshot).
func (r *Resolver) Naming(k topology.Key) topology.Naming {
	return r.cur.Load().ix.Naming(k)
}

// Refresh asks for Docker's containers and the namespaces to be read again
// at once and returns a ticket for Refreshed. It never blocks; requests
// made while a refresh runs are served by the next one.
func (r *Resolver) Refresh() uint64 {
	t := r.refreshAsked.Add(1)
	select {
	case r.refreshc <- struct{}{}:
	default:
	}
	return t
}

// Refreshed reports whether a refresh begun after the Refresh call that
// returned ticket is done (and its snapshot published).
func (r *Resolver) Refreshed(ticket uint64) bool { return r.refreshDone.Load() >= ticket }

func (r *Resolver) refreshLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.refreshc:
		}
		upTo := r.refreshAsked.Load()
		r.refreshDocker(ctx)
		if _, err := r.rescan(); err != nil {
			r.log.Warn("rescan network namespaces", "err", err)
		}
		r.refreshDone.Store(upTo)
		select {
		case <-ctx.Done():
			return
		case <-time.After(refreshGap):
		}
	}
}

// refreshDocker lists the running containers again; when the daemon is
// down it makes the Docker loop try to reach it now and waits for that try.
func (r *Resolver) refreshDocker(ctx context.Context) {
	if _, off := r.docker.(NoDocker); off {
		return
	}
	r.dmu.Lock()
	up := r.ds.Available
	r.dmu.Unlock()
	if !up {
		r.amu.Lock()
		tried := r.attempt
		r.amu.Unlock()
		select {
		case r.wakeDocker <- struct{}{}:
		default:
		}
		select {
		case <-tried:
		case <-time.After(refreshDockerWait):
		case <-ctx.Done():
		}
		r.dmu.Lock()
		up = r.ds.Available
		r.dmu.Unlock()
		if !up {
			return
		}
		// Reached again; list once more, as that try may have listed
		// before the container asked about was running.
	}
	lctx, cancel := context.WithTimeout(ctx, refreshDockerWait)
	defer cancel()
	cs, err := r.docker.Containers(lctx)
	if err != nil {
		return // the event loop notices an outage on its own
	}
	r.dmu.Lock()
	r.cs = make(map[string]topology.Container, len(cs))
	for _, c := range cs {
		r.cs[c.ID] = c
	}
	r.dmu.Unlock()
}

// tried tells refreshes waiting for a try to reach Docker that it is over.
func (r *Resolver) tried() {
	r.amu.Lock()
	close(r.attempt)
	r.attempt = make(chan struct{})
	r.amu.Unlock()
}
