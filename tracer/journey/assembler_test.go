package journey_test

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
)

const (
	us = uint64(time.Microsecond)
	ms = uint64(time.Millisecond)
	t0 = uint64(1_000_000_000_000)
)

// feed is one input event: a hop or a drop.
type feed struct {
	hop  *event.Hop
	drop *event.Drop
}

func hops(hs ...[]event.Hop) []feed {
	var out []feed
	for _, h := range hs {
		for i := range h {
			out = append(out, feed{hop: &h[i]})
		}
	}
	return out
}

// run feeds events in order, then flushes, and returns every journey.
func run(t *testing.T, cfg journey.Config, in []feed) ([]*journey.Journey, journey.Stats) {
	t.Helper()
	a := journey.New(cfg, jt.Namer())
	var out []*journey.Journey
	for _, f := range in {
		if f.hop != nil {
			out = append(out, a.AddHop(*f.hop)...)
		} else {
			out = append(out, a.AddDrop(*f.drop)...)
		}
	}
	out = append(out, a.Flush()...)
	return out, a.Stats()
}

func path(j *journey.Journey) string {
	var b strings.Builder
	for i := range j.Hops {
		if i > 0 {
			b.WriteString(" ")
		}
		h := &j.Hops[i]
		fmt.Fprintf(&b, "%s/%s", h.Label(), h.Dir)
		if h.Parent != i-1 {
			fmt.Fprintf(&b, "^%d", h.Parent)
		}
	}
	return b.String()
}

func one(t *testing.T, js []*journey.Journey) *journey.Journey {
	t.Helper()
	if len(js) != 1 {
		for _, j := range js {
			t.Logf("journey %d: %s", j.ID, path(j))
		}
		t.Fatalf("got %d journeys, want 1", len(js))
	}
	return js[0]
}

func TestContainerToContainer(t *testing.T) {
	p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, event.TCPSyn, 1000)
	j := one(t, must(run(t, journey.Config{}, hops(jt.Walk(jt.ClientToWeb, t0, 10*us, 0xa1, 77, p)))))
	if got, want := path(j), "client:eth0/egress veth1a2b/ingress veth3c4d/egress web:eth0/ingress"; got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
	if j.Verdict != journey.VerdictContainer || j.Fanout != 1 || j.Drop != nil || j.TimedOut {
		t.Errorf("verdict %v fanout %d drop %v timedout %v", j.Verdict, j.Fanout, j.Drop, j.TimedOut)
	}
	if j.Transit != 30*time.Microsecond || j.Hops[0].Delta != 0 || j.Hops[3].Delta != 10*time.Microsecond {
		t.Errorf("transit %v deltas %v %v", j.Transit, j.Hops[0].Delta, j.Hops[3].Delta)
	}
	if len(j.Rewrites) != 0 {
		t.Errorf("rewrites %v, want none", j.Rewrites)
	}
	if a := j.Hops[1].Action(); a != "left client, entered docker0" {
		t.Errorf("action %q", a)
	}
	if a := j.Hops[2].Action(); a != "left docker0 toward web" {
		t.Errorf("action %q", a)
	}
}

func must(js []*journey.Journey, _ journey.Stats) []*journey.Journey { return js }

// A finished journey is returned once its grace passed, not before.
func TestCompletesAfterGrace(t *testing.T) {
	a := journey.New(journey.Config{Grace: time.Millisecond}, jt.Namer())
	p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, event.TCPSyn, 1000)
	for _, h := range jt.Walk(jt.ClientToWeb, t0, 10*us, 0xa1, 77, p) {
		if got := a.AddHop(h); len(got) != 0 {
			t.Fatalf("journey returned before it ended")
		}
	}
	if got := a.Expire(t0 + 30*us + ms/2); len(got) != 0 {
		t.Fatalf("journey returned within its grace")
	}
	got := a.Expire(t0 + 30*us + 2*ms)
	if len(got) != 1 || got[0].Verdict != journey.VerdictContainer {
		t.Fatalf("after grace: %v", got)
	}
	if s := a.Stats(); s.InFlight != 0 || s.Journeys != 1 || s.Hops != 4 {
		t.Errorf("stats %+v", s)
	}
}

func TestContainerToHost(t *testing.T) {
	p := jt.TCP(jt.ClientIP, 41234, jt.Docker0IP, 22, event.TCPSyn, 5)
	j := one(t, must(run(t, journey.Config{}, hops(jt.Walk(jt.ClientToHost, t0, 5*us, 0xb1, 9, p)))))
	if j.Verdict != journey.VerdictHost {
		t.Errorf("verdict %v, want host", j.Verdict)
	}
	if a := j.Hops[2].Action(); a != "passed up to host by docker0" {
		t.Errorf("action %q", a)
	}
}

func TestHostToContainer(t *testing.T) {
	p := jt.TCP(jt.Docker0IP, 5555, jt.WebIP, 8080, event.TCPSyn, 5)
	j := one(t, must(run(t, journey.Config{}, hops(jt.Walk(jt.HostToWeb, t0, 5*us, 0xb2, 10, p)))))
	if got, want := path(j), "docker0/egress veth3c4d/egress web:eth0/ingress"; got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
	if j.Verdict != journey.VerdictContainer {
		t.Errorf("verdict %v", j.Verdict)
	}
}

func TestMasqueradeShowsRewrite(t *testing.T) {
	before := jt.UDP(jt.ClientIP, 40000, jt.Outside, 53)
	after := jt.UDP(jt.HostIP, 40000, jt.Outside, 53)
	hs := jt.Walk(jt.ClientToOutside, t0, 4*us, 0xc1, 11, before)
	hs[3].Pkt = after // POSTROUTING rewrote the source before eth0's egress hook
	j := one(t, must(run(t, journey.Config{}, hops(hs))))
	if j.Verdict != journey.VerdictLeftHost {
		t.Errorf("verdict %v, want left-host", j.Verdict)
	}
	want := []journey.Rewrite{{Hop: 3, Kind: journey.SNAT,
		From: journey.Flow{Src: netip.MustParseAddrPort("172.17.0.2:40000"), Dst: netip.MustParseAddrPort("10.9.0.1:53")},
		To:   journey.Flow{Src: netip.MustParseAddrPort("10.9.0.254:40000"), Dst: netip.MustParseAddrPort("10.9.0.1:53")}}}
	if !reflect.DeepEqual(j.Rewrites, want) {
		t.Errorf("rewrites %+v, want %+v", j.Rewrites, want)
	}
}

func TestPublishedPortShowsDNAT(t *testing.T) {
	before := jt.TCP(jt.Outside, 50000, jt.HostIP, 8080, event.TCPSyn, 1)
	after := jt.TCP(jt.Outside, 50000, jt.WebIP, 80, event.TCPSyn, 1)
	hs := jt.Walk(jt.OutsideToWeb, t0, 4*us, 0xd1, 12, after)
	hs[0].Pkt = before // PREROUTING runs after eth0's ingress hook
	j := one(t, must(run(t, journey.Config{}, hops(hs))))
	if j.Verdict != journey.VerdictContainer {
		t.Errorf("verdict %v", j.Verdict)
	}
	if len(j.Rewrites) != 1 || j.Rewrites[0].Kind != journey.DNAT || j.Rewrites[0].Hop != 1 ||
		j.Rewrites[0].To.Dst != netip.MustParseAddrPort("172.17.0.3:80") {
		t.Errorf("rewrites %+v", j.Rewrites)
	}
}

// arpFlood is client's ARP broadcast as the hooks see it: the bridge clones
// it to each port (new skb keys) and passes one copy up to the host.
func arpFlood(t uint64, keys [4]uint64, fp uint64) []event.Hop {
	p := jt.ARPRequest(jt.ClientIP, jt.WebIP)
	return []event.Hop{
		jt.Hop(t, jt.ClientEth0, event.Egress, keys[0], fp, p),
		jt.Hop(t+2*us, jt.VethClient, event.Ingress, keys[0], fp, p),
		jt.Hop(t+4*us, jt.VethWeb, event.Egress, keys[1], fp, p),
		jt.Hop(t+5*us, jt.VethDB, event.Egress, keys[2], fp, p),
		jt.Hop(t+6*us, jt.Docker0, event.Ingress, keys[3], fp, p),
		jt.Hop(t+8*us, jt.WebEth0, event.Ingress, keys[1], fp, p),
		jt.Hop(t+9*us, jt.DBEth0, event.Ingress, keys[2], fp, p),
	}
}

func TestARPBroadcastFansOut(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys [4]uint64
	}{
		{"skb keys", [4]uint64{0x100, 0x200, 0x300, 0x100}},
		{"no skb keys", [4]uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := one(t, must(run(t, journey.Config{}, hops(arpFlood(t0, tc.keys, 0xa59)))))
			want := "client:eth0/egress veth1a2b/ingress veth3c4d/egress veth5e6f/egress^1 docker0/ingress^1 web:eth0/ingress^2 db:eth0/ingress^3"
			if got := path(j); got != want {
				t.Errorf("path\n got %s\nwant %s", got, want)
			}
			if j.Fanout != 3 || j.Verdict != journey.VerdictContainer {
				t.Errorf("fanout %d verdict %v", j.Fanout, j.Verdict)
			}
			if got := j.Leaves(); !reflect.DeepEqual(got, []int{4, 5, 6}) {
				t.Errorf("leaves %v", got)
			}
			if j.Hops[6].Delta != 4*time.Microsecond {
				t.Errorf("db delta %v, want 4us since veth5e6f", j.Hops[6].Delta)
			}
		})
	}
}

func TestTwoBridgesViaHostRouting(t *testing.T) {
	p := jt.TCP(jt.ClientIP, 41000, jt.APIIP, 9000, event.TCPSyn, 7)
	j := one(t, must(run(t, journey.Config{}, hops(jt.Walk(jt.ClientToAPI, t0, 3*us, 0xe1, 13, p)))))
	want := "client:eth0/egress veth1a2b/ingress docker0/ingress br-1234/egress vethaa11/egress api:eth0/ingress"
	if got := path(j); got != want {
		t.Errorf("path\n got %s\nwant %s", got, want)
	}
	if j.Verdict != journey.VerdictContainer || j.Fanout != 1 || len(j.Rewrites) != 0 {
		t.Errorf("verdict %v fanout %d rewrites %v", j.Verdict, j.Fanout, j.Rewrites)
	}
	if a := j.Hops[3].Action(); a != "sent down by host into br-1234" {
		t.Errorf("action %q", a)
	}
}

func TestDropJoinsEarlierHops(t *testing.T) {
	for _, tc := range []struct {
		name    string
		skb     uint64
		dev     topology.Key
		wantDev string
	}{
		{"by skb, dev known", 0xf1, jt.VethWeb, "veth3c4d"},
		{"by content, no dev", 0, topology.Key{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, event.TCPSyn, 1000)
			in := hops(jt.Walk(jt.ClientToWeb[:2], t0, 10*us, tc.skb, 77, p))
			in = append(in, feed{drop: &event.Drop{TimeNS: t0 + 15*us, SkbKey: tc.skb, Fingerprint: 77, Reason: 6,
				ReasonName: "NETFILTER_DROP", Ifindex: tc.dev.Ifindex, NetnsIno: tc.dev.NetnsIno, Pkt: p}})
			js, st := run(t, journey.Config{}, in)
			j := one(t, js)
			if j.Verdict != journey.VerdictDropped || j.Drop == nil {
				t.Fatalf("verdict %v drop %v", j.Verdict, j.Drop)
			}
			if j.Drop.After != 1 || j.Drop.Where(j) != "veth1a2b" || j.Drop.Dev() != tc.wantDev || j.Drop.Name() != "NETFILTER_DROP" {
				t.Errorf("drop %+v where %q dev %q", j.Drop, j.Drop.Where(j), j.Drop.Dev())
			}
			if j.Transit != 15*time.Microsecond {
				t.Errorf("transit %v", j.Transit)
			}
			if st.DropsByReason["NETFILTER_DROP"] != 1 || st.UnmatchedDrops != 0 || st.ByVerdict[journey.VerdictDropped] != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// A packet dropped after it reached the host (FORWARD chain) is dropped, not
// delivered to the host.
func TestDropAfterBridgePassedUp(t *testing.T) {
	p := jt.UDP(jt.ClientIP, 40000, jt.Outside, 53)
	in := hops(jt.Walk(jt.ClientToOutside[:3], t0, 4*us, 0x51, 21, p))
	in = append(in, feed{drop: &event.Drop{TimeNS: t0 + 10*us, SkbKey: 0x51, Fingerprint: 21, ReasonName: "NETFILTER_DROP",
		Ifindex: jt.Docker0.Ifindex, NetnsIno: jt.HostNS}})
	j := one(t, must(run(t, journey.Config{}, in)))
	if j.Verdict != journey.VerdictDropped || j.Drop.Where(j) != "docker0" {
		t.Errorf("verdict %v where %s", j.Verdict, j.Drop.Where(j))
	}
}

func TestUnmatchedDrop(t *testing.T) {
	d := event.Drop{TimeNS: t0, SkbKey: 0x99, Fingerprint: 1234, Reason: 2}
	js, st := run(t, journey.Config{}, []feed{{drop: &d}})
	if len(js) != 0 || st.UnmatchedDrops != 1 || st.DropsByReason["reason(2)"] != 1 {
		t.Errorf("journeys %d stats %+v", len(js), st)
	}
	js, st = run(t, journey.Config{EmitUnmatchedDrops: true}, []feed{{drop: &d}})
	if len(js) != 1 || js[0].Verdict != journey.VerdictDropped || len(js[0].Hops) != 0 || st.UnmatchedDrops != 1 {
		t.Errorf("emitted: %v stats %+v", js, st)
	}
}

// Two identical datagrams sent back to back, their hops interleaved, stay
// two journeys: by skb key, and by content alone (FIFO) without keys.
func TestIdenticalDatagramsStaySeparate(t *testing.T) {
	p := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	for _, tc := range []struct {
		name       string
		key1, key2 uint64
	}{
		{"distinct skb keys", 0x1000, 0x2000},
		{"no skb keys", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := jt.Walk(jt.ClientToWeb, t0, 10*us, tc.key1, 55, p)
			b := jt.Walk(jt.ClientToWeb, t0+3*us, 10*us, tc.key2, 55, p)
			var in []feed
			for i := range a {
				in = append(in, feed{hop: &a[i]}, feed{hop: &b[i]})
			}
			js, _ := run(t, journey.Config{}, in)
			if len(js) != 2 {
				t.Fatalf("got %d journeys, want 2", len(js))
			}
			for _, j := range js {
				if len(j.Hops) != 4 || j.Verdict != journey.VerdictContainer || j.Transit != 30*time.Microsecond {
					t.Errorf("journey %d: %s transit %v", j.ID, path(j), j.Transit)
				}
			}
		})
	}
}

// A freed skb reused at once for an identical packet starts a new journey.
func TestReusedSkbSameContentStaysSeparate(t *testing.T) {
	p := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	a := jt.Walk(jt.ClientToWeb, t0, 10*us, 0x77, 55, p)
	b := jt.Walk(jt.ClientToWeb, t0+35*us, 10*us, 0x77, 55, p)
	js, _ := run(t, journey.Config{}, hops(a, b))
	if len(js) != 2 || len(js[0].Hops) != 4 || len(js[1].Hops) != 4 {
		t.Fatalf("got %d journeys", len(js))
	}
}

// A reused skb with different content is a different packet.
func TestReusedSkbOtherContentStaysSeparate(t *testing.T) {
	a := jt.Walk(jt.ClientToWeb[:2], t0, 10*us, 0x77, 1, jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999))
	b := jt.Walk(jt.ClientToWeb[2:], t0+12*us, 10*us, 0x77, 2, jt.UDP(jt.ClientIP, 40001, jt.WebIP, 9999))
	js, _ := run(t, journey.Config{}, hops(a, b))
	if len(js) != 2 {
		t.Fatalf("got %d journeys, want 2", len(js))
	}
}

// A TCP retransmission (same bytes, so same fingerprint) 200us later is its
// own journey, also when the first copy never arrived.
func TestRetransmissionStaysSeparate(t *testing.T) {
	p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, event.TCPSyn, 1000)
	first := jt.Walk(jt.ClientToWeb[:2], t0, 10*us, 0x10, 77, p) // lost after the bridge
	retx := jt.Walk(jt.ClientToWeb, t0+200*us, 10*us, 0x20, 77, p)
	js, st := run(t, journey.Config{}, hops(first, retx))
	if len(js) != 2 {
		t.Fatalf("got %d journeys, want 2", len(js))
	}
	byLen := map[int]*journey.Journey{len(js[0].Hops): js[0], len(js[1].Hops): js[1]}
	if j := byLen[2]; j == nil || j.Verdict != journey.VerdictIncomplete || !j.TimedOut {
		t.Errorf("first copy: %+v", j)
	}
	if j := byLen[4]; j == nil || j.Verdict != journey.VerdictContainer {
		t.Errorf("retransmission: %+v", j)
	}
	if st.TimedOut != 1 {
		t.Errorf("timed out %d", st.TimedOut)
	}
}

// Without skb keys (kernel < 6.3), hops join by content and plausible path.
func TestContentKeyWithoutSkb(t *testing.T) {
	p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, event.TCPAck, 1000)
	q := jt.TCP(jt.WebIP, 8080, jt.ClientIP, 41234, event.TCPAck, 5000)
	a := jt.Walk(jt.ClientToWeb, t0, 10*us, 0, 1, p)
	b := jt.Walk(jt.WebToClient, t0+5*us, 10*us, 0, 2, q)
	var in []feed
	for i := range a {
		in = append(in, feed{hop: &a[i]}, feed{hop: &b[i]})
	}
	js, _ := run(t, journey.Config{}, in)
	if len(js) != 2 {
		t.Fatalf("got %d journeys", len(js))
	}
	got := []string{path(js[0]), path(js[1])}
	want := []string{
		"client:eth0/egress veth1a2b/ingress veth3c4d/egress web:eth0/ingress",
		"web:eth0/egress veth3c4d/ingress veth1a2b/egress client:eth0/ingress",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paths\n got %q\nwant %q", got, want)
	}
}

func TestTimeoutIsCounted(t *testing.T) {
	a := journey.New(journey.Config{Timeout: 10 * time.Millisecond}, jt.Namer())
	p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, event.TCPSyn, 1000)
	for _, h := range jt.Walk(jt.ClientToWeb[:2], t0, 10*us, 0x10, 77, p) {
		a.AddHop(h)
	}
	if got := a.Expire(t0 + 10*us + 9*ms); len(got) != 0 {
		t.Fatalf("expired before the timeout")
	}
	got := a.Expire(t0 + 10*us + 11*ms)
	if len(got) != 1 || got[0].Verdict != journey.VerdictIncomplete || !got[0].TimedOut {
		t.Fatalf("got %v", got)
	}
	if s := a.Stats(); s.TimedOut != 1 || s.ByVerdict[journey.VerdictIncomplete] != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestInFlightCapEvicts(t *testing.T) {
	a := journey.New(journey.Config{MaxInFlight: 2}, jt.Namer())
	var out []*journey.Journey
	for i := uint64(0); i < 5; i++ {
		p := jt.UDP(jt.ClientIP, uint16(40000+i), jt.WebIP, 9999)
		out = append(out, a.AddHop(jt.Hop(t0+i*us, jt.VethClient, event.Ingress, 0x100+i, 100+i, p))...)
	}
	s := a.Stats()
	if s.Evictions != 3 || s.InFlight != 2 || s.MaxInFlight != 2 || len(out) != 3 {
		t.Fatalf("evictions %d in flight %d peak %d returned %d", s.Evictions, s.InFlight, s.MaxInFlight, len(out))
	}
	for i, j := range out {
		if !j.Evicted || j.ID != uint64(i+1) {
			t.Errorf("evicted journey %d: id %d evicted %v", i, j.ID, j.Evicted)
		}
	}
	if rest := a.Flush(); len(rest) != 2 || rest[0].Evicted {
		t.Errorf("flush %d", len(rest))
	}
}

// Many packets at a high rate: memory stays at the cap, everything is counted.
func TestBoundedUnderFlood(t *testing.T) {
	a := journey.New(journey.Config{MaxInFlight: 64}, jt.Namer())
	n := 0
	for i := uint64(0); i < 10000; i++ {
		p := jt.UDP(jt.ClientIP, uint16(i), jt.WebIP, 9999)
		n += len(a.AddHop(jt.Hop(t0+i*100, jt.VethClient, event.Ingress, 0x100+i%512, 1+i, p)))
		if s := a.Stats(); s.InFlight > 64 {
			t.Fatalf("in flight %d", s.InFlight)
		}
	}
	n += len(a.Flush())
	if s := a.Stats(); n != 10000 || s.Journeys != 10000 || s.Evictions+s.TimedOut < 10000-64 {
		t.Errorf("returned %d stats %+v", n, s)
	}
}

func TestUnresolvedInterfaceIsShown(t *testing.T) {
	p := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	hs := jt.Walk(jt.ClientToWeb, t0, 10*us, 0x1, 5, p)
	hs[2].Ifindex = 17 // a veth the resolver does not know yet
	j := one(t, must(run(t, journey.Config{HostNetnsIno: jt.HostNS}, hops(hs))))
	if got := j.Hops[2].Label(); got != "if17@ns4026531840" || j.Hops[2].Resolved {
		t.Errorf("label %q resolved %v", got, j.Hops[2].Resolved)
	}
	if j.Verdict != journey.VerdictContainer {
		t.Errorf("verdict %v", j.Verdict)
	}
}

// mutableNamer renames an interface between hops.
type mutableNamer struct {
	m map[topology.Key]topology.Endpoint
}

func (n *mutableNamer) Lookup(k topology.Key) (topology.Endpoint, bool) {
	e, ok := n.m[k]
	return e, ok
}

func TestNamesAreTakenAtHopTime(t *testing.T) {
	n := &mutableNamer{m: map[topology.Key]topology.Endpoint{}}
	for _, e := range jt.Snapshot().Endpoints {
		n.m[e.Key()] = e
	}
	a := journey.New(journey.Config{}, n)
	p := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	hs := jt.Walk(jt.ClientToWeb, t0, 10*us, 0x1, 5, p)
	a.AddHop(hs[0])
	a.AddHop(hs[1])
	e := n.m[jt.ClientEth0]
	c := *e.Container
	c.Name = "renamed"
	e.Container = &c
	n.m[jt.ClientEth0] = e
	a.AddHop(hs[2])
	a.AddHop(hs[3])
	j := a.Flush()[0]
	if got := j.Hops[0].Label(); got != "client:eth0" {
		t.Errorf("first hop %q, want the name at hop time", got)
	}
}

// Hops that arrive slightly out of time order (different CPUs) are sorted.
func TestOutOfOrderHopsAreSorted(t *testing.T) {
	p := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	hs := jt.Walk(jt.ClientToWeb, t0, 10*us, 0x1, 5, p)
	hs[0], hs[1] = hs[1], hs[0]
	j := one(t, must(run(t, journey.Config{}, hops(hs))))
	if got, want := path(j), "client:eth0/egress veth1a2b/ingress veth3c4d/egress web:eth0/ingress"; got != want {
		t.Errorf("path %q", got)
	}
	for i, h := range j.Hops {
		if h.Delta < 0 || (i > 0 && h.TimeNS < j.Hops[i-1].TimeNS) {
			t.Errorf("hop %d time %d delta %v", i, h.TimeNS, h.Delta)
		}
	}
}

func TestGSOIsKept(t *testing.T) {
	p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 8080, event.TCPAck|event.TCPPsh, 1)
	hs := jt.Walk(jt.ClientToWeb, t0, 10*us, 0x1, 5, p)
	for i := range hs {
		hs[i].Len, hs[i].GSOSegs, hs[i].GSOSize = 64000, 44, 1448
	}
	j := one(t, must(run(t, journey.Config{}, hops(hs))))
	if h := j.Hops[1]; h.Len != 64000 || h.GSOSegs != 44 || h.GSOSize != 1448 {
		t.Errorf("hop %+v", h)
	}
}

// The same input gives the same journeys, in the same order.
func TestDeterministic(t *testing.T) {
	in := mixedTraffic()
	render := func() string {
		js, st := run(t, journey.Config{MaxInFlight: 8}, in)
		var b strings.Builder
		for _, j := range js {
			fmt.Fprintf(&b, "%d %v %d %s\n", j.ID, j.Verdict, j.Transit, path(j))
		}
		fmt.Fprintf(&b, "%+v\n", st)
		return b.String()
	}
	first := render()
	for i := 0; i < 3; i++ {
		if again := render(); again != first {
			t.Fatalf("run %d differs:\n%s\nvs\n%s", i, first, again)
		}
	}
}

// mixedTraffic interleaves several journey shapes.
func mixedTraffic() []feed {
	var in []feed
	t := t0
	for i := uint64(0); i < 50; i++ {
		p := jt.TCP(jt.ClientIP, uint16(40000+i), jt.WebIP, 8080, event.TCPSyn, uint32(i))
		in = append(in, hops(jt.Walk(jt.ClientToWeb, t, 7*us, 0x1000+i%7, 1000+i, p))...)
		in = append(in, hops(arpFlood(t+3*us, [4]uint64{0x2000 + i, 0x3000 + i, 0x4000 + i, 0x2000 + i}, 5000+i))...)
		if i%5 == 0 {
			in = append(in, hops(jt.Walk(jt.ClientToAPI[:2], t+1*us, 5*us, 0x5000+i, 9000+i, p))...)
			in = append(in, feed{drop: &event.Drop{TimeNS: t + 20*us, SkbKey: 0x5000 + i, Fingerprint: 9000 + i, ReasonName: "NETFILTER_DROP"}})
		}
		t += 40 * us
	}
	return in
}

func withIDs(hs []event.Hop, ids ...uint64) []event.Hop {
	for i := range hs {
		hs[i].PacketID = ids[i]
	}
	return hs
}

// With skb keys, the kernel's packet ID decides; a flooded clone gets a new
// ID at its first hook and still joins by content.
func TestPacketIDJoins(t *testing.T) {
	flood := withIDs(arpFlood(t0, [4]uint64{0x100, 0x200, 0x300, 0x100}, 0xa59), 1, 1, 2, 3, 1, 2, 3)
	j := one(t, must(run(t, journey.Config{}, hops(flood))))
	if j.Fanout != 3 || len(j.Hops) != 7 {
		t.Errorf("fanout %d hops %d", j.Fanout, len(j.Hops))
	}

	// Same skb, same bytes, but the kernel saw a new packet: two journeys.
	p := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	a := withIDs(jt.Walk(jt.ClientToWeb[:2], t0, 10*us, 0x77, 55, p), 10, 10)
	b := withIDs(jt.Walk(jt.ClientToWeb[2:], t0+12*us, 10*us, 0x77, 55, p), 11, 11)
	js, _ := run(t, journey.Config{}, hops(a, b))
	if len(js) != 2 {
		t.Errorf("got %d journeys, want 2", len(js))
	}
}

// Without skb keys the kernel keys packet IDs by content and mixes up
// identical packets in flight; the assembler's FIFO content join does not.
func TestPacketIDIgnoredWithoutSkbKey(t *testing.T) {
	p := jt.UDP(jt.ClientIP, 40000, jt.WebIP, 9999)
	a := withIDs(jt.Walk(jt.ClientToWeb, t0, 10*us, 0, 55, p), 1, 2, 3, 4)
	b := withIDs(jt.Walk(jt.ClientToWeb, t0+3*us, 10*us, 0, 55, p), 2, 3, 4, 5)
	var in []feed
	for i := range a {
		in = append(in, feed{hop: &a[i]}, feed{hop: &b[i]})
	}
	js, _ := run(t, journey.Config{}, in)
	if len(js) != 2 || len(js[0].Hops) != 4 || len(js[1].Hops) != 4 || js[0].Transit != 30*time.Microsecond {
		t.Fatalf("got %d journeys", len(js))
	}
}

// A packet that arrived in a container and was then freed by that
// container's stack (no socket: a SYN to a closed port, a ping reply a raw
// socket took a copy of) was delivered; the drop says what the receiver did.
func TestDropAfterDeliveryIsDelivered(t *testing.T) {
	p := jt.TCP(jt.ClientIP, 41234, jt.WebIP, 9999, event.TCPSyn, 1000)
	in := hops(jt.Walk(jt.ClientToWeb, t0, 10*us, 0xf2, 78, p))
	in = append(in, feed{drop: &event.Drop{TimeNS: t0 + 35*us, SkbKey: 0xf2, Fingerprint: 78, Reason: 2,
		ReasonName: "NO_SOCKET", Ifindex: jt.WebEth0.Ifindex, NetnsIno: jt.WebEth0.NetnsIno, Pkt: p}})
	js, st := run(t, journey.Config{}, in)
	j := one(t, js)
	if j.Verdict != journey.VerdictContainer || j.Drop == nil || !j.Drop.AfterDelivery || j.Drop.Where(j) != "web:eth0" {
		t.Fatalf("verdict %v drop %+v, want delivered with the drop after delivery at web:eth0", j.Verdict, j.Drop)
	}
	if st.DropsByReason["NO_SOCKET"] != 1 || st.ByVerdict[journey.VerdictContainer] != 1 || st.ByVerdict[journey.VerdictDropped] != 0 {
		t.Errorf("stats %+v: the drop is counted, the journey as delivered", st)
	}
}
