package metrics

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

func endpoint(s *topology.Snapshot, ns, ifindex uint32) topology.Endpoint {
	e, ok := topology.NewIndex(s).Lookup(topology.Key{NetnsIno: ns, Ifindex: ifindex})
	if !ok {
		panic("no endpoint")
	}
	return e
}

// TestJourneys: the pipeline sink names journeys as serve names the
// kernel's aggregates.
func TestJourneys(t *testing.T) {
	snap := snapshot(true)
	at := func(ns, ifindex uint32, dir event.Direction, t uint64, parent int) journey.Hop {
		return journey.Hop{Endpoint: endpoint(snap, ns, ifindex), Resolved: true, Dir: dir, TimeNS: t, Parent: parent}
	}
	hops := []journey.Hop{
		at(clientNs, 2, event.Egress, 1000, -1),
		at(hostNs, 10, event.Ingress, 3000, 0),
		at(hostNs, 11, event.Egress, 7000, 1),
		at(webNs, 2, event.Ingress, 15000, 2),
	}
	for i := 1; i < len(hops); i++ {
		hops[i].Delta = time.Duration(hops[i].TimeNS - hops[hops[i].Parent].TimeNS)
	}
	s := NewJourneys("dev", func() Lost { return Lost{Hops: 7} })
	for range 2 {
		if err := s.Journey(&journey.Journey{Hops: hops}); err != nil {
			t.Fatal(err)
		}
	}
	dropped := &journey.Journey{Hops: hops[:2], Drop: &journey.Drop{After: 1, ReasonName: "NETFILTER_DROP"}}
	if err := s.Journey(dropped); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	out := b.String()
	for _, want := range []string{
		`hoptrace_path_latency_seconds_bucket{dst="web",network="bridge",src="client",le="1e-05"} 0`,
		`hoptrace_path_latency_seconds_bucket{dst="web",network="bridge",src="client",le="2e-05"} 2`,
		`hoptrace_path_latency_seconds_sum{dst="web",network="bridge",src="client"} 2.8e-05`,
		`hoptrace_packets_total{dst="web",src="client"} 2`,
		`hoptrace_hop_latency_seconds_bucket{from="client:eth0:egress",to="client:veth:ingress",le="2e-06"} 3`,
		`hoptrace_hop_latency_seconds_count{from="client:veth:ingress",to="web:veth:egress"} 2`,
		`hoptrace_hop_latency_seconds_bucket{from="web:veth:egress",to="web:eth0:ingress",le="1e-05"} 2`,
		`hoptrace_drops_total{container="client",reason="NETFILTER_DROP",where="client:veth"} 1`,
		`hoptrace_events_lost_total{kind="hop"} 7`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if strings.Contains(out, `dst="client"`) {
		t.Errorf("the dropped packet counts as a path:\n%s", out)
	}
}
