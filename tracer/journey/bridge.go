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
	Bridge  string // docker0, br-1a2b3c4d5e6f
	Network string // the Docker network, when known
}

// Label names the step in a path: the bridge, with its Docker network when
// that says more than the bridge's name (user-defined networks).
func (b BridgeStep) Label() string {
	if b.Network == "" || b.Network == "bridge" || b.Network == b.Bridge {
		return b.Bridge
	}
	return b.Bridge + "(" + b.Network + ")"
}

// Bridged returns the bridge hop i was forwarded through from its parent:
// the parent is a port's ingress and hop i another port's egress of the
// same bridge. ok is false for any other step.
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
	if he.Role != topology.RoleHostVeth || pe.Role != topology.RoleHostVeth ||
		h.Dir != event.Egress || p.Dir != event.Ingress || he.Bridge == "" || he.Bridge != pe.Bridge {
		return BridgeStep{}, false
	}
	return BridgeStep{Bridge: he.Bridge, Network: he.Network}, true
}
