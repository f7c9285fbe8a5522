package tracer

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/vishvananda/netlink"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// vxlanPort is the UDP port of the test's tunnels (Docker's default).
const vxlanPort = 4789

// addVXLAN makes a VXLAN device vx0 in h's namespace, over its eth0 toward
// remote, with inner address inner/24, as Docker's overlay makes vxlan0
// (there with a bridge and static entries; here the remote is fixed).
func addVXLAN(t *testing.T, h *testenv.NSHost, vni int, remote netip.Addr, inner netip.Addr) int {
	t.Helper()
	var index int
	err := h.Do(func() error {
		vx := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: "vx0"},
			VxlanId:      vni,
			VtepDevIndex: h.IfaceIndex,
			SrcAddr:      h.IP.AsSlice(),
			Group:        remote.AsSlice(),
			Port:         vxlanPort,
		}
		if err := netlink.LinkAdd(vx); err != nil {
			return fmt.Errorf("add vxlan: %w", err)
		}
		lnk, err := netlink.LinkByName("vx0")
		if err != nil {
			return err
		}
		index = lnk.Attrs().Index
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: inner.AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := netlink.AddrAdd(lnk, addr); err != nil {
			return fmt.Errorf("address vxlan: %w", err)
		}
		return netlink.LinkSetUp(lnk)
	})
	if err != nil {
		testenv.Lacks(t, "vxlan", err.Error())
	}
	// vx0 goes with the namespace, which the topology removes.
	return index
}

// udpThrough sends n datagrams from:port -> to:port, from src's namespace
// to a socket in dst's, and returns once each arrived.
func udpThrough(t *testing.T, src, dst *testenv.NSHost, from, to netip.Addr, port, n int) {
	t.Helper()
	var rx, tx *net.UDPConn
	if err := dst.Do(func() error {
		var err error
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: to.AsSlice(), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := src.Do(func() error {
		var err error
		tx, err = net.DialUDP("udp4", &net.UDPAddr{IP: from.AsSlice(), Port: port}, &net.UDPAddr{IP: to.AsSlice(), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	buf := make([]byte, 64)
	for i := range n {
		// The first may wait for ARP across the tunnel: send until it arrives.
		for try := 0; ; try++ {
			if _, err := tx.Write(fmt.Appendf(nil, "vxlan-%d", i)); err != nil {
				t.Fatal(err)
			}
			_ = rx.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := rx.ReadFrom(buf); err == nil {
				break
			} else if try == 5 {
				t.Fatalf("datagram %d did not cross the tunnel: %v", i, err)
			}
		}
	}
}

// TestVXLANUnderlay: a packet through a VXLAN tunnel between two namespaces
// is one journey from the sender's vx0 onto its wire (eth0, the underlay)
// and from the receiver's wire into its vx0. At the underlay hooks the hop
// is the packet inside, with the VNI and the other end's address from the
// outer headers; packets that are not VXLAN are not traced there.
// tunnelPair is two namespaces joined by a VXLAN tunnel (VNI 4242) over
// their eth0s, traced at both vx0s and, as underlays, both eth0s.
type tunnelPair struct {
	a, b           *testenv.NSHost
	vxA, vxB       int
	innerA, innerB netip.Addr
	tr             *Tracer
	c              *collector
}

const tunnelVNI = 4242

func newTunnelPair(t *testing.T, opts Options) *tunnelPair {
	topo := testenv.NewTopology(t, 2)
	p := &tunnelPair{a: topo.Hosts[0], b: topo.Hosts[1],
		innerA: netip.MustParseAddr("192.168.213.1"), innerB: netip.MustParseAddr("192.168.213.2")}
	p.vxA = addVXLAN(t, p.a, tunnelVNI, p.b.IP, p.innerA)
	p.vxB = addVXLAN(t, p.b, tunnelVNI, p.a.IP, p.innerB)
	p.tr = load(t, opts)
	for _, h := range []*testenv.NSHost{p.a, p.b} {
		if err := p.tr.Attach(Iface{Name: "vx0", Netns: h.Path}); err != nil {
			t.Fatal(err)
		}
		if err := p.tr.Attach(Iface{Name: h.Iface, Netns: h.Path, TunnelPort: vxlanPort}); err != nil {
			t.Fatal(err)
		}
	}
	p.c = collect(t, p.tr)
	return p
}

// distinctModes runs f in those modes of allModes that differ on this
// kernel: without TCX the tcx mode attaches as legacy does, and without
// the skb key legacy runs as legacy-noskbkey does. The VXLAN tests verify
// two more sets of programs per namespace, slow in a VM without KVM.
func distinctModes(t *testing.T, f func(t *testing.T, opts Options)) {
	testenv.RequireRoot(t)
	k, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	feat := probeFeatures(k)
	if feat.TCX {
		t.Run("tcx", func(t *testing.T) { f(t, Options{}) })
	}
	if feat.SkbKey {
		t.Run("legacy", func(t *testing.T) { f(t, Options{ForceLegacy: true}) })
	}
	t.Run("legacy-noskbkey", func(t *testing.T) { f(t, Options{ForceLegacy: true, noSkbKey: true}) })
}

func TestVXLANUnderlay(t *testing.T) {
	distinctModes(t, func(t *testing.T, opts Options) {
		p := newTunnelPair(t, opts)
		a, b, vxA, vxB, innerA, innerB, c := p.a, p.b, p.vxA, p.vxB, p.innerA, p.innerB, p.c
		const vni = tunnelVNI

		// Not VXLAN: a ping on the underlay itself is not traced there.
		if n := a.Ping(t, b.IP, 1, 0x5151); n != 1 {
			t.Fatalf("underlay ping: %d of 1 answered", n)
		}
		const port, n = 7788, 3
		udpThrough(t, a, b, innerA, innerB, port, n)

		isOurs := func(h *event.Hop) bool {
			return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == port && h.Pkt.Src == innerA && h.Pkt.Dst == innerB
		}
		hops, _ := c.wait(t, "datagrams at all four hooks", func(hops []event.Hop, _ []event.Drop) bool {
			return len(filterHops(hops, isOurs)) >= 4*n
		})
		for i := range hops {
			if hops[i].Pkt.Layers.Has(event.LayerICMP) && hops[i].Pkt.ICMPID == 0x5151 {
				t.Fatalf("a packet outside the tunnel was traced at an underlay hook: %+v", hops[i])
			}
		}
		byID := map[uint64][]event.Hop{}
		for _, h := range filterHops(hops, isOurs) {
			byID[h.PacketID] = append(byID[h.PacketID], h)
		}
		if len(byID) != n {
			t.Fatalf("%d datagrams make %d journeys, want %d", n, len(byID), n)
		}
		want := []hookID{
			{a.NetnsIno, uint32(vxA), event.Egress},
			{a.NetnsIno, uint32(a.IfaceIndex), event.Egress},
			{b.NetnsIno, uint32(b.IfaceIndex), event.Ingress},
			{b.NetnsIno, uint32(vxB), event.Ingress},
		}
		for id, hs := range byID {
			var got []hookID
			for _, h := range hs {
				got = append(got, hookOf(h))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("packet %#x: hooks %v, want %v", id, got, want)
			}
			wantTun := []event.Tunnel{{}, {VNI: vni, Peer: b.IP}, {VNI: vni, Peer: a.IP}, {}}
			for k, h := range hs {
				if h.Tunnel != wantTun[k] {
					t.Errorf("packet %#x at %v: tunnel %+v, want %+v", id, hookOf(h), h.Tunnel, wantTun[k])
				}
				if h.Fingerprint != hs[0].Fingerprint {
					t.Errorf("packet %#x at %v: fingerprint changed inside the tunnel", id, hookOf(h))
				}
			}
		}
	})
}

// TestVXLANUnderlayDrop: a firewall that blocks the tunnel's port, on the
// sending side (OUTPUT, after the encapsulation) or the receiving side
// (INPUT, before the decapsulation), drops the VXLAN packet; the drop is
// decoded as the packet inside and joins its journey.
func TestVXLANUnderlayDrop(t *testing.T) {
	distinctModes(t, func(t *testing.T, opts Options) {
		p := newTunnelPair(t, opts)
		if !p.tr.Features().Drops {
			t.Skip("kernel has no tp_btf/kfree_skb")
		}
		// Across once, so that ARP is done before the firewall goes up.
		udpThrough(t, p.a, p.b, p.innerA, p.innerB, 7700, 1)
		for _, side := range []struct {
			name string
			ns   *testenv.NSHost
			rule []string
			port int
			// the hooks the dropped packet passed, in order
			hooks []hookID
		}{
			{"sender's OUTPUT", p.a, []string{"OUTPUT", "-p", "udp", "--dport", "4789", "-j", "DROP"}, 7701,
				[]hookID{{p.a.NetnsIno, uint32(p.vxA), event.Egress}}},
			{"receiver's INPUT", p.b, []string{"INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP"}, 7702,
				[]hookID{{p.a.NetnsIno, uint32(p.vxA), event.Egress}, {p.a.NetnsIno, uint32(p.a.IfaceIndex), event.Egress},
					{p.b.NetnsIno, uint32(p.b.IfaceIndex), event.Ingress}}},
		} {
			if out, err := side.ns.Exec("iptables", append([]string{"-w", "-I"}, side.rule...)...); err != nil {
				testenv.Lacks(t, "iptables", fmt.Sprintf("iptables in a namespace: %v: %s", err, out))
			}
			var conn *net.UDPConn
			if err := p.a.Do(func() error {
				var err error
				conn, err = net.DialUDP("udp4", &net.UDPAddr{IP: p.innerA.AsSlice(), Port: side.port}, &net.UDPAddr{IP: p.innerB.AsSlice(), Port: side.port})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			const n = 2
			for range n {
				if _, err := conn.Write([]byte("blocked")); err != nil {
					t.Fatal(err)
				}
			}
			conn.Close()
			isOurs := func(src netip.Addr, port int) func(*event.Hop) bool {
				return func(h *event.Hop) bool {
					return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == uint16(port) && h.Pkt.Src == src
				}
			}
			hops, drops := p.c.wait(t, side.name+" drops", func(_ []event.Hop, drops []event.Drop) bool {
				k := 0
				for _, d := range drops {
					if d.ReasonName == "NETFILTER_DROP" && d.Pkt.DstPort == uint16(side.port) {
						k++
					}
				}
				return k >= n
			})
			byID := map[uint64][]event.Hop{}
			for _, h := range filterHops(hops, isOurs(p.innerA, side.port)) {
				byID[h.PacketID] = append(byID[h.PacketID], h)
			}
			for _, d := range drops {
				if d.ReasonName != "NETFILTER_DROP" || d.Pkt.DstPort != uint16(side.port) {
					continue
				}
				hs := byID[d.PacketID]
				var got []hookID
				for _, h := range hs {
					got = append(got, hookOf(h))
				}
				if fmt.Sprint(got) != fmt.Sprint(side.hooks) {
					t.Errorf("%s: the dropped packet %#x passed %v, want %v", side.name, d.PacketID, got, side.hooks)
					continue
				}
				if d.Fingerprint != hs[0].Fingerprint || d.Pkt.Src != p.innerA || d.Pkt.Dst != p.innerB {
					t.Errorf("%s: drop %+v is not the packet inside the tunnel", side.name, d)
				}
			}
			if out, err := side.ns.Exec("iptables", append([]string{"-w", "-D"}, side.rule...)...); err != nil {
				t.Fatalf("iptables -D: %v: %s", err, out)
			}
		}
	})
}
