package exchange

import "github.com/hoptrace/hoptrace/tracer/event"

// maxUDPPending caps the requests a UDP flow keeps waiting.
const maxUDPPending = 64

// udpFlow is a client -> server UDP tuple as the server sees it, with the
// requests that reached the server and wait for a response.
type udpFlow struct {
	client, server string
	reqs           []udpRequest
	seen           uint64
}

type udpRequest struct {
	sent, in, id uint64
}

// udpSeg takes a datagram: the response to a waiting request on the
// reversed tuple, else a request when it reached its receiver.
func (t *Tracker) udpSeg(s *seg) {
	key := s.out.reverse()
	if f := t.udp[key]; f != nil {
		f.expire(s.sent() - min(uint64(t.cfg.UDPWindow), s.sent()))
		if len(f.reqs) > 0 && f.reqs[0].in <= s.sent() {
			q := f.reqs[0]
			f.reqs = f.reqs[1:]
			e := Exchange{
				Proto: event.ProtoUDP, Client: f.client, Server: f.server,
				ClientAddr: key.src, ServerAddr: key.dst,
				RequestID: q.id, ResponseID: s.j.ID,
				RequestSent: q.sent, RequestIn: q.in, ResponseOut: s.sent(),
			}
			if s.to != nil {
				e.ResponseIn = s.to.TimeNS
			}
			if len(f.reqs) == 0 {
				delete(t.udp, key)
			}
			t.send(&e)
			return
		}
	}
	if s.to == nil {
		return
	}
	f := t.udp[s.in]
	if f == nil {
		f = &udpFlow{client: nameAt(s.from, s.out.src.Addr(), true), server: nameAt(s.to, s.in.dst.Addr(), false), seen: t.now}
		t.udp[s.in] = f
		capped(t.udp, t.cfg.MaxConns, func(f *udpFlow) uint64 { return f.seen }, func(*udpFlow) {})
	}
	f.seen = t.now
	if len(f.reqs) >= maxUDPPending {
		f.reqs = f.reqs[1:]
	}
	f.reqs = append(f.reqs, udpRequest{sent: s.sent(), in: s.to.TimeNS, id: s.j.ID})
}

// expire drops the requests that arrived before the time given.
func (f *udpFlow) expire(before uint64) {
	n := 0
	for n < len(f.reqs) && f.reqs[n].in < before {
		n++
	}
	f.reqs = f.reqs[n:]
}
