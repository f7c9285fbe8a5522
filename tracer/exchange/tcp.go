package exchange

import (
	"github.com/hoptrace/hoptrace/tracer/event"
)

// maxPending caps the requests a connection keeps waiting for answers.
const maxPending = 64

// maxWaiting caps a connection's exchanges waiting for their response to
// reach the client.
const maxWaiting = 16

// tcpConn is one TCP connection, keyed by its client -> server tuple as the
// server sees it.
type tcpConn struct {
	key            tuple
	client, server string
	named          bool // the names come from a segment seen at both ends
	seen           uint64

	// The handshake: when the latest SYN arrived and was first sent, and
	// whether the SYN-ACK was seen.
	synIn, synSent, synID uint64
	shaken                bool

	// Highest sequence number of data from each side so far.
	cliSeq, srvSeq uint32
	cliAny, srvAny bool

	reqs     []*request // waiting for an answer, oldest first
	respOpen bool       // the server's current write has not ended (no PSH yet)
	lastOut  uint64     // when the server's latest write began leaving
	answered uint32     // last sequence number of the latest answered request
	anyDone  bool
	waiting  []waiting
	retrans  int   // retransmissions since the previous exchange
	fin      uint8 // 1: client FIN seen, 2: server FIN seen
}

// request is the client's data up to a segment with PSH.
type request struct {
	first, last uint32 // sequence numbers of its first and last segment
	closed      bool   // its last segment (PSH or FIN) was seen
	missing     []hole // segments sent but not (yet) arrived
	// in is when its last segment to arrive arrived; inSent when that
	// segment was first sent; inID its journey.
	in, inSent, inID uint64
}

// hole is a request segment that was sent (first at sent) and has not
// arrived.
type hole struct {
	seq  uint32
	sent uint64
}

// waiting is an exchange whose first response segment was lost: it waits
// for the retransmission to reach the client.
type waiting struct {
	e   Exchange
	seq uint32
}

func (q *request) complete() bool { return q.in != 0 && len(q.missing) == 0 }

// arrived notes a segment of q arriving at the server at in, first sent at sent.
func (q *request) arrived(in, sent, id uint64) {
	if in >= q.in {
		q.in, q.inSent, q.inID = in, sent, id
	}
}

// segment adds one of q's segments: arrived, or lost on the way.
func (q *request) segment(s *seg, sent uint64) {
	if s.to == nil {
		if len(q.missing) < maxPending {
			q.missing = append(q.missing, hole{s.seq, sent})
		}
		return
	}
	q.arrived(s.to.TimeNS, sent, s.j.ID)
}

// fill takes a segment of q seen after later ones: a retransmission (r
// set) fills a hole; an original that finished late counts as any other.
func (q *request) fill(s *seg, sent uint64, retransmitted bool) {
	for i, m := range q.missing {
		if m.seq != s.seq {
			continue
		}
		if s.to != nil {
			q.missing = append(q.missing[:i], q.missing[i+1:]...)
			q.arrived(s.to.TimeNS, sent, s.j.ID)
		}
		return
	}
	if !retransmitted {
		q.segment(s, sent)
	}
	// Else a repeat of a segment that had arrived: the server had it already.
}

// tcpSeg files a TCP segment under its connection.
func (t *Tracker) tcpSeg(s *seg, r *Retransmit) {
	if s.has(event.TCPSyn) && !s.has(event.TCPAck) {
		t.syn(s, r)
		return
	}
	c, fromClient := t.lookup(s)
	if c == nil {
		if !s.data && !s.has(event.TCPSyn) {
			return // an ACK, FIN or RST of a connection not followed
		}
		if c, fromClient = t.open(s); c == nil {
			return
		}
	}
	c.seen = t.now
	if r != nil {
		c.retrans++
	}
	if fromClient && !c.named && s.to != nil {
		c.name(s)
	}
	switch {
	case s.has(event.TCPRst):
		t.forget(c)
		delete(t.tcp, c.key)
		return
	case s.has(event.TCPSyn): // the SYN-ACK
		t.synAck(c, s, r)
		return
	}
	sent := s.sent()
	if r != nil {
		sent = r.FirstSent
	}
	if !fromClient && s.has(event.TCPAck) {
		c.acked(s.ack, s.sent())
	}
	if fromClient {
		c.clientData(s, sent, r != nil)
		if s.has(event.TCPFin) {
			c.fin |= 1
		}
	} else {
		t.serverData(c, s, sent)
		if s.has(event.TCPFin) {
			c.fin |= 2
			c.respOpen = false
		}
	}
	if c.fin == 3 && len(c.waiting) == 0 {
		delete(t.tcp, c.key)
	}
}

// lookup finds a segment's connection and which side sent it.
func (t *Tracker) lookup(s *seg) (c *tcpConn, fromClient bool) {
	if s.to != nil {
		if c = t.tcp[s.in]; c != nil {
			return c, true
		}
	}
	if c = t.tcp[s.out.reverse()]; c != nil {
		return c, false
	}
	if s.to == nil {
		// Lost on the way: its tuple as sent is the server's view unless
		// NAT was on the way.
		if c = t.tcp[s.out]; c != nil {
			return c, true
		}
	}
	return nil, false
}

// open starts following a connection whose SYN was not seen, at a data
// segment: the side with the lower port is the server.
func (t *Tracker) open(s *seg) (*tcpConn, bool) {
	fromClient := s.out.dst.Port() <= s.out.src.Port()
	var key tuple
	switch {
	case fromClient && s.to != nil:
		key = s.in
	case fromClient:
		key = s.out // lost on the way: as sent, the server's view unless NAT was on the way
	default:
		key = s.out.reverse()
	}
	c := &tcpConn{key: key, seen: t.now}
	switch {
	case fromClient && s.to != nil:
		c.name(s)
	case fromClient:
		c.client, c.server = nameAt(s.from, key.src.Addr(), true), key.dst.Addr().String()
	default:
		c.server = nameAt(s.from, s.out.src.Addr(), true)
		c.client = nameAt(s.to, key.src.Addr(), false)
	}
	t.tcp[key] = c
	capped(t.tcp, t.cfg.MaxConns, func(c *tcpConn) uint64 { return c.seen }, t.forget)
	return c, fromClient
}

// name takes the connection's names from a client segment that arrived.
func (c *tcpConn) name(s *seg) {
	c.client = nameAt(s.from, s.out.src.Addr(), true)
	c.server = nameAt(s.to, s.in.dst.Addr(), false)
	c.named = true
}

// syn starts a connection at a SYN that reached the server.
func (t *Tracker) syn(s *seg, r *Retransmit) {
	if s.to == nil {
		return // its retransmission will
	}
	sent := s.sent()
	if r != nil {
		sent = r.FirstSent
	}
	c := t.tcp[s.in]
	if c != nil && (c.shaken || r == nil) {
		// A new connection on the same ports.
		t.forget(c)
		c = nil
	}
	if c == nil {
		c = &tcpConn{key: s.in, seen: t.now}
		c.name(s)
		t.tcp[s.in] = c
		capped(t.tcp, t.cfg.MaxConns, func(c *tcpConn) uint64 { return c.seen }, t.forget)
	}
	c.seen = t.now
	if r != nil {
		c.retrans++
	}
	c.synIn, c.synSent, c.synID = s.to.TimeNS, sent, s.j.ID
}

// synAck completes the handshake exchange at the first SYN-ACK.
func (t *Tracker) synAck(c *tcpConn, s *seg, r *Retransmit) {
	if !c.srvAny || seqBefore(c.srvSeq, s.seq) {
		c.srvSeq, c.srvAny = s.seq, true
	}
	if c.shaken || c.synIn == 0 {
		if r != nil && s.to != nil {
			t.delivered(c, s)
		}
		return
	}
	c.shaken = true
	out := s.sent()
	if r != nil {
		out = r.FirstSent
	}
	e := c.exchange(c.synSent, c.synIn, c.synID, out, s.j.ID)
	e.Handshake = true
	t.respond(c, e, s)
}

// clientData adds a data segment from the client to its request.
func (c *tcpConn) clientData(s *seg, sent uint64, retransmitted bool) {
	if !s.data {
		if s.has(event.TCPFin) {
			if q := c.open(); q != nil {
				q.closed = true
			}
		}
		return
	}
	if c.cliAny && !seqBefore(c.cliSeq, s.seq) {
		// Not new: a retransmission, or a segment that finished after a
		// later one.
		if q := c.requestAt(s.seq); q != nil {
			q.fill(s, sent, retransmitted)
		}
		return
	}
	c.cliSeq, c.cliAny = s.seq, true
	q := c.open()
	if q == nil {
		c.dropAnswered()
		if len(c.reqs) >= maxPending {
			c.reqs = c.reqs[1:]
		}
		q = &request{first: s.seq}
		c.reqs = append(c.reqs, q)
	}
	q.last = s.seq
	q.segment(s, sent)
	if s.has(event.TCPPsh) || s.has(event.TCPFin) {
		q.closed = true
	}
}

// open is the request still being written, nil when the last one ended.
func (c *tcpConn) open() *request {
	if n := len(c.reqs); n > 0 && !c.reqs[n-1].closed {
		return c.reqs[n-1]
	}
	return nil
}

// requestAt is the waiting request holding sequence number seq: the newest
// that starts at or before it; a segment before all of them and after the
// last answered request starts the oldest.
func (c *tcpConn) requestAt(seq uint32) *request {
	for i := len(c.reqs) - 1; i >= 0; i-- {
		if !seqBefore(seq, c.reqs[i].first) {
			return c.reqs[i]
		}
	}
	if len(c.reqs) > 0 && (!c.anyDone || seqBefore(c.answered, seq)) {
		c.reqs[0].first = seq
		return c.reqs[0]
	}
	return nil
}

// dropAnswered drops, as a new request starts, the waiting requests that
// had arrived before the server's latest write began: that write answered
// them together with an earlier one (a request written in several writes).
func (c *tcpConn) dropAnswered() {
	n := 0
	for n < len(c.reqs) && c.reqs[n].complete() && c.reqs[n].in <= c.lastOut {
		c.answered, c.anyDone = c.reqs[n].last, true
		n++
	}
	c.reqs = c.reqs[n:]
}

// acked fills the holes of waiting requests that a segment from the server
// acknowledges, sent at: the server had those bytes by then, though the
// retransmission that brought them was not seen (lost, or sent in other
// pieces). Its arrival is taken as that time, an upper bound.
func (c *tcpConn) acked(ack uint32, at uint64) {
	for _, q := range c.reqs {
		n := 0
		for _, m := range q.missing {
			if seqBefore(m.seq, ack) {
				q.arrived(at, m.sent, q.inID)
				continue
			}
			q.missing[n] = m
			n++
		}
		q.missing = q.missing[:n]
	}
}

// serverData pairs the first segment of a server write with the oldest
// waiting request, when that had arrived in full.
func (t *Tracker) serverData(c *tcpConn, s *seg, sent uint64) {
	if !s.data {
		return
	}
	if c.srvAny && !seqBefore(c.srvSeq, s.seq) {
		// A retransmission: it may bring a waiting response to the client.
		if s.to != nil {
			t.delivered(c, s)
		}
		return
	}
	c.srvSeq, c.srvAny = s.seq, true
	starts := !c.respOpen
	c.respOpen = !s.has(event.TCPPsh)
	if !starts {
		return
	}
	c.lastOut = sent
	if len(c.reqs) == 0 {
		return
	}
	q := c.reqs[0]
	if !q.complete() || q.in > sent {
		return
	}
	c.reqs = c.reqs[1:]
	c.answered, c.anyDone = q.last, true
	t.respond(c, c.exchange(q.inSent, q.in, q.inID, sent, s.j.ID), s)
}

// exchange makes an exchange of the connection's request and response.
func (c *tcpConn) exchange(reqSent, reqIn, reqID, respOut, respID uint64) Exchange {
	e := Exchange{
		Proto: event.ProtoTCP, Client: c.client, Server: c.server,
		ClientAddr: c.key.src, ServerAddr: c.key.dst,
		RequestID: reqID, ResponseID: respID,
		RequestSent: reqSent, RequestIn: reqIn, ResponseOut: respOut,
		Retransmits: c.retrans,
	}
	c.retrans = 0
	return e
}

// respond emits e when its response segment s reached the client, else
// keeps it waiting for the retransmission.
func (t *Tracker) respond(c *tcpConn, e Exchange, s *seg) {
	if s.to != nil {
		e.ResponseIn = s.to.TimeNS
		t.send(&e)
		return
	}
	if len(c.waiting) >= maxWaiting {
		t.late = append(t.late, c.waiting[0].e)
		c.waiting = c.waiting[1:]
	}
	c.waiting = append(c.waiting, waiting{e: e, seq: s.seq})
}

// delivered completes the exchanges waiting for segment s, a
// retransmission from the server that reached the client.
func (t *Tracker) delivered(c *tcpConn, s *seg) {
	n := 0
	for _, w := range c.waiting {
		if w.seq == s.seq {
			w.e.ResponseIn = s.to.TimeNS
			t.send(&w.e)
			continue
		}
		c.waiting[n] = w
		n++
	}
	clear(c.waiting[n:])
	c.waiting = c.waiting[:n]
}

// expire lets go (into t.late) the exchanges whose response left before
// the time given.
func (c *tcpConn) expire(t *Tracker, before uint64) {
	n := 0
	for _, w := range c.waiting {
		if w.e.ResponseOut < before {
			t.late = append(t.late, w.e)
			continue
		}
		c.waiting[n] = w
		n++
	}
	clear(c.waiting[n:])
	c.waiting = c.waiting[:n]
}
