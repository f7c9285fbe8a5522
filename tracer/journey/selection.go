package journey

import (
	"fmt"
	"strings"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// Selection picks journeys by container (as trace's --container shows only
// the journeys of those containers) and by interface. The zero Selection
// matches everything.
type Selection struct {
	// Containers are container names or ID prefixes (3 characters or more).
	Containers []string
	// Interfaces are interface names ("veth3c4d", "docker0") or labels ("web:eth0").
	Interfaces []string
	// Packet, if set, must accept the packet as first seen (before any NAT):
	// the filter expression of a replay, decided where the kernel decides it
	// live.
	Packet PacketMatcher
}

// PacketMatcher decides on a packet's decoded headers (a compiled filter).
type PacketMatcher interface {
	Match(p *event.Packet) bool
}

// Match reports whether a journey passes the selection: its first packet
// passes Packet, and one of its hops (or its drop) is at a selected
// container or interface.
func (s Selection) Match(j *Journey) bool {
	if s.Packet != nil {
		if p := j.Packet(); p == nil || !s.Packet.Match(p) {
			return false
		}
	}
	if len(s.Containers) == 0 && len(s.Interfaces) == 0 {
		return true
	}
	for i := range j.Hops {
		if s.matchEndpoint(&j.Hops[i].Endpoint) {
			return true
		}
	}
	return j.Drop != nil && j.Drop.HasDev && s.matchEndpoint(&j.Drop.Endpoint)
}

// matchEndpoint reports whether an interface is selected, by its name or
// label or by the container it belongs to.
func (s Selection) matchEndpoint(e *topology.Endpoint) bool {
	for _, want := range s.Interfaces {
		if e.Name == want || e.Label() == want {
			return true
		}
	}
	if e.Container == nil {
		return false
	}
	for _, want := range s.Containers {
		want = strings.TrimPrefix(want, "/")
		if e.Container.Name == want || e.Container.ID == want || (len(want) >= 3 && strings.HasPrefix(e.Container.ID, want)) {
			return true
		}
	}
	return false
}

// String describes the selection for messages.
func (s Selection) String() string {
	var parts []string
	if len(s.Containers) > 0 {
		parts = append(parts, fmt.Sprintf("containers %s", strings.Join(s.Containers, ",")))
	}
	if len(s.Interfaces) > 0 {
		parts = append(parts, fmt.Sprintf("interfaces %s", strings.Join(s.Interfaces, ",")))
	}
	if len(parts) == 0 {
		return "everything"
	}
	return strings.Join(parts, " and ")
}
