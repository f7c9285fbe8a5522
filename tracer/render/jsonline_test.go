package render_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York anywhere

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

// The JSON printer appends journey lines by hand; these tests hold every
// line to what encoding/json writes for JourneyObject with the printer's
// settings (SetEscapeHTML(false)), so the two cannot drift apart.

// reference is JourneyObject through encoding/json, as the printer used to
// write it.
func reference(t testing.TB, p *render.JSON, j *journey.Journey) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p.JourneyObject(j)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sameLines checks the printer's line for each of js against the
// reference. One printer prints them all, as in a run: what it keeps from
// one line to the next (its buffer, the formatted second) must not leak.
func sameLines(t testing.TB, opt render.Options, js ...*journey.Journey) {
	t.Helper()
	var b bytes.Buffer
	p := render.NewJSON(&b, opt)
	for _, j := range js {
		b.Reset()
		if err := p.Journey(j); err != nil {
			t.Fatal(err)
		}
		if want := reference(t, p, j); !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("journey %d: line differs from encoding/json\n--- got\n%s--- want\n%s", j.ID, b.Bytes(), want)
		}
	}
}

// scenarios are the journeys of journeytest's shapes (NAT both ways, a
// drop, an ARP flood, GSO, a time-out, an unresolved interface) and of
// tracefiletest's exchange with drops, plus a lone drop with no hops.
func scenarios(t testing.TB) []*journey.Journey {
	t.Helper()
	js, _ := jt.Run(journey.Config{HostNetnsIno: jt.HostNS}, jt.Shapes())
	a := journey.New(journey.Config{HostNetnsIno: tracefiletest.HostNetns, EmitUnmatchedDrops: true}, topology.NewIndex(tracefiletest.Snapshot()))
	for _, ev := range tracefiletest.Events(tracefiletest.Options{Packets: 60, DropEvery: 5}) {
		if ev.Hop != nil {
			js = append(js, a.AddHop(*ev.Hop)...)
		} else {
			js = append(js, a.AddDrop(*ev.Drop)...)
		}
	}
	js = append(js, a.Flush()...)
	js = append(js, &journey.Journey{ID: 999, Verdict: journey.VerdictDropped, Start: jt.Base, End: jt.Base,
		Drop: &journey.Drop{After: -1, HasDev: true, Endpoint: topology.Endpoint{Name: "eth9", Ifindex: 9, NetnsIno: 1}, Reason: 2}})
	if len(js) < 40 {
		t.Fatalf("only %d journeys", len(js))
	}
	return js
}

// optionSets are wall clocks in several zones.
var optionSets = []render.Options{
	{WallOffsetNS: offset, Location: time.UTC},
	{WallOffsetNS: offset, Location: time.FixedZone("odd", -(3*3600 + 30*60))},
	{WallOffsetNS: -offset}, // before 1970, local time
	{WallOffsetNS: tracefiletest.MonoOffset, Location: time.FixedZone("east", 5*3600+45*60)},
}

func TestJourneyLineScenarios(t *testing.T) {
	for _, opt := range optionSets {
		sameLines(t, opt, scenarios(t)...)
	}
}

// The printer keeps the bytes of the interfaces and addresses it printed
// last; an interface whose container, names or resolution changed between
// two journeys must show the change at once.
func TestJourneyLineEndpointChanges(t *testing.T) {
	type change func(e *topology.Endpoint, h *journey.Hop)
	same := func(*topology.Endpoint, *journey.Hop) {}
	overlay := func(e *topology.Endpoint, h *journey.Hop) { e.Network = "ovl" }
	// Each pair: the hops as before, then as after.
	changes := []struct{ before, after change }{
		{same, func(e *topology.Endpoint, h *journey.Hop) { e.Name += "x" }},
		{same, func(e *topology.Endpoint, h *journey.Hop) { h.Resolved = !h.Resolved }},
		{same, func(e *topology.Endpoint, h *journey.Hop) { e.Bridge = "br-new" }},
		{same, func(e *topology.Endpoint, h *journey.Hop) { e.Network = "net-new" }},
		{same, func(e *topology.Endpoint, h *journey.Hop) { e.Role = topology.RoleUnknown }},
		{same, func(e *topology.Endpoint, h *journey.Hop) { e.Role, e.NetnsName = topology.RoleUnknown, "ns-new" }},
		{overlay, func(e *topology.Endpoint, h *journey.Hop) { overlay(e, h); e.Driver = topology.DriverOverlay }},
		{same, func(e *topology.Endpoint, h *journey.Hop) {
			if e.Container == nil {
				e.Container = &topology.Container{}
			}
			e.Container.Name = "renamed"
		}},
		{same, func(e *topology.Endpoint, h *journey.Hop) {
			if e.Container != nil {
				e.Container.ID = "id-new"
			}
		}},
		{same, func(e *topology.Endpoint, h *journey.Hop) { e.Container = nil }},
		{ // a container without a name still puts its ':' in the label
			func(e *topology.Endpoint, h *journey.Hop) {
				e.Role, e.Container = topology.RoleContainer, &topology.Container{}
			},
			func(e *topology.Endpoint, h *journey.Hop) { e.Role, e.Container = topology.RoleContainer, nil },
		},
		{same, func(e *topology.Endpoint, h *journey.Hop) { h.Pkt.SrcPort++ }},
		{same, func(e *topology.Endpoint, h *journey.Hop) { h.Pkt.DstPort++ }},
		{same, func(e *topology.Endpoint, h *journey.Hop) { h.Pkt.Src = netip.MustParseAddr("2001:db8::8") }},
		{same, func(e *topology.Endpoint, h *journey.Hop) { h.Pkt.Dst = netip.MustParseAddr("2001:db8::9") }},
	}
	apply := func(j *journey.Journey, c change) *journey.Journey {
		j = clone(j)
		for i := range j.Hops {
			c(&j.Hops[i].Endpoint, &j.Hops[i])
		}
		return j
	}
	var js []*journey.Journey
	for _, j := range scenarios(t) {
		if len(j.Hops) == 0 {
			continue
		}
		// One printer prints the journey before and after: the
		// interfaces are the same, their fields not.
		for _, c := range changes {
			js = append(js, apply(j, c.before), apply(j, c.after))
		}
	}
	sameLines(t, optionSets[0], js...)
}

// Hops inside an overlay's VXLAN tunnel (IPv4 and IPv6 peers) carry a
// "tunnel" object and say where they went in their action.
func TestJourneyLineTunnel(t *testing.T) {
	peers := []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}
	var js []*journey.Journey
	for n, j := range scenarios(t) {
		if len(j.Hops) == 0 {
			continue
		}
		h := &j.Hops[len(j.Hops)-1]
		h.Endpoint.Role = topology.RoleHost
		h.Tunnel = &journey.Tunnel{Tunnel: event.Tunnel{VNI: uint32(4096 + n), Peer: peers[n%2]}}
		if n%3 == 1 {
			h.Tunnel.Node = "node-\"b\""
		}
		js = append(js, j)
	}
	sameLines(t, optionSets[0], js...)
	var b bytes.Buffer
	if err := render.NewJSON(&b, optionSets[0]).Journey(js[0]); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Hops []struct {
			Action string
			Tunnel *render.TunnelJSON
		}
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	last := got.Hops[len(got.Hops)-1]
	if last.Tunnel == nil || last.Tunnel.VNI != 4096 || last.Tunnel.Peer != "192.0.2.7" || last.Tunnel.Type != "vxlan" {
		t.Fatalf("tunnel of the last hop: %+v", last.Tunnel)
	}
	if want := "192.0.2.7 (VNI 4096)"; !bytes.Contains([]byte(last.Action), []byte(want)) {
		t.Fatalf("action %q does not say %q", last.Action, want)
	}
	if got.Hops[0].Tunnel != nil && len(got.Hops) > 1 {
		t.Fatalf("a hop outside the tunnel has one: %+v", got.Hops[0].Tunnel)
	}
}

// The time of a journey across second boundaries and daylight saving
// changes, in order and out of it, in zones with and without them.
func TestJourneyLineTimes(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	j := scenarios(t)[0]
	var js []*journey.Journey
	for _, at := range []time.Time{
		time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC),  // New York springs forward
		time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC), // and falls back
		time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC),
	} {
		for _, d := range []time.Duration{-time.Second - 1, -time.Second, -1, 0, 1, 999_999_999, time.Second, 5, -2 * time.Second, 0} {
			c := clone(j)
			c.Start = uint64(at.Add(d).UnixNano() - offset)
			js = append(js, c)
		}
	}
	for _, loc := range []*time.Location{ny, time.UTC, time.FixedZone("half", 1800), time.Local} {
		sameLines(t, render.Options{WallOffsetNS: offset, Location: loc}, js...)
	}
}

// weird are strings that need escaping, or look as if they might.
var weird = []string{
	"", "web", `say "hi"`, `back\slash`, "\x00\x01\x1f\x7f", "\b\f\n\r\t", "\xff\xfe", "cut\xe2\x80",
	"\xe2\x80", "line\u2028para\u2029", "<script>&amp;</script>", "ünïcødé 日本 🎉", "\xed\xa0\x80", "\xc0\xaf",
	"bridge", "docker0", "a\u0080b\u00ff", "\"\\\"", "/", "\x1b[31mred", "\ufffd", "\xf4\x90\x80\x80",
}

func TestJourneyLineMutated(t *testing.T) {
	base := scenarios(t)
	r := rand.New(rand.NewPCG(12, 2026))
	for _, opt := range optionSets {
		js := make([]*journey.Journey, 1000)
		for i := range js {
			js[i] = mutate(r, clone(base[r.IntN(len(base))]))
		}
		sameLines(t, opt, js...)
	}
}

// Every byte value, alone and next to others, in a name.
func TestJourneyLineEveryByte(t *testing.T) {
	base := scenarios(t)[0]
	var js []*journey.Journey
	for c := range 256 {
		j := clone(base)
		j.Hops[0].Endpoint.Container.Name = string([]byte{byte(c)})
		j.Hops[1].Endpoint.Name = string([]byte{'a', byte(c), 'b', byte(c)})
		js = append(js, j)
	}
	sameLines(t, optionSets[0], js...)
}

// Strings the printer does not HTML-escape come out as they are: this is
// what json.Encoder with SetEscapeHTML(false) did before.
func TestJourneyLineNoHTMLEscape(t *testing.T) {
	j := clone(scenarios(t)[0])
	j.Hops[0].Endpoint.Container.Name = "<a&b>"
	var b bytes.Buffer
	if err := render.NewJSON(&b, render.Options{}).Journey(j); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b.Bytes(), []byte(`"label":"<a&b>:eth0"`)) {
		t.Errorf("<, & and > escaped or label missing:\n%s", b.Bytes())
	}
}

// Each journey reaches the writer in one Write, before Journey returns; a
// write error is returned then and by every later call.
func TestJSONWrites(t *testing.T) {
	js := scenarios(t)
	w := &countWriter{}
	p := render.NewJSON(w, render.Options{})
	for i, j := range js[:5] {
		if err := p.Journey(j); err != nil {
			t.Fatal(err)
		}
		if w.writes != i+1 || w.lines != i+1 {
			t.Fatalf("after journey %d: %d writes, %d lines", i+1, w.writes, w.lines)
		}
	}
	w.err = errors.New("disk full")
	if err := p.Journey(js[5]); !errors.Is(err, w.err) {
		t.Fatalf("Journey: %v, want %v", err, w.err)
	}
	w.err = nil
	if err := p.Journey(js[6]); err == nil {
		t.Fatal("Journey after a failed write: no error")
	}
	if err := p.Summary(render.Summary{}); err == nil {
		t.Fatal("Summary after a failed write: no error")
	}
}

type countWriter struct {
	writes, lines int
	err           error
}

func (w *countWriter) Write(b []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.writes++
	w.lines += bytes.Count(b, []byte("\n"))
	return len(b), nil
}

func FuzzJourneyLine(f *testing.F) {
	for _, s := range weird {
		f.Add(s, "docker0", "NETFILTER_DROP")
	}
	base := scenarios(f)
	f.Fuzz(func(t *testing.T, name, bridge, reason string) {
		for _, j := range base[:12] { // the shapes: every kind of hop
			j = clone(j)
			for i := range j.Hops {
				e := &j.Hops[i].Endpoint
				e.Name, e.Bridge, e.Network, e.NetnsName = name, bridge, reason, bridge
				if e.Container != nil {
					e.Container.Name, e.Container.ID = reason, name
				}
			}
			if d := j.Drop; d != nil {
				d.ReasonName, d.Endpoint.Name = reason, bridge
			}
			sameLines(t, optionSets[0], j)
		}
	})
}

// clone copies j deep enough for mutate.
func clone(j *journey.Journey) *journey.Journey {
	c := *j
	c.Hops = slices.Clone(j.Hops)
	for i := range c.Hops {
		cloneContainer(&c.Hops[i].Endpoint)
	}
	c.Rewrites = slices.Clone(j.Rewrites)
	if j.Drop != nil {
		d := *j.Drop
		cloneContainer(&d.Endpoint)
		c.Drop = &d
	}
	return &c
}

func cloneContainer(e *topology.Endpoint) {
	if e.Container != nil {
		c := *e.Container
		e.Container = &c
	}
}

// mutate changes j's fields at random, within and beyond what the
// assembler makes: unknown roles, directions and verdicts, odd packets,
// strings needing escapes, drops anywhere.
func mutate(r *rand.Rand, j *journey.Journey) *journey.Journey {
	str := func(s string) string {
		if r.IntN(3) == 0 {
			return weird[r.IntN(len(weird))]
		}
		return s
	}
	if r.IntN(4) == 0 {
		j.Hops = j.Hops[:r.IntN(len(j.Hops)+1)]
	}
	for i := range j.Hops {
		h := &j.Hops[i]
		e := &h.Endpoint
		e.Name, e.Bridge, e.Network, e.NetnsName = str(e.Name), str(e.Bridge), str(e.Network), str(e.NetnsName)
		switch r.IntN(6) {
		case 0:
			e.Container = nil
		case 1:
			e.Container = &topology.Container{Name: str("db"), ID: str("0123")}
		}
		if r.IntN(4) == 0 {
			e.Role = topology.Role(r.IntN(7))
		}
		if r.IntN(4) == 0 {
			h.Dir = event.Direction(r.IntN(3))
		}
		if r.IntN(4) == 0 {
			e.Bridge = j.Hops[r.IntN(len(j.Hops))].Endpoint.Bridge
		}
		if r.IntN(4) == 0 {
			e.Network = e.Bridge
		}
		if r.IntN(3) == 0 {
			e.Driver = []string{"", topology.DriverOverlay, "macvlan"}[r.IntN(3)]
		}
		if r.IntN(3) == 0 {
			h.Pkt = packet(r)
		}
		if r.IntN(5) == 0 {
			h.Parent = r.IntN(i+1) - 1
			h.Delta = time.Duration(r.Int64() - r.Int64())
			h.TimeNS, h.Len, h.GSOSegs, h.GSOSize = r.Uint64(), r.Uint32(), uint16(r.IntN(3)), uint16(r.IntN(3)*1448)
			e.Ifindex, e.NetnsIno, h.Resolved = r.Uint32(), r.Uint32(), !h.Resolved
		}
	}
	if r.IntN(3) == 0 {
		j.ID, j.Fingerprint, j.Fanout = r.Uint64(), r.Uint64()>>(r.IntN(64)), r.IntN(5)-1
		j.Start, j.End = r.Uint64()>>r.IntN(64), r.Uint64()
		j.Transit = time.Duration(r.Int64() - r.Int64())
		j.Verdict, j.TimedOut, j.Evicted = journey.Verdict(r.IntN(7)), r.IntN(2) == 0, r.IntN(2) == 0
	}
	if r.IntN(3) == 0 {
		j.Rewrites = nil
		for range r.IntN(3) {
			j.Rewrites = append(j.Rewrites, journey.Rewrite{Hop: r.IntN(5) - 1, Kind: journey.RewriteKind(r.IntN(5)),
				From: journey.Flow{Src: netip.AddrPortFrom(addr(r), uint16(r.Uint32())), Dst: netip.AddrPortFrom(addr(r), 80)},
				To:   journey.Flow{Src: netip.AddrPortFrom(addr(r), 0), Dst: netip.AddrPortFrom(addr(r), uint16(r.Uint32()))}})
		}
	}
	switch r.IntN(3) {
	case 0:
		j.Retransmit = nil
	case 1:
		j.Retransmit = &journey.Retransmit{Of: r.Uint64() >> r.IntN(64), After: time.Duration(r.Int64() - r.Int64())}
	}
	switch r.IntN(4) {
	case 0:
		j.Drop = nil
	case 1:
		d := &journey.Drop{After: r.IntN(len(j.Hops)+3) - 2, HasDev: r.IntN(2) == 0, AfterDelivery: r.IntN(2) == 0,
			TimeNS: r.Uint64(), Reason: uint32(r.IntN(3)) * r.Uint32(), ReasonName: str(""), Location: uint64(r.IntN(2)) * r.Uint64()}
		d.Endpoint = topology.Endpoint{Name: str("eth0"), Role: topology.Role(r.IntN(7)), NetnsName: str(""),
			Ifindex: uint32(r.IntN(2)) * r.Uint32(), NetnsIno: uint32(r.IntN(2)) * r.Uint32()}
		if r.IntN(2) == 0 {
			d.Endpoint.Container = &topology.Container{Name: str("web")}
		}
		j.Drop = d
	}
	return j
}

// addr is no address, IPv4, IPv6, IPv4-mapped IPv6, or IPv6 with a zone.
func addr(r *rand.Rand) netip.Addr {
	var a16 [16]byte
	for i := range a16 {
		a16[i] = byte(r.IntN(3) * r.IntN(256)) // runs of zeros, for "::"
	}
	switch r.IntN(6) {
	case 0:
		return netip.Addr{}
	case 1, 2:
		return netip.AddrFrom4([4]byte{a16[0], a16[1], a16[2], a16[3]})
	case 3:
		return netip.AddrFrom16(a16)
	case 4:
		return netip.AddrFrom16(netip.AddrFrom4([4]byte{10, 0, 0, a16[0]}).As16()) // ::ffff:10.0.0.x
	}
	return netip.AddrFrom16(a16).WithZone(weird[r.IntN(len(weird))])
}

// packet is a decoded packet with any layers and field values.
func packet(r *rand.Rand) event.Packet {
	p := event.Packet{
		Layers: event.Layer(r.Uint32() & 0x3ff), EtherType: uint16(r.Uint32()), VLAN: uint16(r.IntN(2) * r.IntN(4096)),
		Src: addr(r), Dst: addr(r), Proto: uint8(r.Uint32()), IPID: uint32(r.IntN(2)) * r.Uint32(), TTL: uint8(r.IntN(2) * 64),
		SrcPort: uint16(r.IntN(2) * r.IntN(65536)), DstPort: uint16(r.IntN(2) * r.IntN(65536)), TCPFlags: uint8(r.Uint32()),
		Seq: uint32(r.IntN(2)) * r.Uint32(), Ack: uint32(r.IntN(2)) * r.Uint32(),
		ICMPType: []uint8{0, 3, 8, 128, 129, 200}[r.IntN(6)], ICMPCode: uint8(r.IntN(4)), ICMPID: uint16(r.IntN(2) * 77), ICMPSeq: uint16(r.IntN(2) * 9),
		ARPOp: uint16(r.IntN(4)),
	}
	if r.IntN(4) == 0 && p.Src.Is4() {
		p.Src = netip.AddrFrom16(p.Src.As16()) // ::ffff:a.b.c.d
	}
	for i := range 6 {
		p.SrcMAC[i], p.DstMAC[i], p.ARPSenderMAC[i] = byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
	}
	// Mostly the shapes a decoder makes, sometimes anything.
	if r.IntN(3) > 0 {
		switch r.IntN(7) {
		case 0:
			p.Layers = event.LayerEth | event.LayerARP
		case 1:
			p.Layers = event.LayerEth | event.LayerIPv6 | event.LayerICMPv6
		case 2:
			p.Layers = event.LayerEth | event.LayerIPv4 | event.LayerICMP
		case 3:
			p.Layers = event.LayerEth | event.LayerVLAN | event.LayerIPv6 | event.LayerUDP | event.LayerFragment
		case 4:
			p.Layers = event.LayerEth | event.LayerIPv4 | event.LayerTCP
		case 5:
			p.Layers = event.LayerEth | event.LayerIPv4
		case 6:
			p.Layers = event.LayerEth | event.LayerVLAN // another EtherType
		}
	}
	return p
}

// BenchmarkJSONJourney is the printer alone on tracefiletest's exchange;
// "encoding/json" is the way it printed before, for comparison.
func BenchmarkJSONJourney(b *testing.B) {
	js := scenarios(b)[12:] // tracefiletest's: the traffic of the pipeline benchmarks
	hops := 0
	for _, j := range js {
		hops += len(j.Hops)
	}
	opt := render.Options{WallOffsetNS: tracefiletest.MonoOffset}
	for _, bc := range []struct {
		name    string
		journey func(p *render.JSON, j *journey.Journey) error
	}{
		{"append", (*render.JSON).Journey},
		{"encoding/json", func(p *render.JSON, j *journey.Journey) error {
			enc := json.NewEncoder(io.Discard)
			enc.SetEscapeHTML(false)
			return enc.Encode(p.JourneyObject(j))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := render.NewJSON(io.Discard, opt)
			b.ReportAllocs()
			for b.Loop() {
				for _, j := range js {
					if err := bc.journey(p, j); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*hops), "ns/hop")
		})
	}
}
