package tracer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// allModes adds the kernel-without-skb-key flavour (as on 6.1) to modes.
func allModes(t *testing.T, f func(t *testing.T, opts Options)) {
	t.Run("tcx", func(t *testing.T) { f(t, Options{}) })
	t.Run("legacy", func(t *testing.T) { f(t, Options{ForceLegacy: true}) })
	t.Run("legacy-noskbkey", func(t *testing.T) { f(t, Options{ForceLegacy: true, noSkbKey: true}) })
}

func TestPingWithoutSkbKey(t *testing.T) {
	// The path of older kernels: hop programs per netns, content keys.
	topo := testenv.NewTopology(t, 2)
	tr := load(t, Options{ForceLegacy: true, noSkbKey: true})
	attachAll(t, tr, topo)
	c := collect(t, tr)
	a, b := topo.Hosts[0], topo.Hosts[1]
	if n := a.Ping(t, b.IP, 2, 0x5151); n != 2 {
		t.Fatalf("%d of 2 pings answered", n)
	}
	for seq := uint16(1); seq <= 2; seq++ {
		isReq := func(h *event.Hop) bool {
			return h.Pkt.ICMPType == 8 && h.Pkt.ICMPID == 0x5151 && h.Pkt.ICMPSeq == seq
		}
		hops, _ := c.wait(t, "echo request hops", func(hops []event.Hop, _ []event.Drop) bool {
			return len(filterHops(hops, isReq)) >= 4
		})
		req := filterHops(hops, isReq)
		checkJourney(t, "echo request", req, path(topo, a, b))
		if req[0].SkbKey != 0 {
			t.Errorf("skb key %#x without kern ctx", req[0].SkbKey)
		}
	}
}

// TestCompactHops: a packet's hops after the first, with the same headers,
// go as compact events, and the reader gives them the first hop's headers
// and fingerprint; without the skb key every hop carries its headers. With
// it, the hooks join those hops without decoding them (continue_here).
func TestCompactHops(t *testing.T) {
	allModes(t, func(t *testing.T, opts Options) { compactHops(t, opts, false) })
}

// TestCompactHopsIPv6: as TestCompactHops, over IPv6 (frame_hash covers
// IPv6 without extension headers too).
func TestCompactHopsIPv6(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		testenv.Lacks(t, "ipv6", "kernel without IPv6")
	}
	allModes(t, func(t *testing.T, opts Options) { compactHops(t, opts, true) })
}

func compactHops(t *testing.T, opts Options, v6 bool) {
	opts.countHookCalls = true
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	const n = 20
	var send func()
	var port uint16
	if v6 {
		a6, b6 := ula()
		addIPv6(t, a, a6)
		addIPv6(t, b, b6)
		var rx, tx *net.UDPConn
		if err := b.Do(func() (err error) {
			rx, err = net.ListenUDP("udp6", &net.UDPAddr{IP: b6.AsSlice()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rx.Close() })
		if err := a.Do(func() (err error) {
			tx, err = net.ListenUDP("udp6", &net.UDPAddr{IP: a6.AsSlice()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Close() })
		port = uint16(rx.LocalAddr().(*net.UDPAddr).Port)
		send = func() {
			for range n {
				if _, err := tx.WriteTo([]byte("compact"), rx.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond)
			}
		}
	} else {
		rx := b.UDPConn(t, 0)
		port = uint16(rx.LocalAddr().(*net.UDPAddr).Port)
		send = func() { udpTo(t, a, rx.LocalAddr(), []byte("compact"), n, time.Millisecond) }
	}
	tr := load(t, opts)
	attachAll(t, tr, topo)
	c := collect(t, tr)
	send()
	layer := event.LayerIPv4
	if v6 {
		layer = event.LayerIPv6
	}
	isDgram := func(h *event.Hop) bool {
		return h.Pkt.Layers.Has(layer|event.LayerUDP) && h.Pkt.DstPort == port
	}
	for id, hs := range packetsOf(t, c, n, isDgram) {
		checkJourney(t, fmt.Sprintf("packet %#x", id), hs, path(topo, a, b))
		for _, h := range hs[1:] {
			if h.Pkt != hs[0].Pkt || h.Fingerprint != hs[0].Fingerprint {
				t.Errorf("packet %#x at %v: headers %+v fp %#x, at its first hop %+v fp %#x",
					id, hookOf(h), h.Pkt, h.Fingerprint, hs[0].Pkt, hs[0].Fingerprint)
			}
		}
	}
	tr.rings.mu.Lock()
	filled := tr.headers.filled
	tr.rings.mu.Unlock()
	switch {
	case !tr.Features().SkbKey && filled != 0:
		// Content keys: equal packets on two CPUs can share an entry.
		t.Errorf("%d hops came as compact events without the skb key", filled)
	case tr.Features().SkbKey && filled < 3*n:
		t.Errorf("%d hops came as compact events, want at least the %d after the datagrams' first", filled, 3*n)
	}
	if m := tr.headers.missing.Load(); m != 0 {
		t.Errorf("%d compact hops had no headers", m)
	}
	continued, err := tr.hopsContinued()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case !tr.Features().SkbKey && continued != 0:
		t.Errorf("%d hops joined without their decode, without the skb key", continued)
	case tr.Features().SkbKey && continued < 3*n:
		t.Errorf("%d hops joined without their decode, want at least the %d after the datagrams' first", continued, 3*n)
	}
}

// packetsOf waits for the four hops of n packets that keep selects and
// returns them by packet id, failing unless they make exactly n packets.
func packetsOf(t *testing.T, c *collector, n int, keep func(*event.Hop) bool) map[uint64][]event.Hop {
	t.Helper()
	hops, _ := c.wait(t, "every packet's four hops", func(hops []event.Hop, _ []event.Drop) bool {
		return len(filterHops(hops, keep)) >= 4*n
	})
	byPacket := map[uint64][]event.Hop{}
	for _, h := range filterHops(hops, keep) {
		byPacket[h.PacketID] = append(byPacket[h.PacketID], h)
	}
	if len(byPacket) != n {
		t.Fatalf("%d packets, want %d", len(byPacket), n)
	}
	return byPacket
}

func udpTo(t *testing.T, from *testenv.NSHost, to net.Addr, payload []byte, n int, gap time.Duration) {
	t.Helper()
	conn := from.UDPConn(t, 0)
	for i := 0; i < n; i++ {
		if _, err := conn.WriteTo(payload, to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap)
	}
}

func TestIdenticalPacketsGetDifferentIDs(t *testing.T) {
	allModes(t, func(t *testing.T, opts Options) {
		topo := testenv.NewTopology(t, 2)
		tr := load(t, opts)
		attachAll(t, tr, topo)
		c := collect(t, tr)
		a, b := topo.Hosts[0], topo.Hosts[1]
		rx := b.UDPConn(t, 0)
		port := rx.LocalAddr().(*net.UDPAddr).Port
		const n = 4
		gap := time.Duration(0)
		if !tr.Features().SkbKey {
			// Content keys cannot split packets in flight together. That
			// is every mode on a kernel without the skb key (6.1), not
			// only the mode that turns it off: there, with no gap, a
			// loaded VM whose softirqs fell behind the sender split them.
			gap = 30 * time.Millisecond
		}
		// The very same frame, sent n times from a's eth0.
		frame := udpFrame(a, b, uint16(port), []byte("same bytes"))
		sendFrames(t, a, frame, n, gap)
		buf := make([]byte, 64)
		_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		for i := 0; i < n; i++ {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				t.Fatalf("datagram %d: %v", i, err)
			}
		}
		isDgram := func(h *event.Hop) bool {
			return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == uint16(port)
		}
		hops, _ := c.wait(t, "datagram hops", func(hops []event.Hop, _ []event.Drop) bool {
			return len(filterHops(hops, isDgram)) >= 4*n
		})
		byID := map[uint64][]event.Hop{}
		fps := map[uint64]bool{}
		for _, h := range filterHops(hops, isDgram) {
			byID[h.PacketID] = append(byID[h.PacketID], h)
			fps[h.Fingerprint] = true
		}
		if len(fps) != 1 {
			t.Errorf("identical datagrams have %d fingerprints", len(fps))
		}
		if len(byID) != n {
			t.Fatalf("%d identical datagrams got %d packet ids", n, len(byID))
		}
		for id, hs := range byID {
			checkJourney(t, fmt.Sprintf("datagram %#x", id), hs, path(topo, a, b))
		}
	})
}

// iptables runs iptables -w with args.
func iptables(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables %v: %v: %s", args, err, out)
	}
}

func TestNetfilterDrop(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		testenv.Lacks(t, "br_netfilter", "br_netfilter is not loaded: bridged traffic skips iptables")
	}
	allModes(t, func(t *testing.T, opts Options) {
		topo := testenv.NewTopology(t, 2)
		tr := load(t, opts)
		if !tr.Features().Drops {
			t.Skip("kernel has no tp_btf/kfree_skb")
		}
		attachAll(t, tr, topo)
		c := collect(t, tr)
		a, b := topo.Hosts[0], topo.Hosts[1]
		rx := b.UDPConn(t, 0)
		port := rx.LocalAddr().(*net.UDPAddr).Port
		rule := []string{"FORWARD", "-s", a.IP.String(), "-d", b.IP.String(), "-p", "udp",
			"--dport", strconv.Itoa(port), "-j", "DROP"}
		iptables(t, append([]string{"-I", rule[0], "1"}, rule[1:]...)...)
		t.Cleanup(func() { iptables(t, append([]string{"-D"}, rule...)...) })

		const n = 3
		udpTo(t, a, rx.LocalAddr(), []byte("drop me"), n, 20*time.Millisecond)
		// A flow the rule does not match gets through.
		other := b.UDPConn(t, 0)
		udpTo(t, a, other.LocalAddr(), []byte("keep me"), 2, 0)
		_ = other.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		for i := 0; i < 2; i++ {
			if _, _, err := other.ReadFrom(buf); err != nil {
				t.Fatalf("undropped flow: %v", err)
			}
		}

		isDropped := func(h *event.Hop) bool {
			return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == uint16(port)
		}
		hops, drops := c.wait(t, "drops", func(_ []event.Hop, drops []event.Drop) bool {
			return len(drops) >= n
		})
		time.Sleep(50 * time.Millisecond) // any extra drop would show now
		hops, drops = c.wait(t, "drops", func([]event.Hop, []event.Drop) bool { return true })
		seenAt := map[uint64][]event.Hop{}
		for _, h := range filterHops(hops, isDropped) {
			seenAt[h.PacketID] = append(seenAt[h.PacketID], h)
		}
		if len(seenAt) != n {
			t.Fatalf("%d dropped datagrams, %d packet ids at hooks", n, len(seenAt))
		}
		got := 0
		for _, d := range drops {
			if d.ReasonName != "NETFILTER_DROP" {
				continue
			}
			got++
			hs := seenAt[d.PacketID]
			if len(hs) == 0 {
				t.Errorf("drop %+v joins no hop", d)
				continue
			}
			// Seen leaving a and entering the bridge, never leaving it.
			want := path(topo, a, b)[:2]
			if len(hs) != 2 || hookOf(hs[0]) != want[0] || hookOf(hs[1]) != want[1] {
				t.Errorf("dropped packet's hops: %v", hs)
			}
			if d.Fingerprint != hs[0].Fingerprint || d.Pkt.DstPort != uint16(port) || d.Pkt.Src != a.IP {
				t.Errorf("drop %+v does not match its hops", d)
			}
			if d.TimeNS < hs[len(hs)-1].TimeNS {
				t.Errorf("drop before its last hop")
			}
			delete(seenAt, d.PacketID)
		}
		if got != n {
			t.Errorf("%d NETFILTER_DROP drops, want %d (all drops: %+v)", got, n, drops)
		}
	})
}

// foreignProgram counts UDP packets (key 0) and drops UDP to dropPort
// (counted at key 1), returning -1 otherwise: TCX_NEXT and TC_ACT_UNSPEC
// are both -1, and TCX_DROP and TC_ACT_SHOT are both 2.
func foreignProgram(t *testing.T, dropPort uint16) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R0, asm.R1, 16, asm.Word), // __sk_buff.protocol, network order
		asm.JNE.Imm(asm.R0, 0x0008, "pass"),
		asm.LoadAbs(14+9, asm.Byte), // IPv4 protocol
		asm.JNE.Imm(asm.R0, 17, "pass"),
		asm.LoadAbs(14+20+2, asm.Half), // UDP destination port (no IP options here)
		asm.Mov.Imm(asm.R7, 0),
		asm.JNE.Imm(asm.R0, int32(dropPort), "count"),
		asm.Mov.Imm(asm.R7, 1),
		asm.StoreMem(asm.RFP, -8, asm.R7, asm.DWord).WithSymbol("count"),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.JNE.Imm(asm.R7, 1, "pass"),
		asm.Mov.Imm(asm.R0, 2),
		asm.Return(),
		asm.Mov.Imm(asm.R0, -1).WithSymbol("pass"),
		asm.Return(),
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatalf("load foreign program: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p, m
}

func counter(t *testing.T, m *ebpf.Map, k uint32) uint64 {
	t.Helper()
	var v uint64
	if err := m.Lookup(k, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func ourFilters(t *testing.T, ifindex int) (ours, foreign []string, clsact bool) {
	t.Helper()
	lnk, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := netlink.QdiscList(lnk)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		clsact = clsact || q.Type() == "clsact"
	}
	if !clsact {
		return nil, nil, false
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := netlink.FilterList(lnk, parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			name := f.Type()
			if bf, ok := f.(*netlink.BpfFilter); ok {
				name = bf.Name
			}
			switch {
			case strings.HasPrefix(name, FilterPrefix+selfTag+"-"):
				ours = append(ours, name)
			case strings.HasPrefix(name, FilterPrefix):
				// Another hoptrace on this host (a trace hooks every
				// bridge): neither ours nor the test's foreign filter.
			default:
				foreign = append(foreign, name)
			}
		}
	}
	return ours, foreign, clsact
}

func TestForeignProgramKeepsWorking(t *testing.T) {
	modes(t, func(t *testing.T, legacy bool) {
		topo := testenv.NewTopology(t, 2)
		a, b := topo.Hosts[0], topo.Hosts[1]
		rx := b.UDPConn(t, 0)
		port := uint16(rx.LocalAddr().(*net.UDPAddr).Port)
		other := b.UDPConn(t, 0)
		prog, counts := foreignProgram(t, port)

		// The foreign program sits on the sender's host veth ingress before
		// hoptrace arrives: as a TCX link, or as a cls_bpf filter.
		idx := a.HostVethIndex
		if legacy {
			if err := netlink.QdiscAdd(clsact(idx)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = netlink.QdiscDel(clsact(idx)) })
			f := &netlink.BpfFilter{
				FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.HANDLE_MIN_INGRESS,
					Priority: 10, Protocol: unix.ETH_P_ALL},
				Fd: prog.FD(), Name: "foreign", DirectAction: true,
			}
			if err := netlink.FilterAdd(f); err != nil {
				t.Fatal(err)
			}
		} else {
			l, err := link.AttachTCX(link.TCXOptions{Interface: idx, Program: prog, Attach: ebpf.AttachTCXIngress})
			if errors.Is(err, link.ErrNotSupported) {
				t.Skip("no TCX")
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}

		tr := load(t, Options{ForceLegacy: legacy})
		veth := Iface{Index: idx}
		if err := tr.Attach(veth); err != nil {
			t.Fatal(err)
		}
		c := collect(t, tr)
		send := func() {
			udpTo(t, a, rx.LocalAddr(), []byte("foreign drops me"), 3, 0)
			udpTo(t, a, other.LocalAddr(), []byte("foreign passes me"), 2, 0)
			_ = other.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 64)
			for i := 0; i < 2; i++ {
				if _, _, err := other.ReadFrom(buf); err != nil {
					t.Fatalf("passed flow: %v", err)
				}
			}
			_ = rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, _, err := rx.ReadFrom(buf); err == nil {
				t.Errorf("a datagram the foreign program drops arrived")
			}
		}
		send()
		if got := [2]uint64{counter(t, counts, 0), counter(t, counts, 1)}; got != [2]uint64{2, 3} {
			t.Errorf("foreign program counted %v (passed, dropped), want [2 3]", got)
		}
		// hoptrace runs first and so saw all five datagrams.
		hops, _ := c.wait(t, "udp hops", func(hops []event.Hop, _ []event.Drop) bool {
			return len(filterHops(hops, func(h *event.Hop) bool { return h.Pkt.Layers.Has(event.LayerUDP) })) >= 5
		})
		if n := len(filterHops(hops, func(h *event.Hop) bool { return h.Pkt.Layers.Has(event.LayerUDP) })); n != 5 {
			t.Errorf("hoptrace saw %d datagrams, want 5", n)
		}

		if err := tr.Detach(veth); err != nil {
			t.Fatal(err)
		}
		ours, foreign, hasClsact := ourFilters(t, idx)
		if len(ours) > 0 {
			t.Errorf("after detach our filters remain: %v", ours)
		}
		if legacy && (!hasClsact || len(foreign) != 1) {
			t.Errorf("after detach: clsact %v, foreign filters %v; want the foreign filter kept", hasClsact, foreign)
		}
		if !legacy {
			res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				t.Fatal(err)
			}
			// Ours must be gone and the foreign one kept; another hoptrace
			// running on this host may have its own there too.
			foreignID, err := prog.Info()
			if err != nil {
				t.Fatal(err)
			}
			fid, _ := foreignID.ID()
			keptForeign := false
			for _, p := range res.Programs {
				if p.ID == fid {
					keptForeign = true
				}
				if tr.ownsProgram(p.ID) {
					t.Errorf("after detach our TCX program %d is still on ingress", p.ID)
				}
			}
			if !keptForeign {
				t.Errorf("after detach the foreign TCX program is gone")
			}
		}
		send()
		if got := [2]uint64{counter(t, counts, 0), counter(t, counts, 1)}; got != [2]uint64{4, 6} {
			t.Errorf("after detach the foreign program counted %v, want [4 6]", got)
		}
	})
}

func TestDetachRemovesEverything(t *testing.T) {
	topo := testenv.NewTopology(t, 1)
	h := topo.Hosts[0]
	tr := load(t, Options{ForceLegacy: true})
	ifs := []Iface{{Name: h.HostVeth}, {Name: h.Iface, Netns: h.Path}}
	for _, i := range ifs {
		if err := tr.Attach(i); err != nil {
			t.Fatal(err)
		}
	}
	if ours, _, _ := ourFilters(t, h.HostVethIndex); len(ours) != 2 {
		t.Fatalf("attached filters: %v", ours)
	}
	for _, i := range ifs {
		if err := tr.Detach(i); err != nil {
			t.Fatal(err)
		}
	}
	if ours, foreign, hasClsact := ourFilters(t, h.HostVethIndex); hasClsact || len(ours)+len(foreign) > 0 {
		t.Errorf("after detach: clsact %v, filters %v %v", hasClsact, ours, foreign)
	}
	out, err := h.Exec("tc", "qdisc", "show", "dev", h.Iface)
	if err != nil || strings.Contains(out, "clsact") {
		t.Errorf("container side after detach: %v %s", err, out)
	}
}

func TestVanishedInterface(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	for _, legacy := range []bool{false, true} {
		tr := load(t, Options{ForceLegacy: legacy})
		name := "htgone" + strconv.Itoa(os.Getpid()%10000)
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(v) })
		if err := tr.Attach(Iface{Name: v.Name}); err != nil {
			t.Fatal(err)
		}
		if err := tr.Attach(Iface{Name: topo.Hosts[0].HostVeth}); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkDel(v); err != nil {
			t.Fatal(err)
		}
		if err := tr.Detach(Iface{Name: v.Name}); err != nil {
			t.Errorf("detach a vanished interface (legacy %v): %v", legacy, err)
		}
		if err := tr.Attach(Iface{Name: "htnosuch0"}); !errors.Is(err, unix.ENODEV) {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				t.Errorf("attach a missing interface: %v", err)
			}
		}
		if err := tr.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

func TestSweepStale(t *testing.T) {
	topo := testenv.NewTopology(t, 1)
	h := topo.Hosts[0]
	tr := load(t, Options{ForceLegacy: true})
	// A process that has exited stands for a killed hoptrace.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	idx := h.HostVethIndex
	if err := netlink.QdiscAdd(clsact(idx)); err != nil {
		t.Fatal(err)
	}
	prog := tr.coll.Programs["hop_ingress_legacy"]
	for _, d := range directions {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: d.parent, Priority: 1, Protocol: unix.ETH_P_ALL},
			Fd:          prog.FD(), Name: fmt.Sprintf("%s%d-%s-q", FilterPrefix, dead, d.name), DirectAction: true,
		}
		if err := netlink.FilterAdd(f); err != nil {
			t.Fatal(err)
		}
	}
	// Our own live filters elsewhere must survive the sweep.
	if err := tr.Attach(Iface{Name: h.Iface, Netns: h.Path}); err != nil {
		t.Fatal(err)
	}
	n, err := SweepStale()
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Errorf("swept %d filters, want at least 2", n)
	}
	if ours, foreign, hasClsact := ourFilters(t, idx); hasClsact || len(ours)+len(foreign) > 0 {
		t.Errorf("after sweep: clsact %v, filters %v %v", hasClsact, ours, foreign)
	}
	out, err := h.Exec("tc", "filter", "show", "dev", h.Iface, "ingress")
	if err != nil || !strings.Contains(out, FilterPrefix) {
		t.Errorf("the live tracer's filter was swept: %v %s", err, out)
	}
}

func TestLossIsExact(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	tr := load(t, Options{RingBufferBytes: os.Getpagesize(), countHookCalls: true})
	veth := Iface{Index: a.HostVethIndex}
	if err := tr.Attach(veth); err != nil {
		t.Fatal(err)
	}
	rx := b.UDPConn(t, 0)
	// Nobody reads while 500 datagrams pass: a page holds a few dozen events.
	udpTo(t, a, rx.LocalAddr(), []byte("flood"), 500, 0)
	// Detach first, so the hook count is final before it is read.
	if err := tr.Detach(veth); err != nil {
		t.Fatal(err)
	}
	calls, err := tr.hookCalls()
	if err != nil {
		t.Fatal(err)
	}
	loss, err := tr.Loss()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	delivered := uint64(0)
	var r Record
	for tr.ReadInto(ctx, &r) == nil {
		if r.Kind == KindHop {
			delivered++
		}
	}
	t.Logf("hook calls %d, delivered %d, lost %d", calls, delivered, loss.Hops)
	if loss.Hops == 0 {
		t.Errorf("the ring buffer never overflowed")
	}
	if delivered+loss.Hops != calls {
		t.Errorf("delivered %d + lost %d != %d hook calls", delivered, loss.Hops, calls)
	}
}

// TestSmallRingSpillsOver: a CPU's events go to its small rings (its fast
// ring, then its small kernel ring) first and, once they are full, to its
// large one. Nothing is lost while the two hold
// the events, and they come out in time order across all the rings.
func TestSmallRingSpillsOver(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	const ring = 4 << 20
	tr := load(t, Options{RingBufferBytes: ring, countHookCalls: true})
	veth := Iface{Index: a.HostVethIndex}
	if err := tr.Attach(veth); err != nil {
		t.Fatal(err)
	}
	// consumed is how many bytes the reader took from the small rings and
	// from the large ones.
	consumed := func() (small, large uint64) {
		tr.rings.mu.Lock()
		defer tr.rings.mu.Unlock()
		for i, rg := range tr.rings.rings {
			if i < tr.rings.small {
				small += rg.pos
			} else {
				large += rg.pos
			}
		}
		return small, large
	}
	var last uint64
	readAll := func() (hops, drops uint64) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		var r Record
		for tr.ReadInto(ctx, &r) == nil {
			ts := r.Hop.TimeNS
			if r.Kind == KindHop {
				hops++
			} else {
				drops++
				ts = r.Drop.TimeNS
			}
			if ts < last {
				t.Errorf("event at %d after one at %d", ts, last)
			}
			last = ts
		}
		return hops, drops
	}
	rx := b.UDPConn(t, 0)

	// A few: the small rings hold them.
	udpTo(t, a, rx.LocalAddr(), []byte("few"), 50, 0)
	early, _ := readAll()
	if early < 50 {
		t.Fatalf("read %d hops of at least 50", early)
	}
	if small, large := consumed(); small == 0 || large != 0 {
		t.Fatalf("%d bytes from the small rings, %d from the large ones: want all from the small", small, large)
	}

	// Nobody reads while more pass than the small rings hold (an event
	// takes over 150 bytes; the sender may move between CPUs) but fewer
	// than a CPU's three rings do, with the drops of what the socket had no
	// room for.
	n := 4 * smallRingBytes / 150
	udpTo(t, a, rx.LocalAddr(), []byte("more"), n, 0)
	if err := tr.Detach(veth); err != nil {
		t.Fatal(err)
	}
	calls, err := tr.hookCalls()
	if err != nil {
		t.Fatal(err)
	}
	hops, drops := readAll()
	loss, err := tr.Loss()
	if err != nil {
		t.Fatal(err)
	}
	small, large := consumed()
	t.Logf("hook calls %d, hops %d, drops %d, lost %+v; bytes read from the small rings %d, the large %d", calls, hops, drops, loss, small, large)
	if loss.Hops != 0 || loss.Drops != 0 {
		t.Errorf("lost %d hops and %d drops with room in the large rings", loss.Hops, loss.Drops)
	}
	if early+hops != calls {
		t.Errorf("read %d hops, the hook ran %d times", early+hops, calls)
	}
	if large == 0 {
		t.Errorf("the large rings were never written: %d events fit the small ones", n)
	}
}

func TestCloseUnblocksReaders(t *testing.T) {
	tr := load(t, Options{})
	errc := make(chan error, 1)
	go func() {
		_, err := tr.Read(context.Background())
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("read after close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("close did not unblock the reader")
	}
	if err := tr.Attach(Iface{Name: "lo"}); !errors.Is(err, ErrClosed) {
		t.Errorf("attach after close: %v", err)
	}
}

// udpFrame builds an Ethernet frame carrying a UDP datagram from a to b with
// a fixed IP ID, so that sending it twice sends identical bytes.
func udpFrame(a, b *testenv.NSHost, port uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:6], b.MAC)
	copy(f[6:12], a.MAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8], ip[9] = 64, 17
	copy(ip[12:16], a.IP.AsSlice())
	copy(ip[16:20], b.IP.AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload))) // checksum 0: none
	copy(udp[8:], payload)
	return f
}

// sendFrames sends frame n times through an AF_PACKET socket on h's eth0.
func sendFrames(t *testing.T, h *testenv.NSHost, frame []byte, n int, gap time.Duration) {
	t.Helper()
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: h.IfaceIndex, Halen: 6}
		copy(to.Addr[:], frame[:6])
		for i := 0; i < n; i++ {
			if err := unix.Sendto(fd, frame, 0, to); err != nil {
				return fmt.Errorf("send frame: %w", err)
			}
			time.Sleep(gap)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
