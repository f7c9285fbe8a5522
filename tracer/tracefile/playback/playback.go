// Package playback reads recordings back as a pipeline source (Source), so
// replay, latency and export from a file run the pipeline a live capture
// runs and show what the live view would have shown.
//
// Names come from the snapshots in the recording: each hop is resolved
// against the latest snapshot written before it, so a container that was
// renamed or removed later keeps the name it had at the time. Nothing here
// needs root, Docker or the recording host.
package playback

import (
	"net/netip"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// Namer resolves interfaces from the latest snapshot it was given. It is
// the recording's journey.Names: a refresh is the next snapshot in the
// recording, as the live resolver's refresh wrote one.
type Namer struct {
	ix   *topology.Index
	snap *topology.Snapshot
	sets uint64
}

// Set makes s the snapshot lookups use from now on.
func (n *Namer) Set(s *topology.Snapshot) {
	n.snap, n.ix = s, topology.NewIndex(s)
	n.sets++
}

// Naming implements journey.Names.
func (n *Namer) Naming(k topology.Key) topology.Naming {
	if n.ix == nil {
		return topology.NameFinal // a recording without snapshots: nothing will name it
	}
	return n.ix.Naming(k)
}

// Refresh implements journey.Names: the ticket is the next snapshot.
func (n *Namer) Refresh() uint64 { return n.sets + 1 }

// Refreshed implements journey.Names.
func (n *Namer) Refreshed(ticket uint64) bool { return n.sets >= ticket }

// Snapshot is the current snapshot, nil before the first.
func (n *Namer) Snapshot() *topology.Snapshot { return n.snap }

// Lookup implements topology.Namer.
func (n *Namer) Lookup(k topology.Key) (topology.Endpoint, bool) {
	if n.ix == nil {
		return topology.Endpoint{}, false
	}
	return n.ix.Lookup(k)
}

// NodeName implements topology.NodeNamer.
func (n *Namer) NodeName(addr netip.Addr) (string, bool) {
	if n.ix == nil {
		return "", false
	}
	return n.ix.NodeName(addr)
}
