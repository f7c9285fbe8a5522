package latency_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/exchange"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/latency"
)

// exchanges: 100 client -> web:8080 requests with server times of 1..100ms
// and 30us each way, 3 handshakes, 4 DNS queries to db, one without its
// response's arrival.
func exchanges() []exchange.Exchange {
	web := netip.AddrPortFrom(jt.WebIP, 8080)
	db := netip.AddrPortFrom(jt.DBIP, 53)
	var out []exchange.Exchange
	t := jt.Base
	for i := uint64(1); i <= 100; i++ {
		e := exchange.Exchange{Proto: event.ProtoTCP, Client: "client", Server: "web",
			ClientAddr: netip.AddrPortFrom(jt.ClientIP, 40000), ServerAddr: web,
			RequestSent: t, RequestIn: t + 30_000, ResponseOut: t + 30_000 + i*uint64(time.Millisecond)}
		e.ResponseIn = e.ResponseOut + 30_000
		if i%50 == 0 {
			e.Retransmits = 1
		}
		out = append(out, e)
		t += uint64(time.Second)
	}
	for i := uint64(0); i < 3; i++ {
		out = append(out, exchange.Exchange{Proto: event.ProtoTCP, Handshake: true, Client: "client", Server: "web",
			ServerAddr: web, RequestSent: t, RequestIn: t + 30_000, ResponseOut: t + 50_000 + i*10_000, ResponseIn: t + 80_000})
	}
	for i := uint64(0); i < 4; i++ {
		e := exchange.Exchange{Proto: event.ProtoUDP, Client: "client", Server: "db", ServerAddr: db,
			RequestSent: t, RequestIn: t + 20_000, ResponseOut: t + 520_000}
		if i > 0 {
			e.ResponseIn = t + 540_000
		}
		out = append(out, e)
	}
	return out
}

// retransmission is a client -> web segment journey that repeats one
// 200ms earlier; dropped says whether it was dropped again.
func retransmission(dropped bool) *journey.Journey {
	p := jt.TCP(jt.ClientIP, 40000, jt.WebIP, 8080, event.TCPPsh|event.TCPAck, 1)
	in := jt.Hops(jt.Walk(jt.ClientToWeb, jt.Base, 10_000, 0x42, 42, p))
	if dropped {
		in = in[:2]
		in = append(in, jt.Event{Drop: &event.Drop{TimeNS: jt.Base + 11_000, SkbKey: 0x42, Fingerprint: 42, ReasonName: "NETFILTER_DROP", Pkt: p}})
	}
	js, _ := jt.Run(journey.Config{HostNetnsIno: jt.HostNS}, in)
	return js[0]
}

func TestExchangeReport(t *testing.T) {
	a := latency.New(latency.Config{})
	for _, e := range exchanges() {
		a.AddExchange(&e)
	}
	a.AddRetransmit(retransmission(false), &exchange.Retransmit{Retransmit: journey.Retransmit{After: 200 * time.Millisecond}})
	a.AddRetransmit(retransmission(false), &exchange.Retransmit{Retransmit: journey.Retransmit{After: 400 * time.Millisecond}})
	a.AddRetransmit(retransmission(true), &exchange.Retransmit{Retransmit: journey.Retransmit{After: 200 * time.Millisecond}})
	r := a.Report()
	if len(r.Exchanges) != 2 {
		t.Fatalf("exchanges %+v", r.Exchanges)
	}
	web, dns := r.Exchanges[0], r.Exchanges[1]
	if web.Client != "client" || web.Server != "web" || web.Port != 8080 || web.Proto != "tcp" || web.Count != 100 || web.Retransmits != 2 {
		t.Errorf("web %+v", web)
	}
	if p50 := web.ServerTime.P50; p50 < 49*time.Millisecond || p50 > 52*time.Millisecond || web.ServerTime.Max != 100*time.Millisecond {
		t.Errorf("web server time %+v, want p50 about 50ms, max 100ms", web.ServerTime)
	}
	if web.Network.P50 != 60*time.Microsecond || web.NetworkCount != 100 {
		t.Errorf("web network %+v (%d), want 60us", web.Network, web.NetworkCount)
	}
	if web.Handshakes != 3 || web.Handshake == nil || web.Handshake.Max != 40*time.Microsecond {
		t.Errorf("web handshakes %d %+v", web.Handshakes, web.Handshake)
	}
	if dns.Proto != "udp" || dns.Count != 4 || dns.NetworkCount != 3 || dns.ServerTime.P50 != 500*time.Microsecond || dns.Handshake != nil {
		t.Errorf("dns %+v", dns)
	}
	if len(r.Retransmits) != 2 {
		t.Fatalf("retransmits %+v", r.Retransmits)
	}
	if rt := r.Retransmits[0]; rt.Path != "client:eth0 -> web:eth0" || rt.Count != 2 || rt.TotalNS != int64(600*time.Millisecond) {
		t.Errorf("retransmits %+v", rt)
	}
	if rt := r.Retransmits[1]; rt.Path != "client:eth0 -> veth1a2b" || rt.Count != 1 {
		t.Errorf("dropped retransmission %+v", rt)
	}

	// JSON: "exchanges" entries with client, server, port, proto, count,
	// and network_ns and server_ns objects of p50, p90, p99, max.
	var b bytes.Buffer
	if err := latency.WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Exchanges []map[string]any `json:"exchanges"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	e := doc.Exchanges[0]
	for _, k := range []string{"client", "server", "port", "proto", "count", "network_ns", "server_ns"} {
		if _, ok := e[k]; !ok {
			t.Errorf("exchange JSON lacks %q: %v", k, e)
		}
	}
	for _, k := range []string{"network_ns", "server_ns"} {
		m, _ := e[k].(map[string]any)
		for _, q := range []string{"p50", "p90", "p99", "max"} {
			if _, ok := m[q].(float64); !ok {
				t.Errorf("%s lacks %s: %v", k, q, m)
			}
		}
	}

	b.Reset()
	if err := latency.WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "exchanges.golden", b.Bytes())
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (go test -update creates it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./tracer/latency -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}
