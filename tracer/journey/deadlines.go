package journey

// The open journeys wait in two lists, each in the order they finish:
// by deadline, then by ID. One holds journeys still taking hops (their
// deadline is their latest event plus the timeout), the other journeys that
// reached an end (plus the grace). Events come in time order nearly always,
// so a journey an event touches gets the latest deadline of its list and
// moves to its tail at the cost of a few pointers: a heap sifted it past
// journeys touched long before, each a cache miss.
type deadlineList struct {
	head, tail *open
}

// finishesBefore tells whether x finishes before y.
func finishesBefore(x, y *open) bool {
	if x.deadline != y.deadline {
		return x.deadline < y.deadline
	}
	return x.j.ID < y.j.ID
}

// insert places o in l by its deadline, looking from the tail.
func (l *deadlineList) insert(o *open) {
	after := l.tail
	for after != nil && finishesBefore(o, after) {
		after = after.prev
	}
	o.prev = after
	if after == nil {
		o.next = l.head
		l.head = o
	} else {
		o.next = after.next
		after.next = o
	}
	if o.next == nil {
		l.tail = o
	} else {
		o.next.prev = o
	}
}

func (l *deadlineList) unlink(o *open) {
	if o.prev == nil {
		l.head = o.next
	} else {
		o.prev.next = o.next
	}
	if o.next == nil {
		l.tail = o.prev
	} else {
		o.next.prev = o.prev
	}
	o.prev, o.next = nil, nil
}

// list is where o waits.
func (a *Assembler) list(o *open) *deadlineList {
	if o.inGrace {
		return &a.ending
	}
	return &a.waiting
}

// wait puts o, not waiting yet, in the list of its state.
func (a *Assembler) wait(o *open) {
	o.inGrace = o.terminal
	a.list(o).insert(o)
	a.inFlight++
}

// unwait takes o out of its list.
func (a *Assembler) unwait(o *open) {
	a.list(o).unlink(o)
	a.inFlight--
}

// soonest is the open journey that finishes first, or nil.
func (a *Assembler) soonest() *open {
	w, e := a.waiting.head, a.ending.head
	switch {
	case w == nil:
		return e
	case e == nil:
		return w
	case finishesBefore(e, w):
		return e
	}
	return w
}
