package metrics

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

const hostNs, clientNs, webNs = 1, 2, 3

// snapshot is docker0 with client and web, each with eth0 (ifindex 2 in
// its netns) and a host veth (10 and 11).
func snapshot(withWeb bool) *topology.Snapshot {
	client := &topology.Container{ID: "c1", Name: "client", Networks: []topology.ContainerNetwork{{Network: "bridge", Bridge: "docker0"}}}
	web := &topology.Container{ID: "w1", Name: "web", Networks: []topology.ContainerNetwork{{Network: "bridge", Bridge: "docker0"}}}
	s := &topology.Snapshot{
		HostNetnsIno: hostNs,
		Containers:   []topology.Container{*client},
		Endpoints: []topology.Endpoint{
			{NetnsIno: hostNs, Ifindex: 3, Name: "docker0", Role: topology.RoleBridge, Bridge: "docker0", Network: "bridge"},
			{NetnsIno: clientNs, Ifindex: 2, Name: "eth0", Role: topology.RoleContainer, Container: client},
			{NetnsIno: hostNs, Ifindex: 10, Name: "veth1a2b", Role: topology.RoleHostVeth, Bridge: "docker0", Network: "bridge", Container: client},
		},
	}
	if withWeb {
		s.Containers = append(s.Containers, *web)
		s.Endpoints = append(s.Endpoints,
			topology.Endpoint{NetnsIno: webNs, Ifindex: 2, Name: "eth0", Role: topology.RoleContainer, Container: web},
			topology.Endpoint{NetnsIno: hostNs, Ifindex: 11, Name: "veth3c4d", Role: topology.RoleHostVeth, Bridge: "docker0", Network: "bridge", Container: web})
	}
	return s
}

func hook(ns, ifindex uint32, egress bool) Hook {
	return Hook{Key: topology.Key{NetnsIno: ns, Ifindex: ifindex}, Egress: egress}
}

func hist(counts map[int]uint64, sumNS uint64) Hist {
	var h Hist
	for i, n := range counts {
		h.Buckets[i] = n
	}
	h.SumNS = sumNS
	return h
}

// sampled is a path's histogram whose packets the kernel timed a sample
// of: packets is what passed, exactly.
func sampled(h Hist, packets uint64) Hist {
	h.Packets = packets
	return h
}

func state(withWeb bool) *State {
	clientEth0 := hook(clientNs, 2, true)
	clientVeth := hook(hostNs, 10, false)
	webVeth := hook(hostNs, 11, true)
	webEth0 := hook(webNs, 2, false)
	return &State{
		Snapshot:      snapshot(withWeb),
		HooksAttached: 5,
		Lost:          Lost{Aggregate: 1, Joins: 2},
		Agg: Aggregates{
			Paths: map[Pair]Hist{
				// 2 timed at <=10µs, 1 at <=20µs, of 7 packets
				{clientEth0, webEth0}:    sampled(hist(map[int]uint64{3: 2, 4: 1}, 40000), 7),
				{clientEth0, clientEth0}: sampled(hist(map[int]uint64{0: 4}, 0), 4), // one hook only
			},
			Hops: map[Pair]Hist{
				{clientEth0, clientVeth}: hist(map[int]uint64{0: 3}, 1500),
				{clientVeth, webVeth}:    hist(map[int]uint64{1: 3}, 4500),
				{webVeth, webEth0}:       hist(map[int]uint64{2: 3}, 9000),
			},
			Drops: map[DropKey]uint64{
				{Reason: "NETFILTER_DROP", At: clientVeth.Key, Last: clientVeth}: 5,
				{Reason: "NETFILTER_DROP", At: topology.Key{}, Last: clientVeth}: 1,
			},
		},
	}
}

func scrape(t *testing.T, st *State, err error) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(func() (*State, error) { return st, err }, "v1.2.3"))
	mfs, gerr := reg.Gather()
	if gerr != nil && err == nil {
		t.Fatalf("gather: %v", gerr)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestCollector(t *testing.T) {
	out := scrape(t, state(true), nil)
	for _, want := range []string{
		`hoptrace_path_latency_seconds_bucket{dst="web",network="bridge",src="client",le="5e-06"} 0`,
		`hoptrace_path_latency_seconds_bucket{dst="web",network="bridge",src="client",le="1e-05"} 2`,
		`hoptrace_path_latency_seconds_bucket{dst="web",network="bridge",src="client",le="2e-05"} 3`,
		`hoptrace_path_latency_seconds_bucket{dst="web",network="bridge",src="client",le="+Inf"} 3`,
		`hoptrace_path_latency_seconds_sum{dst="web",network="bridge",src="client"} 4e-05`,
		`hoptrace_path_latency_seconds_count{dst="web",network="bridge",src="client"} 3`,
		`hoptrace_packets_total{dst="web",src="client"} 7`,
		`hoptrace_packets_total{dst="client",src="client"} 4`,
		`hoptrace_hop_latency_seconds_count{from="client:eth0:egress",to="client:veth:ingress"} 3`,
		`hoptrace_hop_latency_seconds_count{from="client:veth:ingress",to="web:veth:egress"} 3`,
		`hoptrace_hop_latency_seconds_count{from="web:veth:egress",to="web:eth0:ingress"} 3`,
		`hoptrace_drops_total{container="client",reason="NETFILTER_DROP",where="client:veth"} 6`,
		`hoptrace_events_lost_total{kind="aggregate"} 1`,
		`hoptrace_joins_lost_total 2`,
		`hoptrace_hooks_attached 5`,
		`hoptrace_containers_watched 2`,
		`hoptrace_build_info{goversion="`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if strings.Contains(out, `src="client",dst="client"`) || strings.Contains(out, `hoptrace_path_latency_seconds_count{dst="client"`) {
		t.Errorf("a one-hook path has a latency histogram:\n%s", out)
	}
	for _, addr := range []string{"172.", "10.", "port"} {
		if strings.Contains(out, addr) {
			t.Errorf("an address or port in a label (%q):\n%s", addr, out)
		}
	}
}

// A removed container's series go: its interfaces are no longer in the
// snapshot.
func TestCollectorExpires(t *testing.T) {
	out := scrape(t, state(false), nil)
	if strings.Contains(out, "web") {
		t.Errorf("web's series after web went:\n%s", out)
	}
	if !strings.Contains(out, `hoptrace_drops_total{container="client"`) {
		t.Errorf("client's drops went with web:\n%s", out)
	}
}

func TestCollectorError(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(func() (*State, error) { return nil, errors.New("map gone") }, "dev"))
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "map gone") {
		t.Errorf("gather: %v, want the read error", err)
	}
}
