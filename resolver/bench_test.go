package resolver

import (
	"fmt"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// benchScan is a scan of n containers on docker0, and the keys of their
// veth ends.
func benchScan(n int) (scanResult, dockerState, []topology.Key) {
	sc := scanResult{
		Host:         nsInfo{Netns: topology.Netns{Ino: hostIno, Source: topology.NetnsHost, Nsid: -1}},
		ContainerIno: map[string]uint32{},
	}
	sc.Host.Links = append(sc.Host.Links, linkInfo{Name: "docker0", Index: 3, Type: "bridge", PeerNsid: -1})
	var ds dockerState
	ds.Available = true
	ds.Networks = []Network{{ID: "n1", Name: "bridge", Driver: "bridge", Bridge: "docker0"}}
	var keys []topology.Key
	for i := 0; i < n; i++ {
		ino, idx := uint32(4026532000+i), uint32(100+i)
		sc.Host.Links = append(sc.Host.Links, linkInfo{Name: fmt.Sprintf("veth%d", i), Index: idx, Type: "veth", Master: 3, Peer: 2, PeerNsid: i})
		sc.Others = append(sc.Others, nsInfo{Netns: topology.Netns{Ino: ino, Nsid: i, Source: topology.NetnsContainer}, Links: []linkInfo{
			{Name: "lo", Index: 1, Type: "device", PeerNsid: -1},
			{Name: "eth0", Index: 2, Type: "veth", Peer: idx, PeerNsid: 0},
		}})
		id := fmt.Sprintf("c%063d", i)
		sc.ContainerIno[id] = ino
		ds.Containers = append(ds.Containers, topology.Container{ID: id, Name: fmt.Sprintf("c%d", i), PID: 1000 + i})
		keys = append(keys, topology.Key{NetnsIno: hostIno, Ifindex: idx}, topology.Key{NetnsIno: ino, Ifindex: 2})
	}
	return sc, ds, keys
}

// benchResolver is a resolver holding a snapshot of n containers, without
// any scanner or Docker behind it.
func benchResolver(n int) (*Resolver, []topology.Key) {
	sc, ds, keys := benchScan(n)
	r := &Resolver{}
	s := build(sc, ds, time.Now())
	r.cur.Store(&state{snap: s, ix: topology.NewIndex(s)})
	return r, keys
}

// BenchmarkLookup is the per-hop cost: go test -run '^$' -bench Lookup -benchmem ./resolver/
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10, 1000} {
		r, keys := benchResolver(n)
		var nr topology.Namer = r
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, ok := nr.Lookup(keys[i%len(keys)]); !ok {
					b.Fatal("miss")
				}
			}
		})
		b.Run(fmt.Sprintf("containers=%d/parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok := nr.Lookup(keys[i%len(keys)]); !ok {
						b.Fatal("miss")
					}
					i++
				}
			})
		})
	}
}

// BenchmarkLookupMiss is an interface the resolver does not know (yet).
func BenchmarkLookupMiss(b *testing.B) {
	r, _ := benchResolver(10)
	b.ReportAllocs()
	for b.Loop() {
		r.Lookup(topology.Key{NetnsIno: 1, Ifindex: 1})
	}
}

// BenchmarkBuild is the pure part of a rescan (100 containers), plus the
// index a new snapshot needs.
func BenchmarkBuild(b *testing.B) {
	sc, ds, _ := benchScan(100)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		topology.NewIndex(build(sc, ds, now))
	}
}

// BenchmarkRescan is one full rescan of this host (netlink in every
// namespace found, /proc walk, build); it needs root.
func BenchmarkRescan(b *testing.B) {
	if !isRoot() {
		b.Skip("needs root")
	}
	r, err := New(Options{Docker: NoDocker{}})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.rescan(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(r.Snapshot().Namespaces)), "netns")
}
