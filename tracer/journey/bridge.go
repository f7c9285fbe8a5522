package journey

import (
	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// BridgeStep is a bridge a packet crossed between two hops. Bridged
// packets never pass the bridge's own hooks (they see only what the bridge
// passes up to the host or the host sends down), so the step is inferred
// from the topology: one port took the packet in, another sent it out.
type BridgeStep struct {
	// Kind is "" for a Linux bridge, or "macvlan" / "ipvlan": then the
	// step is the driver forwarding between two containers' interfaces
	// on the same host interface, Bridge.
	Kind    string
	Bridge  string // docker0, br-1a2b3c4d5e6f; the parent for macvlan/ipvlan
	Network string // the Docker network, when known
}

// Label names the step in a path: the bridge, with its Docker network when
// that says more than the bridge's name (user-defined networks).
func (b BridgeStep) Label() string {
	if b.Kind != "" {
		return "(" + b.Kind + " on " + b.Bridge + ")"
	}
	if b.Network == "" || b.Network == "bridge" || b.Network == b.Bridge {
		return b.Bridge
	}
	return b.Bridge + "(" + b.Network + ")"
}

// Bridged returns the bridge hop i was forwarded through from its parent:
// the parent is a port's ingress and hop i another port's egress of the
// same bridge; or both are containers' interfaces on one macvlan or ipvlan
// parent. ok is false for any other step.
func (j *Journey) Bridged(i int) (BridgeStep, bool) {
	if i <= 0 || i >= len(j.Hops) {
		return BridgeStep{}, false
	}
	h := &j.Hops[i]
	if h.Parent < 0 {
		return BridgeStep{}, false
	}
	p := &j.Hops[h.Parent]
	he, pe := &h.Endpoint, &p.Endpoint
	if he.Parent != "" && he.Parent == pe.Parent && he.Role == topology.RoleContainer && pe.Role == topology.RoleContainer &&
		h.Dir == event.Ingress && p.Dir == event.Egress {
		// From one container's macvlan (or ipvlan) interface straight into
		// another's: the driver forwarded it on the parent, unseen.
		return BridgeStep{Kind: he.Driver, Bridge: he.Parent, Network: he.Network}, true
	}
	if !isPort(he) || !isPort(pe) || h.Dir != event.Egress || p.Dir != event.Ingress ||
		he.Bridge == "" || he.Bridge != pe.Bridge || he.NetnsIno != pe.NetnsIno {
		return BridgeStep{}, false
	}
	return BridgeStep{Bridge: he.Bridge, Network: he.Network}, true
}

// isPort tells whether a bridge forwards to and from e: a veth port, or an
// overlay's vxlan0 (a port of the overlay's bridge toward other nodes).
func isPort(e *topology.Endpoint) bool {
	return e.Role == topology.RoleHostVeth || e.Role == topology.RoleHost && e.Driver == topology.DriverOverlay
}
