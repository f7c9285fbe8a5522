package journey

// Min-heap of open journeys by (deadline, ID), so equal input gives equal output.

func (a *Assembler) less(x, y int) bool {
	ox, oy := a.heap[x], a.heap[y]
	if ox.deadline != oy.deadline {
		return ox.deadline < oy.deadline
	}
	return ox.j.ID < oy.j.ID
}

func (a *Assembler) swap(x, y int) {
	a.heap[x], a.heap[y] = a.heap[y], a.heap[x]
	a.heap[x].heapIdx = x
	a.heap[y].heapIdx = y
}

func (a *Assembler) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !a.less(i, p) {
			return
		}
		a.swap(i, p)
		i = p
	}
}

func (a *Assembler) down(i int) bool {
	start := i
	n := len(a.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && a.less(r, l) {
			m = r
		}
		if !a.less(m, i) {
			break
		}
		a.swap(i, m)
		i = m
	}
	return i > start
}

func (a *Assembler) fix(i int) {
	if !a.down(i) {
		a.up(i)
	}
}

func (a *Assembler) remove(i int) {
	last := len(a.heap) - 1
	if i != last {
		a.swap(i, last)
	}
	a.heap[last] = nil
	a.heap = a.heap[:last]
	if i != last {
		a.fix(i)
	}
}
