package journey

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
)

// Selection picks journeys by container (as trace's --container shows only
// the journeys of those containers) and by interface. The zero Selection
// matches everything.
type Selection struct {
	// Containers are container names, IDs or ID prefixes, matched by
	// topology.MatchContainer against the latest topology (see Choose).
	Containers []string
	// Interfaces are interface names ("veth3c4d", "docker0") or labels ("web:eth0").
	Interfaces []string
	// Packet, if set, must accept the packet as first seen (before any NAT):
	// the filter expression of a replay, decided where the kernel decides it
	// live.
	Packet PacketMatcher

	chosen map[string]bool // IDs of the containers the words name now
	named  map[string]bool // words that named a container at least once
}

// Choose applies the one container rule (topology.MatchContainer, the rule
// that decides what a live capture hooks) to the containers of a topology:
// journeys are then matched by those containers' IDs, so "-C abc" shows
// container abc, never another whose ID starts with abc. Call it with
// every new topology; an ambiguous word is an error (*topology.AmbiguousError),
// a word that names nothing now is not (the container may come).
func (s *Selection) Choose(cs []topology.Container) error {
	if len(s.Containers) == 0 {
		return nil
	}
	if s.named == nil {
		s.named = map[string]bool{}
	}
	s.chosen = map[string]bool{}
	for _, w := range s.Containers {
		c, err := topology.MatchContainer(cs, w)
		var amb *topology.AmbiguousError
		switch {
		case errors.As(err, &amb):
			return err
		case err == nil:
			s.chosen[c.ID] = true
			s.named[w] = true
		}
	}
	return nil
}

// Unmatched lists the container words that never named a container in
// any topology given to Choose.
func (s *Selection) Unmatched() []string {
	var out []string
	for _, w := range s.Containers {
		if !s.named[w] {
			out = append(out, w)
		}
	}
	return out
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
	if s.chosen != nil {
		return s.chosen[e.Container.ID]
	}
	// No topology chosen from: exact names and IDs only.
	for _, want := range s.Containers {
		want = strings.TrimPrefix(want, "/")
		if e.Container.Name == want || e.Container.ID == want {
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
