package journey

import (
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// fakeNames is a Names whose answers the test changes; a refresh is done
// when the test says so.
type fakeNames struct {
	eps       map[topology.Key]topology.Endpoint
	naming    map[topology.Key]topology.Naming
	requested uint64
	done      uint64
}

func (f *fakeNames) Lookup(k topology.Key) (topology.Endpoint, bool) {
	e, ok := f.eps[k]
	return e, ok
}
func (f *fakeNames) Naming(k topology.Key) topology.Naming { return f.naming[k] }
func (f *fakeNames) Refresh() uint64                       { f.requested++; return f.requested }
func (f *fakeNames) Refreshed(t uint64) bool               { return f.done >= t }

var (
	keyVeth = topology.Key{NetnsIno: 1, Ifindex: 10}
	keyEth0 = topology.Key{NetnsIno: 7, Ifindex: 2}
	keyHost = topology.Key{NetnsIno: 1, Ifindex: 3}
)

func journeyThrough(id uint64, keys ...topology.Key) *Journey {
	j := &Journey{ID: id}
	for _, k := range keys {
		ep := topology.Endpoint{NetnsIno: k.NetnsIno, Ifindex: k.Ifindex, Name: "x", Role: topology.RoleHost}
		if k.NetnsIno != keyHost.NetnsIno {
			ep.Role, ep.NetnsName = topology.RoleNetns, "sleep[42]" // named after a process
		}
		j.Hops = append(j.Hops, Hop{Endpoint: ep, Resolved: true})
	}
	return j
}

func TestNameWaitHoldsUntilRefreshed(t *testing.T) {
	names := &fakeNames{
		eps: map[topology.Key]topology.Endpoint{
			keyEth0: {NetnsIno: 7, Ifindex: 2, Name: "eth0", Role: topology.RoleNetns, NetnsName: "sleep[42]"},
		},
		naming: map[topology.Key]topology.Naming{keyEth0: topology.NameProvisional},
	}
	var out []*Journey
	w := NewNameWait(names, 500*time.Millisecond, func(j *Journey) { out = append(out, j) })
	ms := uint64(time.Millisecond)

	w.Add(journeyThrough(1, keyHost), 0)
	if len(out) != 1 {
		t.Fatalf("a journey with final names was held: %d out", len(out))
	}
	w.Add(journeyThrough(2, keyHost, keyEth0), 1*ms)
	w.Add(journeyThrough(3, keyHost), 2*ms) // behind 2: keeps the order
	if len(out) != 1 || names.requested != 1 {
		t.Fatalf("held journey went out (%d out) or no refresh asked (%d)", len(out), names.requested)
	}
	w.Tick(100 * ms)
	if len(out) != 1 {
		t.Fatalf("released before the refresh was done")
	}
	// Docker tells: the namespace is container web's.
	web := &topology.Container{ID: "abc", Name: "web"}
	names.eps[keyEth0] = topology.Endpoint{NetnsIno: 7, Ifindex: 2, Name: "eth0", Role: topology.RoleContainer, Container: web}
	names.naming[keyEth0] = topology.NameFinal
	names.done = 1
	w.Tick(101 * ms)
	if len(out) != 3 || out[1].ID != 2 || out[2].ID != 3 {
		t.Fatalf("after the refresh: %d out, want journeys 1, 2, 3 in order", len(out))
	}
	if got := out[1].Hops[1].Label(); got != "web:eth0" {
		t.Errorf("renamed hop label %q, want web:eth0", got)
	}
	if s := w.Stats(); s.Waited != 1 || s.GaveUp != 0 {
		t.Errorf("stats %+v, want 1 waited, 0 gave up", s)
	}
}

func TestNameWaitGivesUpAfterBound(t *testing.T) {
	names := &fakeNames{eps: map[topology.Key]topology.Endpoint{}, naming: map[topology.Key]topology.Naming{keyEth0: topology.NameProvisional}}
	var out []*Journey
	w := NewNameWait(names, 500*time.Millisecond, func(j *Journey) { out = append(out, j) })
	ms := uint64(time.Millisecond)
	w.Add(journeyThrough(1, keyEth0), 0)
	w.Tick(499 * ms)
	if len(out) != 0 {
		t.Fatal("released before the bound")
	}
	w.Tick(500 * ms)
	if len(out) != 1 {
		t.Fatal("not released at the bound")
	}
	if s := w.Stats(); s.GaveUp != 1 {
		t.Errorf("stats %+v, want 1 gave up", s)
	}
	// The key is settled: the next journey through it is not held.
	w.Add(journeyThrough(2, keyEth0), 600*ms)
	if len(out) != 2 {
		t.Errorf("second journey through a settled key was held")
	}
	// ... until the settle period ends.
	w.Add(journeyThrough(3, keyEth0), 600*ms+settleFor)
	if len(out) != 2 {
		t.Errorf("journey after the settle period was not held")
	}
}

// A namespace Docker does not own stays provisional after a refresh: the
// journey goes on at once, and later ones through it are not held.
func TestNameWaitForeignNamespace(t *testing.T) {
	names := &fakeNames{eps: map[topology.Key]topology.Endpoint{}, naming: map[topology.Key]topology.Naming{keyEth0: topology.NameProvisional}}
	var out []*Journey
	w := NewNameWait(names, 500*time.Millisecond, func(j *Journey) { out = append(out, j) })
	w.Add(journeyThrough(1, keyEth0), 0)
	names.done = names.requested
	w.Tick(1)
	if len(out) != 1 {
		t.Fatal("not released after the refresh")
	}
	w.Add(journeyThrough(2, keyEth0), 2)
	if len(out) != 2 || names.requested != 1 {
		t.Errorf("journey through a settled foreign namespace held (out %d, refreshes asked %d)", len(out), names.requested)
	}
	if s := w.Stats(); s.GaveUp != 0 || s.Waited != 1 {
		t.Errorf("stats %+v, want 1 waited, 0 gave up", s)
	}
}

func TestNameWaitFlush(t *testing.T) {
	names := &fakeNames{eps: map[topology.Key]topology.Endpoint{}, naming: map[topology.Key]topology.Naming{keyEth0: topology.NameProvisional}}
	var out []*Journey
	w := NewNameWait(names, time.Second, func(j *Journey) { out = append(out, j) })
	w.Add(journeyThrough(1, keyEth0), 0)
	w.Add(journeyThrough(2, keyHost), 0)
	w.Flush()
	if len(out) != 2 || w.Held() != 0 {
		t.Errorf("flush: %d out, %d held", len(out), w.Held())
	}
}

// A container sandbox Docker has not listed yet is waited for every time:
// a refresh before the container runs must not keep later journeys unnamed.
func TestNameWaitPendingNeverSettles(t *testing.T) {
	names := &fakeNames{eps: map[topology.Key]topology.Endpoint{}, naming: map[topology.Key]topology.Naming{keyEth0: topology.NamePending}}
	var out []*Journey
	w := NewNameWait(names, 500*time.Millisecond, func(j *Journey) { out = append(out, j) })
	w.Add(journeyThrough(1, keyEth0), 0)
	names.done = names.requested
	w.Tick(1)
	w.Add(journeyThrough(2, keyEth0), 2)
	if len(out) != 1 || names.requested != 2 {
		t.Fatalf("second journey through a pending name not held (out %d, refreshes asked %d)", len(out), names.requested)
	}
	web := &topology.Container{ID: "abc", Name: "web"}
	names.eps[keyEth0] = topology.Endpoint{NetnsIno: 7, Ifindex: 2, Name: "eth0", Role: topology.RoleContainer, Container: web}
	names.naming[keyEth0] = topology.NameFinal
	names.done = names.requested
	w.Tick(3)
	if len(out) != 2 || out[1].Hops[0].Label() != "web:eth0" {
		t.Fatalf("after Docker named it: %d out", len(out))
	}
}

// A hop named after a process when it was added, whose container Docker
// told about before the journey finished, goes out with the container's
// name and without waiting.
func TestNameWaitFreshensNamesFinalByNow(t *testing.T) {
	web := &topology.Container{ID: "abc", Name: "web"}
	names := &fakeNames{
		eps:    map[topology.Key]topology.Endpoint{keyEth0: {NetnsIno: 7, Ifindex: 2, Name: "eth0", Role: topology.RoleContainer, Container: web}},
		naming: map[topology.Key]topology.Naming{},
	}
	var out []*Journey
	w := NewNameWait(names, time.Second, func(j *Journey) { out = append(out, j) })
	j := journeyThrough(1, keyHost, keyEth0)
	j.Hops[1].Endpoint = topology.Endpoint{NetnsIno: 7, Ifindex: 2, Name: "eth0", Role: topology.RoleNetns, NetnsName: "runc[42]"}
	w.Add(j, 0)
	if len(out) != 1 || names.requested != 0 {
		t.Fatalf("out %d, refreshes asked %d: want it out at once", len(out), names.requested)
	}
	if got := out[0].Hops[1].Label(); got != "web:eth0" {
		t.Errorf("hop label %q, want web:eth0", got)
	}
}
