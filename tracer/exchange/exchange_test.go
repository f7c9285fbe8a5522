package exchange_test

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/exchange"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
)

const (
	hop4 = 30 * time.Microsecond // transit along four hops
	msD  = time.Millisecond
)

// TestKeepAlive: three requests on one connection, the last answered in
// several segments; the handshake is an exchange of its own.
func TestKeepAlive(t *testing.T) {
	s := &sim{t: t}
	s.handshake(at(0))
	// Request 1: the server takes 50ms.
	s.send(at(1*ms), jt.ClientToWeb, c2w(psh, 1001), dataLen)
	s.send(at(1*ms+30*us+50*ms), jt.WebToClient, w2c(psh, 5001), dataLen)
	s.send(at(52*ms), jt.ClientToWeb, c2w(ack, 1101), ackLen)
	// Request 2: 10ms.
	s.send(at(100*ms), jt.ClientToWeb, c2w(psh, 1101), dataLen)
	s.send(at(100*ms+30*us+10*ms), jt.WebToClient, w2c(psh, 5201), dataLen)
	// Request 3: 30ms, the response in three segments; the client ACKs
	// between them with the same sequence number (no retransmission).
	s.send(at(200*ms), jt.ClientToWeb, c2w(psh, 1201), dataLen)
	r3 := at(200*ms + 30*us + 30*ms)
	s.send(r3, jt.WebToClient, w2c(ack, 5401), fullLen)
	s.send(r3+100*us, jt.WebToClient, w2c(ack, 6849), fullLen)
	s.send(r3+200*us, jt.WebToClient, w2c(psh, 8297), dataLen)
	s.send(r3+300*us, jt.ClientToWeb, c2w(ack, 1301), ackLen)
	s.send(r3+400*us, jt.ClientToWeb, c2w(ack, 1301), ackLen)
	// The close.
	s.send(at(300*ms), jt.ClientToWeb, c2w(fin, 1301), ackLen)
	s.send(at(300*ms+100*us), jt.WebToClient, w2c(fin, 8397), ackLen)
	s.send(at(300*ms+200*us), jt.ClientToWeb, c2w(ack, 1302), ackLen)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{
		{handshake: true, request: hop4, server: 20 * time.Microsecond, response: hop4},
		{request: hop4, server: 50 * msD, response: hop4},
		{request: hop4, server: 10 * msD, response: hop4},
		{request: hop4, server: 30 * msD, response: hop4},
	})
	if len(res.links) != 0 {
		t.Errorf("links %+v, want none: nothing was sent twice", res.links)
	}
	e := res.exchanges[1]
	if e.ClientAddr != clientAddr || e.ServerAddr != webAddr || e.Port() != 8080 || e.ProtoName() != "tcp" {
		t.Errorf("exchange %+v: want %v -> %v tcp", e, clientAddr, webAddr)
	}
}

// TestPipelined: three requests before the first response; each response
// answers the oldest waiting request.
func TestPipelined(t *testing.T) {
	s := &sim{t: t}
	s.handshake(at(0))
	for i := uint64(0); i < 3; i++ {
		s.send(at(1*ms+i*100*us), jt.ClientToWeb, c2w(psh, 1001+uint32(i)*100), dataLen)
	}
	// Responses at 6.03, 11.03 and 16.03ms: the requests arrived at 1.03,
	// 1.13 and 1.23ms.
	for i := uint64(0); i < 3; i++ {
		s.send(at(6*ms+30*us+i*5*ms), jt.WebToClient, w2c(psh, 5001+uint32(i)*100), dataLen)
	}
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{
		{handshake: true, request: hop4, server: 20 * time.Microsecond, response: hop4},
		{request: hop4, server: 5 * msD, response: hop4},
		{request: hop4, server: 9900 * time.Microsecond, response: hop4},
		{request: hop4, server: 14800 * time.Microsecond, response: hop4},
	})
}

// TestResponseInWrites: a server that writes its response in two writes
// (status line, then the rest) answers one request, and the next request
// pairs with the next response.
func TestResponseInWrites(t *testing.T) {
	s := &sim{t: t}
	s.send(at(1*ms), jt.ClientToWeb, c2w(psh, 1001), dataLen)
	s.send(at(21*ms+30*us), jt.WebToClient, w2c(psh, 5001), dataLen)
	s.send(at(21*ms+130*us), jt.WebToClient, w2c(psh, 5101), dataLen)
	s.send(at(100*ms), jt.ClientToWeb, c2w(psh, 1101), dataLen)
	s.send(at(105*ms+30*us), jt.WebToClient, w2c(psh, 5201), dataLen)
	s.send(at(105*ms+130*us), jt.WebToClient, w2c(psh, 5301), dataLen)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{
		{request: hop4, server: 20 * msD, response: hop4},
		{request: hop4, server: 5 * msD, response: hop4},
	})
}

// TestRequestInWrites: a client that writes one request in two writes
// (headers, then body) gets one answer; the next request is not paired
// with a stale half of the first.
func TestRequestInWrites(t *testing.T) {
	s := &sim{t: t}
	s.send(at(1*ms), jt.ClientToWeb, c2w(psh, 1001), dataLen)
	s.send(at(1*ms+10*us), jt.ClientToWeb, c2w(psh, 1101), dataLen)
	s.send(at(21*ms+40*us), jt.WebToClient, w2c(psh, 5001), dataLen)
	s.send(at(100*ms), jt.ClientToWeb, c2w(psh, 1201), dataLen)
	s.send(at(100*ms+10*us), jt.ClientToWeb, c2w(psh, 1301), dataLen)
	s.send(at(105*ms+40*us), jt.WebToClient, w2c(psh, 5101), dataLen)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{
		{request: hop4, server: 20*msD + 10*time.Microsecond, response: hop4},
		{request: hop4, server: 5*msD + 10*time.Microsecond, response: hop4},
	})
}

// TestLostRequestSegment: the first of a request's two segments is dropped
// at the client's veth and retransmitted 200ms later; the request arrived
// in full only then, and its network time says so. The retransmission
// links to the dropped journey. The server's SACKs are not data.
func TestLostRequestSegment(t *testing.T) {
	s := &sim{t: t}
	s.handshake(at(0))
	s.drop(at(1*ms), jt.ClientToWeb, 2, c2w(ack, 1001), fullLen)
	s.send(at(1*ms+10*us), jt.ClientToWeb, c2w(psh, 2449), dataLen)
	s.send(at(1*ms+100*us), jt.WebToClient, w2c(ack, 5001), sackLen)
	s.send(at(1*ms+200*us), jt.WebToClient, w2c(ack, 5001), sackLen)
	s.send(at(201*ms), jt.ClientToWeb, c2w(ack, 1001), fullLen)
	s.send(at(211*ms+30*us), jt.WebToClient, w2c(psh, 5001), dataLen)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{
		{handshake: true, request: hop4, server: 20 * time.Microsecond, response: hop4},
		{request: 200*msD + hop4, server: 10 * msD, response: hop4, retransmits: 1},
	})
	if len(res.links) != 1 {
		t.Fatalf("links %+v, want one", res.links)
	}
	for id, r := range res.links {
		j, orig := res.journeys[id], res.journeys[r.Of]
		if j == nil || orig == nil || j.Packet().Seq != 1001 || orig.Drop == nil {
			t.Fatalf("link %d -> %+v: want the retransmitted segment 1001 to its dropped first copy", id, r)
		}
		if r.After != 200*msD || r.Nth != 1 || r.First != r.Of || r.FirstSent != orig.Hops[0].TimeNS {
			t.Errorf("link %+v: want after 200ms, the first repeat", r)
		}
		if got, want := r.OfFate(), "DROPPED at veth1a2b: NETFILTER_DROP"; got != want {
			t.Errorf("fate %q, want %q", got, want)
		}
	}
}

// TestUnseenRetransmission: the retransmission of a dropped request
// segment is not seen (its events lost); the server's ACK covering it says
// the request had arrived by then, and the connection goes on.
func TestUnseenRetransmission(t *testing.T) {
	s := &sim{t: t}
	s.drop(at(1*ms), jt.ClientToWeb, 2, c2w(ack, 1001), fullLen)
	s.send(at(1*ms+10*us), jt.ClientToWeb, c2w(psh, 2449), dataLen)
	sack := w2c(ack, 5001)
	sack.Ack = 1001
	s.send(at(1*ms+100*us), jt.WebToClient, sack, sackLen)
	covered := w2c(ack, 5001)
	covered.Ack = 2549
	s.send(at(201*ms), jt.WebToClient, covered, ackLen)
	s.send(at(211*ms), jt.WebToClient, w2c(psh, 5001), dataLen)
	s.send(at(300*ms), jt.ClientToWeb, c2w(psh, 2549), dataLen)
	s.send(at(305*ms+30*us), jt.WebToClient, w2c(psh, 5101), dataLen)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{
		{request: 200 * msD, server: 10 * msD, response: hop4},
		{request: hop4, server: 5 * msD, response: hop4},
	})
}

// TestOutOfOrderSegments: a request's first segment takes longer than its
// second and finishes after it; the request arrived when the first did.
func TestOutOfOrderSegments(t *testing.T) {
	s := &sim{t: t}
	slow := jt.Walk(jt.ClientToWeb, at(1*ms), 1*ms, 0x77, 0x77, c2w(ack, 1001))
	for i := range slow {
		slow[i].PacketID, slow[i].Len = 9999, fullLen
		s.add(&slow[i])
	}
	s.send(at(1*ms+10*us), jt.ClientToWeb, c2w(psh, 2449), dataLen)
	s.send(at(14*ms), jt.WebToClient, w2c(psh, 5001), dataLen)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{
		{request: 3 * msD, server: 10 * msD, response: hop4},
	})
	if first := res.journeys[res.order[0]]; first.Packet().Seq != 2449 {
		t.Errorf("the second segment should finish first (the test's premise), got seq %d first", first.Packet().Seq)
	}
}

// TestLostResponse: the first response segment is dropped; the exchange
// waits for its retransmission to reach the client.
func TestLostResponse(t *testing.T) {
	s := &sim{t: t}
	s.send(at(1*ms), jt.ClientToWeb, c2w(psh, 1001), dataLen)
	s.drop(at(11*ms+30*us), jt.WebToClient, 2, w2c(psh, 5001), dataLen)
	s.send(at(211*ms+30*us), jt.WebToClient, w2c(psh, 5001), dataLen)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{
		{request: hop4, server: 10 * msD, response: 200*msD + hop4},
	})
}

// TestResponseNeverArrives: without the retransmission the exchange goes
// out at the end, without a response network time.
func TestResponseNeverArrives(t *testing.T) {
	s := &sim{t: t}
	s.send(at(1*ms), jt.ClientToWeb, c2w(psh, 1001), dataLen)
	s.drop(at(11*ms+30*us), jt.WebToClient, 2, w2c(psh, 5001), dataLen)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{{request: hop4, server: 10 * msD, response: -1}})
	if _, ok := res.exchanges[0].NetworkTime(); ok {
		t.Errorf("network time known without the response's arrival")
	}
}

// TestSynRetransmit: the SYN is dropped and sent again a second later; the
// handshake's request time counts from the first SYN.
func TestSynRetransmit(t *testing.T) {
	s := &sim{t: t}
	s.drop(at(0), jt.ClientToWeb, 3, c2w(syn, 1000), 74)
	s.send(at(1000*ms), jt.ClientToWeb, c2w(syn, 1000), 74)
	s.send(at(1000*ms+50*us), jt.WebToClient, w2c(synAck, 5000), 74)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{
		{handshake: true, request: 1000*msD + hop4, server: 20 * time.Microsecond, response: hop4, retransmits: 1},
	})
	if len(res.links) != 1 {
		t.Fatalf("links %+v, want the second SYN to the first", res.links)
	}
	for _, r := range res.links {
		if r.After != 1000*msD || r.OfFate() != "DROPPED at veth3c4d: NETFILTER_DROP" {
			t.Errorf("link %+v (%s)", r, r.OfFate())
		}
	}
}

// TestRetransmitChain: a segment dropped twice links each copy to the one
// before it, and counts from the first.
func TestRetransmitChain(t *testing.T) {
	s := &sim{t: t}
	s.drop(at(0), jt.ClientToWeb, 2, c2w(psh, 1001), dataLen)
	s.drop(at(200*ms), jt.ClientToWeb, 2, c2w(psh, 1001), dataLen)
	s.send(at(600*ms), jt.ClientToWeb, c2w(psh, 1001), dataLen)
	// A FIN sent twice is a retransmission too; bare ACKs repeating a
	// sequence number are not.
	s.send(at(700*ms), jt.ClientToWeb, c2w(ack, 1101), ackLen)
	s.send(at(701*ms), jt.ClientToWeb, c2w(ack, 1101), sackLen)
	s.send(at(800*ms), jt.ClientToWeb, c2w(fin, 1101), ackLen)
	s.send(at(1000*ms), jt.ClientToWeb, c2w(fin, 1101), ackLen)
	res := s.run(exchange.Config{})
	ids := res.order
	if len(ids) != 7 {
		t.Fatalf("%d journeys, want 7", len(ids))
	}
	first, second, third, fin1, fin2 := ids[0], ids[1], ids[2], ids[5], ids[6]
	for _, c := range []struct {
		id, of, firstID uint64
		after           time.Duration
		nth             int
	}{
		{second, first, first, 200 * msD, 1},
		{third, second, first, 400 * msD, 2},
		{fin2, fin1, fin1, 200 * msD, 1},
	} {
		r, ok := res.links[c.id]
		if !ok || r.Of != c.of || r.First != c.firstID || r.After != c.after || r.Nth != c.nth {
			t.Errorf("journey %d: link %+v (%v), want of %d first %d after %v nth %d", c.id, r, ok, c.of, c.firstID, c.after, c.nth)
		}
	}
	if len(res.links) != 3 {
		t.Errorf("links %+v, want 3", res.links)
	}
	// A link says how the copy before it ended.
	for _, id := range []uint64{second, third} {
		r := res.links[id]
		if r.OfVerdict != journey.VerdictDropped || r.OfDropReason != "NETFILTER_DROP" || r.OfDropWhere == "" {
			t.Errorf("journey %d: link to %d says verdict %v, dropped at %q for %q; want dropped (NETFILTER_DROP) somewhere", id, r.Of, r.OfVerdict, r.OfDropWhere, r.OfDropReason)
		}
	}
	if r := res.links[fin2]; r.OfVerdict != journey.VerdictContainer || r.OfDropWhere != "" || r.OfDropReason != "" {
		t.Errorf("FIN link %+v: want the delivered first FIN, no drop", r)
	}
}

// TestRetransmitCap: past MaxSegments the oldest segments are forgotten,
// the newest still linked; below it (the linker's ring grown a few times on
// the way) all are still linked.
func TestRetransmitCap(t *testing.T) {
	for _, c := range []struct {
		n, limit     uint32
		firstForgets bool
	}{{40, 10, true}, {600, 1000, false}} {
		s := &sim{t: t}
		for i := range c.n {
			s.send(at(uint64(i)*ms), jt.ClientToWeb, c2w(psh, 1001+i*100), dataLen)
		}
		end := at(uint64(c.n) * ms)
		s.send(end+100*ms, jt.ClientToWeb, c2w(psh, 1001), dataLen)             // the first
		s.send(end+101*ms, jt.ClientToWeb, c2w(psh, 1001+(c.n-1)*100), dataLen) // the last
		res := s.run(exchange.Config{MaxSegments: int(c.limit)})
		ids := res.order
		if len(ids) != int(c.n)+2 {
			t.Fatalf("%d journeys, want %d", len(ids), c.n+2)
		}
		r, ok := res.links[ids[c.n]]
		if c.firstForgets && ok {
			t.Errorf("cap %d: the first of %d segments, forgotten past the cap, was linked: %+v", c.limit, c.n, r)
		}
		if !c.firstForgets && (!ok || r.Of != ids[0]) {
			t.Errorf("cap %d: the first of %d segments: link %+v (%v), want of %d", c.limit, c.n, r, ok, ids[0])
		}
		if r, ok := res.links[ids[c.n+1]]; !ok || r.Of != ids[c.n-1] {
			t.Errorf("cap %d: the last segment's copy: link %+v (%v), want of %d", c.limit, r, ok, ids[c.n-1])
		}
	}
}

// TestRetransmitHashCollision: two segments whose hashes collide are never
// linked to each other; the later one is remembered in the earlier one's
// place and its own retransmission is still linked.
func TestRetransmitHashCollision(t *testing.T) {
	exchange.CollideHashes(t)
	s := &sim{t: t}
	s.send(at(0), jt.ClientToWeb, c2w(psh, 1001), dataLen)
	s.send(at(1*ms), jt.ClientToWeb, c2w(psh, 1101), dataLen)
	s.send(at(200*ms), jt.ClientToWeb, c2w(psh, 1101), dataLen)
	res := s.run(exchange.Config{})
	ids := res.order
	if len(ids) != 3 {
		t.Fatalf("%d journeys, want 3", len(ids))
	}
	if len(res.links) != 1 {
		t.Fatalf("links %+v, want one", res.links)
	}
	if r, ok := res.links[ids[2]]; !ok || r.Of != ids[1] || r.Nth != 1 {
		t.Errorf("the copy of the second segment: link %+v (%v), want of %d", r, ok, ids[1])
	}
}

// TestRetransmitWindow: a segment seen again after the window is not linked.
func TestRetransmitWindow(t *testing.T) {
	s := &sim{t: t}
	s.drop(at(0), jt.ClientToWeb, 2, c2w(psh, 1001), dataLen)
	s.send(at(3000*ms), jt.ClientToWeb, c2w(psh, 1001), dataLen)
	res := s.run(exchange.Config{RetransmitWindow: time.Second})
	if len(res.links) != 0 {
		t.Errorf("links %+v past the window", res.links)
	}
}

// TestUDP: DNS-like requests and responses on the reversed tuple, oldest
// first; a request without an answer expires; a dropped request is none.
func TestUDP(t *testing.T) {
	s := &sim{t: t}
	q := jt.UDP(jt.ClientIP, 33000, jt.WebIP, 53)
	a := jt.UDP(jt.WebIP, 53, jt.ClientIP, 33000)
	s.send(at(1*ms), jt.ClientToWeb, q, 80)
	s.send(at(3*ms+30*us), jt.WebToClient, a, 120) // 2ms
	s.send(at(10*ms), jt.ClientToWeb, q, 80)       // never answered
	s.drop(at(20*ms), jt.ClientToWeb, 2, q, 80)    // never arrived
	s.send(at(3000*ms), jt.ClientToWeb, q, 80)
	s.send(at(3000*ms+10*us), jt.ClientToWeb, q, 80)
	s.send(at(3001*ms+30*us), jt.WebToClient, a, 120) // 1ms for the first
	s.send(at(3002*ms+40*us), jt.WebToClient, a, 120) // 2ms for the second
	res := s.run(exchange.Config{UDPWindow: time.Second})
	check(t, res.exchanges, []want{
		{request: hop4, server: 2 * msD, response: hop4},
		{request: hop4, server: 1 * msD, response: hop4},
		{request: hop4, server: 2 * msD, response: hop4},
	})
	if e := res.exchanges[0]; e.ProtoName() != "udp" || e.Port() != 53 {
		t.Errorf("exchange %+v: want udp port 53", e)
	}
}

// TestPublishedPort: a client outside the host reaches web through a
// published port (DNAT at the host); the exchange is keyed as web sees it.
func TestPublishedPort(t *testing.T) {
	s := &sim{t: t}
	outside := netip.AddrPortFrom(jt.Outside, 5555)
	published := netip.AddrPortFrom(jt.HostIP, 80)
	tcp := func(src, dst netip.AddrPort, flags uint8, seq uint32) event.Packet {
		return jt.TCP(src.Addr(), src.Port(), dst.Addr(), dst.Port(), flags, seq)
	}
	in := []event.Packet{tcp(outside, published, psh, 1001)}
	for range 3 {
		in = append(in, tcp(outside, webAddr, psh, 1001))
	}
	s.walkPkts(at(1*ms), jt.OutsideToWeb, in, dataLen)
	toOutside := []jt.Step{{Key: jt.WebEth0, Dir: event.Egress}, {Key: jt.VethWeb, Dir: event.Ingress}, {Key: jt.Docker0, Dir: event.Ingress}, {Key: jt.HostEth0, Dir: event.Egress}}
	var out []event.Packet
	for range 3 {
		out = append(out, tcp(webAddr, outside, psh, 5001))
	}
	out = append(out, tcp(published, outside, psh, 5001))
	s.walkPkts(at(5*ms+30*us), toOutside, out, dataLen)
	res := s.run(exchange.Config{})
	check(t, res.exchanges, []want{{request: hop4, server: 4 * msD, response: hop4, client: jt.Outside.String(), srv: "web"}})
	if e := res.exchanges[0]; e.ServerAddr != webAddr || e.ClientAddr != outside {
		t.Errorf("exchange %v -> %v, want %v -> %v (as web sees it)", e.ClientAddr, e.ServerAddr, outside, webAddr)
	}
}

// TestSameInOutOrder: the same conversation run twice gives the same
// exchanges in the same order (a replay shows what the live view did).
func TestSameInOutOrder(t *testing.T) {
	build := func() *sim {
		s := &sim{t: t}
		for c := uint64(0); c < 20; c++ {
			base := at(c * 3 * ms)
			port := uint16(41000 + c)
			req := jt.TCP(jt.ClientIP, port, jt.WebIP, 8080, psh, 1)
			resp := jt.TCP(jt.WebIP, 8080, jt.ClientIP, port, psh, 1)
			s.send(base, jt.ClientToWeb, req, dataLen)
			if c%3 == 0 {
				s.drop(base+1*ms, jt.WebToClient, 2, resp, dataLen) // waits for a retransmission never seen
			} else {
				s.send(base+1*ms, jt.WebToClient, resp, dataLen)
			}
		}
		return s
	}
	a, b := build().run(exchange.Config{}), build().run(exchange.Config{})
	if len(a.exchanges) != 20 {
		t.Fatalf("%d exchanges, want 20", len(a.exchanges))
	}
	for i := range a.exchanges {
		if a.exchanges[i] != b.exchanges[i] {
			t.Fatalf("run 2 differs at %d: %+v vs %+v", i, a.exchanges[i], b.exchanges[i])
		}
	}
}

// TestPrinter: the text and JSON lines of an exchange and a handshake.
func TestPrinter(t *testing.T) {
	s := &sim{t: t}
	s.handshake(at(0))
	s.send(at(1*ms), jt.ClientToWeb, c2w(psh, 1001), dataLen)
	s.send(at(51*ms+30*us), jt.WebToClient, w2c(psh, 5001), dataLen)
	s.send(at(100*ms), jt.ClientToWeb, c2w(psh, 1101), dataLen)
	s.drop(at(110*ms+30*us), jt.WebToClient, 2, w2c(psh, 5101), dataLen)
	res := s.run(exchange.Config{})
	var text, js strings.Builder
	tp := exchange.NewPrinter(&text, false, -int64(jt.Base), time.UTC)
	jp := exchange.NewPrinter(&js, true, -int64(jt.Base), time.UTC)
	for i := range res.exchanges {
		if err := tp.Exchange(&res.exchanges[i]); err != nil {
			t.Fatal(err)
		}
		if err := jp.Exchange(&res.exchanges[i]); err != nil {
			t.Fatal(err)
		}
	}
	want := `00:00:00.000000 tcp client -> web:8080  handshake  SYN 30us  server 20us  SYN-ACK 30us  (172.17.0.2:40000 > 172.17.0.3:8080, #1 -> #2)
00:00:00.001000 tcp client -> web:8080  request 30us  server 50ms  response 30us  (172.17.0.2:40000 > 172.17.0.3:8080, #4 -> #5)
00:00:00.100000 tcp client -> web:8080  request 30us  server 10ms  response not seen arriving  (172.17.0.2:40000 > 172.17.0.3:8080, #6 -> #7)
`
	if text.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", text.String(), want)
	}
	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("JSON lines:\n%s", js.String())
	}
	var l exchange.JSONLine
	if err := json.Unmarshal([]byte(lines[1]), &l); err != nil {
		t.Fatal(err)
	}
	if l.Type != "exchange" || l.Kind != "request" || l.Client != "client" || l.Server != "web" || l.Port != 8080 || l.Proto != "tcp" ||
		l.ServerNS != int64(50*msD) || l.RequestNS != int64(hop4) || l.ResponseNS == nil || *l.ResponseNS != int64(hop4) ||
		l.Time != "1970-01-01T00:00:00.001000000Z" || l.RequestID != 4 || l.ResponseID != 5 {
		t.Errorf("JSON line %+v", l)
	}
	if strings.Contains(lines[2], "response_ns") {
		t.Errorf("a response not seen arriving has a response_ns: %s", lines[2])
	}
}

// TestRetransmitMany: a segment sent 300 times links each copy to the one
// before, though the copies before it fill the linker's ring many times
// over (MaxSegments 10).
func TestRetransmitMany(t *testing.T) {
	s := &sim{t: t}
	const n = 300
	for i := range uint64(n) {
		s.drop(at(i*10*ms), jt.ClientToWeb, 2, c2w(psh, 1001), dataLen)
	}
	res := s.run(exchange.Config{MaxSegments: 10})
	ids := res.order
	if len(ids) != n || len(res.links) != n-1 {
		t.Fatalf("%d journeys, %d links; want %d and %d", len(ids), len(res.links), n, n-1)
	}
	for k := 1; k < n; k++ {
		if r := res.links[ids[k]]; r.Of != ids[k-1] || r.First != ids[0] || r.Nth != k || r.OfDropReason != "NETFILTER_DROP" {
			t.Fatalf("copy %d: link %+v, want of %d, first %d, nth %d, dropped", k, r, ids[k-1], ids[0], k)
		}
	}
}
