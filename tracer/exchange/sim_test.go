package exchange_test

import (
	"context"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/exchange"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
)

const (
	us = uint64(time.Microsecond)
	ms = uint64(time.Millisecond)
	// hopStep is the time between two hops of a packet: a path of four
	// hops takes 30us.
	hopStep = 10 * us
)

// Lengths of the first hop (skb->len with the Ethernet header).
const (
	ackLen  = 66  // a bare ACK with timestamps
	sackLen = 94  // an ACK with timestamps and three SACK blocks
	dataLen = 200 // a small request or response
	fullLen = 1514
)

var (
	clientAddr = netip.AddrPortFrom(jt.ClientIP, 40000)
	webAddr    = netip.AddrPortFrom(jt.WebIP, 8080)
)

// sim builds the events of a conversation on the synthetic host and runs
// them through the pipeline with an exchange stage.
type sim struct {
	t      testing.TB
	events []timed
	pkt    uint64
}

type timed struct {
	at uint64
	e  pipeline.Event
}

// at is Base plus an offset.
func at(off uint64) uint64 { return jt.Base + off }

// send walks one packet along path from t, every hop delivered; lens sets
// its length (the first hop's, and the others').
func (s *sim) send(t uint64, path []jt.Step, p event.Packet, n uint32) {
	s.walk(t, path, len(path), p, n, nil)
}

// drop walks one packet along the first upto steps of path and drops it
// after the last of them (NETFILTER_DROP).
func (s *sim) drop(t uint64, path []jt.Step, upto int, p event.Packet, n uint32) {
	s.walk(t, path, upto, p, n, &event.Drop{Reason: 23, ReasonName: "NETFILTER_DROP"})
}

func (s *sim) walk(t uint64, path []jt.Step, upto int, p event.Packet, n uint32, d *event.Drop) {
	s.pkt++
	hops := jt.Walk(path[:upto], t, hopStep, 0x1000+s.pkt, 0x5000+s.pkt, p)
	for i := range hops {
		hops[i].PacketID = s.pkt
		hops[i].Len = n
		s.events = append(s.events, timed{hops[i].TimeNS, pipeline.Event{Hop: &hops[i]}})
	}
	if d != nil {
		last := hops[len(hops)-1]
		d.TimeNS, d.SkbKey, d.PacketID, d.Fingerprint, d.Pkt = last.TimeNS+us, last.SkbKey, s.pkt, last.Fingerprint, p
		d.Ifindex, d.NetnsIno = last.Ifindex, last.NetnsIno
		s.events = append(s.events, timed{d.TimeNS, pipeline.Event{Drop: d}})
	}
}

// add adds one hop as it is.
func (s *sim) add(h *event.Hop) {
	s.events = append(s.events, timed{h.TimeNS, pipeline.Event{Hop: h}})
}

// walkPkts walks one packet along path with the tuple of each hop given
// (NAT on the way).
func (s *sim) walkPkts(t uint64, path []jt.Step, pkts []event.Packet, n uint32) {
	s.pkt++
	for i, st := range path {
		h := jt.Hop(t+uint64(i)*hopStep, st.Key, st.Dir, 0x1000+s.pkt, 0x5000+s.pkt, pkts[i])
		h.PacketID, h.Len = s.pkt, n
		s.add(&h)
	}
}

// TCP packets between client and web.
func c2w(flags uint8, seq uint32) event.Packet {
	return jt.TCP(jt.ClientIP, clientAddr.Port(), jt.WebIP, webAddr.Port(), flags, seq)
}

func w2c(flags uint8, seq uint32) event.Packet {
	return jt.TCP(jt.WebIP, webAddr.Port(), jt.ClientIP, clientAddr.Port(), flags, seq)
}

const (
	syn    = event.TCPSyn
	synAck = event.TCPSyn | event.TCPAck
	ack    = event.TCPAck
	psh    = event.TCPPsh | event.TCPAck
	fin    = event.TCPFin | event.TCPAck
	rst    = event.TCPRst
)

// handshake is a SYN, SYN-ACK and ACK from t; the server takes 20us.
func (s *sim) handshake(t uint64) {
	s.send(t, jt.ClientToWeb, c2w(syn, 1000), 74)
	s.send(t+50*us, jt.WebToClient, w2c(synAck, 5000), 74)
	s.send(t+100*us, jt.ClientToWeb, c2w(ack, 1001), ackLen)
}

// result is what a run gave.
type result struct {
	exchanges []exchange.Exchange
	links     map[uint64]exchange.Retransmit // by retransmission journey ID
	journeys  map[uint64]*journey.Journey
	order     []uint64 // journey IDs as handed on
}

// run feeds the events in time order through the pipeline to a stage.
func (s *sim) run(cfg exchange.Config) result {
	s.t.Helper()
	sort.SliceStable(s.events, func(a, b int) bool { return s.events[a].at < s.events[b].at })
	res := result{links: map[uint64]exchange.Retransmit{}, journeys: map[uint64]*journey.Journey{}}
	sink := &collect{t: s.t, res: &res}
	stage := exchange.NewStage(sink, exchange.Options{
		Config:    cfg,
		Exchanges: func(e *exchange.Exchange) error { res.exchanges = append(res.exchanges, *e); return nil },
		Retransmits: func(j *journey.Journey, r *exchange.Retransmit) {
			res.links[j.ID] = *r
		},
	})
	src := &source{names: finalNames{jt.Namer()}, events: s.events}
	if _, err := pipeline.Run(context.Background(), src, pipeline.Config{}, stage); err != nil {
		s.t.Fatal(err)
	}
	return res
}

// collect keeps the journeys; a journey's Retransmit must be what the
// stage's Retransmits callback got.
type collect struct {
	t   testing.TB
	res *result
}

func (c *collect) Journey(j *journey.Journey) error {
	c.res.journeys[j.ID] = j
	c.res.order = append(c.res.order, j.ID)
	r, ok := c.res.links[j.ID]
	if (j.Retransmit != nil) != ok || (ok && *j.Retransmit != r.Retransmit) {
		c.t.Errorf("journey %d: Retransmit %+v, the stage linked %+v (%v)", j.ID, j.Retransmit, r, ok)
	}
	return nil
}

func (c *collect) Summary(render.Summary) error { return nil }

type source struct {
	names  journey.Names
	events []timed
}

func (f *source) Names() journey.Names { return f.names }

func (f *source) Run(ctx context.Context, in pipeline.Input) error {
	for _, e := range f.events {
		switch {
		case e.e.Hop != nil:
			in.Hop(e.e.Hop)
		case e.e.Drop != nil:
			in.Drop(e.e.Drop)
		}
	}
	return nil
}

// finalNames names everything from one index, for good.
type finalNames struct{ *topology.Index }

func (finalNames) Naming(topology.Key) topology.Naming { return topology.NameFinal }
func (finalNames) Refresh() uint64                     { return 0 }
func (finalNames) Refreshed(uint64) bool               { return true }

// transit is the time a packet takes along a path of n hops.
func transit(n int) time.Duration { return time.Duration(uint64(n-1) * hopStep) }

// want is an exchange's expected numbers.
type want struct {
	handshake       bool
	request, server time.Duration
	response        time.Duration // -1: not known
	retransmits     int
	client, srv     string
}

func check(t *testing.T, got []exchange.Exchange, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		for _, e := range got {
			t.Logf("got %+v", e)
		}
		t.Fatalf("%d exchanges, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		e := &got[i]
		resp, ok := e.ResponseTime()
		if !ok {
			resp = -1
		}
		if e.Handshake != w.handshake || e.RequestTime() != w.request || e.ServerTime() != w.server || resp != w.response || e.Retransmits != w.retransmits {
			t.Errorf("exchange %d: handshake %v request %v server %v response %v retransmits %d, want %+v",
				i, e.Handshake, e.RequestTime(), e.ServerTime(), resp, e.Retransmits, w)
		}
		client, srv := w.client, w.srv
		if client == "" {
			client, srv = "client", "web"
		}
		if e.Client != client || e.Server != srv {
			t.Errorf("exchange %d: %s -> %s, want %s -> %s", i, e.Client, e.Server, client, srv)
		}
	}
}
