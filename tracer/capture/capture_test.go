package capture

import (
	"slices"
	"sort"
	"testing"

	"github.com/hoptrace/hoptrace/resolver/topology"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
)

func snap() *topology.Snapshot { return jt.Snapshot() }

// want lists what Want selects as "name@bridge", sorted.
func want(cfg Config) []string {
	var out []string
	for _, ifc := range Want(&cfg, snap()) {
		out = append(out, ifc.Name+"@"+ifc.Bridge)
	}
	sort.Strings(out)
	return out
}

func TestWantSelection(t *testing.T) {
	all := want(Config{NoContainerSide: true})
	if exp := []string{"br-1234@br-1234", "docker0@docker0", "veth1a2b@docker0", "veth3c4d@docker0", "veth5e6f@docker0", "vethaa11@br-1234"}; !slices.Equal(all, exp) {
		t.Errorf("every bridge: %v, want %v", all, exp)
	}
	// A container selects its bridge, every port of it: both ends of a journey.
	web := want(Config{Containers: []string{"web"}, NoContainerSide: true})
	if exp := []string{"docker0@docker0", "veth1a2b@docker0", "veth3c4d@docker0", "veth5e6f@docker0"}; !slices.Equal(web, exp) {
		t.Errorf("-C web: %v, want %v", web, exp)
	}
	// By ID prefix too.
	if byID := want(Config{Containers: []string{"a91"}, NoContainerSide: true}); !slices.Equal(byID, []string{"br-1234@br-1234", "vethaa11@br-1234"}) {
		t.Errorf("-C a91: %v", byID)
	}
	// Interfaces alone: only those.
	if eth := want(Config{Ifaces: []string{"eth0"}}); !slices.Equal(eth, []string{"eth0@"}) {
		t.Errorf("-i eth0: %v", eth)
	}
	// ... or besides every bridge (-i +eth0).
	exp := append(slices.Clone(all), "eth0@")
	sort.Strings(exp)
	if plus := want(Config{Ifaces: []string{"eth0"}, AllBridges: true, NoContainerSide: true}); !slices.Equal(plus, exp) {
		t.Errorf("-i +eth0: %v, want every bridge and eth0", plus)
	}
	// A container that is gone selects nothing (and no error: it may come back).
	if gone := want(Config{Containers: []string{"nosuch"}}); len(gone) != 0 {
		t.Errorf("-C nosuch: %v, want nothing", gone)
	}
	// With container sides, each port's peer (eth0 in the container) is added.
	sides := want(Config{Containers: []string{"api"}})
	if !slices.Contains(sides, "eth0@br-1234") && !slices.Contains(sides, "eth0@") {
		t.Errorf("-C api with container side: %v lacks api's eth0", sides)
	}
}
