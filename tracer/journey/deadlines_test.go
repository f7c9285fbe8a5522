package journey

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestDeadlineOrder moves journeys between the two lists with deadlines
// mostly rising (events in time order) and now and then earlier (events
// out of order, equal deadlines), and checks after every step that each
// list is in finishing order and holds exactly its journeys, and that
// soonest is the first of them all.
func TestDeadlineOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a := &Assembler{}
	var live []*open
	now := uint64(1000)
	for step := 0; step < 6000; step++ {
		switch op := rng.IntN(10); {
		case op < 4 || len(live) == 0: // a new journey
			o := &open{j: &Journey{ID: uint64(step + 1)}, deadline: now + uint64(rng.IntN(3))*100}
			o.terminal = rng.IntN(2) == 0
			a.wait(o)
			live = append(live, o)
		case op < 8: // touched: a new deadline, maybe another list
			o := live[rng.IntN(len(live))]
			a.unwait(o)
			o.terminal = o.terminal || rng.IntN(3) == 0
			o.deadline = now + uint64(rng.IntN(3))*100
			if rng.IntN(8) == 0 {
				o.deadline -= uint64(rng.IntN(900)) // out of order
			}
			a.wait(o)
		default: // finished
			i := rng.IntN(len(live))
			a.unwait(live[i])
			live = slices.Delete(live, i, i+1)
		}
		now += uint64(rng.IntN(50))

		if a.inFlight != len(live) {
			t.Fatalf("step %d: inFlight %d, want %d", step, a.inFlight, len(live))
		}
		var inLists []*open
		for _, l := range []*deadlineList{&a.waiting, &a.ending} {
			var prev *open
			for o := l.head; o != nil; o = o.next {
				if o.prev != prev {
					t.Fatalf("step %d: journey %d's prev is not the one before it", step, o.j.ID)
				}
				if prev != nil && finishesBefore(o, prev) {
					t.Fatalf("step %d: journey %d (deadline %d) after %d (deadline %d)", step, o.j.ID, o.deadline, prev.j.ID, prev.deadline)
				}
				if (l == &a.ending) != o.terminal {
					t.Fatalf("step %d: journey %d (terminal %v) in the wrong list", step, o.j.ID, o.terminal)
				}
				inLists = append(inLists, o)
				prev = o
			}
			if l.tail != prev {
				t.Fatalf("step %d: tail is not the last journey", step)
			}
		}
		if len(inLists) != len(live) {
			t.Fatalf("step %d: %d journeys in the lists, want %d", step, len(inLists), len(live))
		}
		if len(live) > 0 {
			first := slices.MinFunc(live, func(x, y *open) int {
				if finishesBefore(x, y) {
					return -1
				}
				return 1
			})
			if got := a.soonest(); got != first {
				t.Fatalf("step %d: soonest is journey %d, want %d", step, got.j.ID, first.j.ID)
			}
		} else if a.soonest() != nil {
			t.Fatalf("step %d: soonest of no journeys is not nil", step)
		}
	}
}
