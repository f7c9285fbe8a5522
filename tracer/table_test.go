package tracer

// Privileged tests of the kernel's per-packet table (seen_pkts): what goes
// in, what leaves it, and how a packet forgotten in flight is counted. And
// of what a drop is joined to.

import (
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// inFlight lists the packets the kernel holds as in flight: live slots of
// every CPU's flights (not yet past their last traced hook) and the entries
// of the shared table, seen_pkts.
func inFlight(t *testing.T, tr *Tracer) map[uint64][]hoptraceSeen {
	t.Helper()
	out := map[uint64][]hoptraceSeen{}
	var k uint64
	var v hoptraceSeen
	it := tr.coll.Maps["seen_pkts"].Iterate()
	for it.Next(&k, &v) {
		out[k] = append(out[k], v)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	var idx uint32
	var slots []hoptraceFlight
	it = tr.coll.Maps["flights"].Iterate()
	for it.Next(&idx, &slots) {
		for _, f := range slots {
			if f.Key != 0 && f.Ended == 0 {
				out[f.Key] = append(out[f.Key], f.S)
			}
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// tableLen counts the packets the kernel holds as in flight.
func tableLen(t *testing.T, tr *Tracer) int {
	t.Helper()
	n := 0
	for _, e := range inFlight(t, tr) {
		n += len(e)
	}
	return n
}

// inTable reports whether the packet of hop h is still held as in flight.
func inTable(t *testing.T, tr *Tracer, h event.Hop) bool {
	t.Helper()
	key := h.SkbKey
	if key == 0 {
		key = h.Fingerprint
	}
	for _, e := range inFlight(t, tr)[key] {
		if e.Fp == h.Fingerprint {
			return true
		}
	}
	return false
}

// TestTableHoldsOnlyPacketsInFlight: a packet the filter rejects writes no
// entry, and a delivered packet's entry goes at its last hook, so after the
// traffic the table is empty.
func TestTableHoldsOnlyPacketsInFlight(t *testing.T) {
	allModes(t, func(t *testing.T, opts Options) {
		topo := testenv.NewTopology(t, 2)
		a, b := topo.Hosts[0], topo.Hosts[1]
		rx := b.UDPConn(t, 0)
		port := rx.LocalAddr().(*net.UDPAddr).Port
		opts.Filter = mustCompile(t, "udp and dst port "+strconv.Itoa(port))
		tr := load(t, opts)
		attachAll(t, tr, topo)
		c := collect(t, tr)
		// Rejected: ARP and ping, a datagram to a closed port.
		if n := a.Ping(t, b.IP, 2, 0x7474); n != 2 {
			t.Fatalf("%d of 2 pings answered", n)
		}
		closed := b.UDPConn(t, 0)
		closedAddr := closed.LocalAddr()
		closed.Close()
		udpTo(t, a, closedAddr, []byte("rejected"), 2, 0)
		// Matched and delivered.
		const n = 3
		udpTo(t, a, rx.LocalAddr(), []byte("wanted"), n, 0)
		buf := make([]byte, 64)
		_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		for range n {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				t.Fatal(err)
			}
		}
		c.wait(t, "the datagrams' hops", func(hops []event.Hop, _ []event.Drop) bool {
			return len(hops) >= 4*n
		})
		time.Sleep(50 * time.Millisecond)
		hops, _ := c.wait(t, "all", func([]event.Hop, []event.Drop) bool { return true })
		if len(hops) != 4*n {
			t.Errorf("%d hops, want %d", len(hops), 4*n)
		}
		if got := tableLen(t, tr); got != 0 {
			t.Errorf("%d packets left in the table after the traffic, want none", got)
		}
	})
}

// TestDropAfterDelivery: a datagram to a closed port arrives in b (its last
// hook) and b's stack frees it; the drop still joins the packet.
func TestDropAfterDelivery(t *testing.T) {
	allModes(t, func(t *testing.T, opts Options) {
		topo := testenv.NewTopology(t, 2)
		a, b := topo.Hosts[0], topo.Hosts[1]
		tr := load(t, opts)
		if !tr.Features().Drops {
			t.Skip("kernel has no tp_btf/kfree_skb")
		}
		attachAll(t, tr, topo)
		c := collect(t, tr)
		closed := b.UDPConn(t, 0)
		to := closed.LocalAddr()
		port := uint16(to.(*net.UDPAddr).Port)
		closed.Close()
		udpTo(t, a, to, []byte("nobody listens"), 1, 0)
		isDgram := func(h *event.Hop) bool { return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == port }
		hops, drops := c.wait(t, "the datagram's hops and drop", func(hops []event.Hop, drops []event.Drop) bool {
			for _, d := range drops {
				if d.Pkt.DstPort == port {
					return len(filterHops(hops, isDgram)) >= 4
				}
			}
			return false
		})
		dg := filterHops(hops, isDgram)
		checkJourney(t, "datagram", dg, path(topo, a, b))
		for _, d := range drops {
			if d.Pkt.DstPort != port {
				continue
			}
			if d.PacketID != dg[0].PacketID || d.ReasonName != "NO_SOCKET" {
				t.Errorf("drop %#x %s, want packet %#x NO_SOCKET", d.PacketID, d.ReasonName, dg[0].PacketID)
			}
		}
	})
}

// TestDropJoinsOnlyItsPacket: a datagram from a passes a traced hook and
// is delivered; a datagram from c with the same fingerprint (same IP ID,
// lengths and protocol; other addresses and port) passes no traced hook
// and is dropped by the bridge's FORWARD chain. That drop is not a drop of
// a's packet, whatever the key.
func TestDropJoinsOnlyItsPacket(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		t.Skip("br_netfilter is not loaded: bridged traffic skips iptables")
	}
	allModes(t, func(t *testing.T, opts Options) {
		topo := testenv.NewTopology(t, 3)
		a, b, c := topo.Hosts[0], topo.Hosts[1], topo.Hosts[2]
		// The bridge learns b's MAC, so it forwards c's frame to b alone
		// instead of flooding it past a's (traced) port too.
		if n := b.Ping(t, topo.BridgeIP(), 1, 0x7575); n != 1 {
			t.Fatal("b cannot ping the bridge")
		}
		tr := load(t, opts)
		if !tr.Features().Drops {
			t.Skip("kernel has no tp_btf/kfree_skb")
		}
		if err := tr.Attach(Iface{Name: a.HostVeth}); err != nil {
			t.Fatal(err)
		}
		col := collect(t, tr)
		rx1, rx2 := b.UDPConn(t, 0), b.UDPConn(t, 0)
		p1, p2 := uint16(rx1.LocalAddr().(*net.UDPAddr).Port), uint16(rx2.LocalAddr().(*net.UDPAddr).Port)
		rule := []string{"FORWARD", "-s", c.IP.String(), "-d", b.IP.String(), "-p", "udp",
			"--dport", strconv.Itoa(int(p2)), "-j", "DROP"}
		iptables(t, append([]string{"-I", rule[0], "1"}, rule[1:]...)...)
		t.Cleanup(func() { iptables(t, append([]string{"-D"}, rule...)...) })

		payload := []byte("same length")
		sendFrames(t, a, udpFrame(a, b, p1, payload), 1, 0)
		buf := make([]byte, 64)
		_ = rx1.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := rx1.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
		isMine := func(h *event.Hop) bool { return h.Pkt.DstPort == p1 }
		hops, _ := col.wait(t, "a's datagram", func(hops []event.Hop, _ []event.Drop) bool {
			return len(filterHops(hops, isMine)) > 0
		})
		var mine event.Hop
		for _, h := range filterHops(hops, isMine) {
			mine = h
		}
		if mine.PacketID == 0 {
			t.Fatalf("no hop of a's datagram: %+v", hops)
		}
		sendFrames(t, c, udpFrame(c, b, p2, payload), 1, 0)
		_ = rx2.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := rx2.ReadFrom(buf); err == nil {
			t.Fatal("c's datagram was not dropped")
		}
		time.Sleep(50 * time.Millisecond)
		_, drops := col.wait(t, "all", func([]event.Hop, []event.Drop) bool { return true })
		for _, d := range drops {
			if d.PacketID == mine.PacketID {
				t.Errorf("c's drop (%s, port %d) joined a's datagram (fingerprint %#x = %#x)", d.ReasonName, d.Pkt.DstPort, d.Fingerprint, mine.Fingerprint)
			}
		}
	})
}

// TestEvictionsCounted fills a tiny table with packets at a first hook, then
// runs them through the ingress of a veth whose peer is traced: every packet
// there must have passed the peer, so each one whose entry was evicted is
// counted, and the count is exactly the number of split journeys.
func TestEvictionsCounted(t *testing.T) {
	topo := testenv.NewTopology(t, 1)
	a := topo.Hosts[0]
	// Content keys make BPF_PROG_TEST_RUN runs one packet across runs.
	tr := load(t, Options{ForceLegacy: true, noSkbKey: true, InFlightPerCPU: 8})
	// BPF_PROG_TEST_RUN frees its skb with kfree_skb, which would end each
	// packet's entry: stop the drop tracepoint.
	if tr.drop != nil {
		if err := tr.drop.Close(); err != nil {
			t.Fatal(err)
		}
		tr.drop = nil
	}
	for _, i := range []Iface{{Name: a.HostVeth}, {Name: a.Iface, Netns: a.Path}} {
		if err := tr.Attach(i); err != nil {
			t.Fatal(err)
		}
	}
	col := collect(t, tr)
	in, eg := tr.coll.Programs["hop_ingress_legacy"], tr.coll.Programs["hop_egress_legacy"]
	run := func(p *ebpf.Program, ifindex int, frame []byte) {
		t.Helper()
		var ctx [11]uint32 // struct __sk_buff up to ifindex
		ctx[10] = uint32(ifindex)
		if _, err := p.Run(&ebpf.RunOptions{Data: frame, Context: ctx}); err != nil {
			t.Fatal(err)
		}
	}
	possible, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	n := 64 * possible
	for i := range n {
		run(eg, 1, udpTestFrame(uint16(i), 5001)) // lo egress: a first hook
	}
	// Newest first: the last packets of the first pass are still known.
	for i := n - 1; i >= 0; i-- {
		run(in, a.HostVethIndex, udpTestFrame(uint16(i), 5001))
	}
	isTest := func(h *event.Hop) bool { return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == 5001 }
	hops, _ := col.wait(t, "hops", func(hops []event.Hop, _ []event.Drop) bool {
		return len(filterHops(hops, isTest)) >= 2*n
	})
	first := map[uint32]uint64{}
	split := uint64(0)
	for _, h := range filterHops(hops, isTest) {
		if h.Ifindex == 1 {
			first[h.Pkt.IPID] = h.PacketID
		}
	}
	for _, h := range filterHops(hops, isTest) {
		if h.Ifindex == uint32(a.HostVethIndex) && h.PacketID != first[h.Pkt.IPID] {
			split++
		}
	}
	loss, err := tr.Loss()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d packets through a table of %d: %d split, %d counted", n, tr.coll.Maps["seen_pkts"].MaxEntries(), split, loss.Evicted)
	if split == 0 {
		t.Fatal("no packet was evicted: the test tells nothing")
	}
	if loss.Evicted != split {
		t.Errorf("%d evictions counted, %d journeys split", loss.Evicted, split)
	}
	// The packets the slots no longer held continued from the table: the
	// hooks look in it while it may hold a packet (seen_until).
	if cont := uint64(n) - split; cont <= uint64(flightSlots(8)) {
		t.Errorf("%d packets continued, no more than one CPU's %d slots hold: none from the table", cont, flightSlots(8))
	}
}

// TestCrossCPUContinues: a packet whose next hook runs on another CPU (a
// qdisc or RPS moved it) continues from the first CPU's slot there, where
// every packet comes known: one packet, no eviction counted, and the slot
// it left is free.
func TestCrossCPUContinues(t *testing.T) {
	if runtime.NumCPU() < 2 {
		testenv.Lacks(t, "smp", "one CPU: no packet can change CPUs")
	}
	// Content keys make the BPF_PROG_TEST_RUN runs one packet.
	tr, a := testRunTracer(t)
	col := collect(t, tr)
	in, eg := tr.coll.Programs["hop_ingress_legacy"], tr.coll.Programs["hop_egress_legacy"]
	run := func(p *ebpf.Program, cpu, ifindex int, frame []byte) {
		t.Helper()
		var ctx [11]uint32 // struct __sk_buff up to ifindex
		ctx[10] = uint32(ifindex)
		var err error
		onCPU(cpu, func() { _, err = p.Run(&ebpf.RunOptions{Data: frame, Context: ctx}) })
		if err != nil {
			t.Fatal(err)
		}
	}
	const n = 16
	for i := range n {
		run(eg, i%2, 1, udpTestFrame(uint16(0x4000+i), 5003)) // lo egress: a first hook
	}
	for i := range n {
		run(in, 1-i%2, a.HostVethIndex, udpTestFrame(uint16(0x4000+i), 5003)) // the other CPU
	}
	isTest := func(h *event.Hop) bool { return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == 5003 }
	hops, _ := col.wait(t, "hops", func(hops []event.Hop, _ []event.Drop) bool {
		return len(filterHops(hops, isTest)) >= 2*n
	})
	ids := map[uint32][]uint64{}
	for _, h := range filterHops(hops, isTest) {
		ids[h.Pkt.IPID] = append(ids[h.Pkt.IPID], h.PacketID)
	}
	for ipid, p := range ids {
		if len(p) != 2 || p[0] != p[1] {
			t.Errorf("packet %#x: ids %#x, want one id for both hops", ipid, p)
		}
	}
	loss, err := tr.Loss()
	if err != nil {
		t.Fatal(err)
	}
	if loss.Evicted != 0 {
		t.Errorf("%d packets counted as evicted", loss.Evicted)
	}
	// Past the veth's ingress the packets are still in flight (the
	// container's side is not at its end here), each held once.
	for key, e := range inFlight(t, tr) {
		if len(e) != 1 {
			t.Errorf("packet key %#x held %d times", key, len(e))
		}
	}
}

// TestHookSlotsIndex: hookSlotIdx, the copy of bpf's hook_slot_idx, spreads
// keys over every slot of hook_slots and never past it, and the table stays
// small enough to be kmalloc'd (a 16-byte slot; 32 KiB with the header).
func TestHookSlotsIndex(t *testing.T) {
	tr := load(t, Options{})
	m := tr.coll.Maps["hook_slots"]
	if n := m.MaxEntries() * 16; n > 16<<10 || m.ValueSize() > 16 {
		t.Errorf("hook_slots: %d slots of %d bytes, want at most 16 KiB", m.MaxEntries(), m.ValueSize())
	}
	used := map[uint32]bool{}
	for ns := uint32(4026531840); ns < 4026531840+64; ns++ {
		for ifindex := uint32(1); ifindex <= 256; ifindex++ {
			idx := hookSlotIdx(hoptraceHookKey{NetnsIno: ns, Ifindex: ifindex})
			if idx >= m.MaxEntries() {
				t.Fatalf("hookSlotIdx(%d, %d) = %d, past the %d slots", ns, ifindex, idx, m.MaxEntries())
			}
			used[idx] = true
		}
	}
	if len(used) < int(m.MaxEntries())*9/10 {
		t.Errorf("16384 keys use %d of %d slots", len(used), m.MaxEntries())
	}
}

// TestHookSlotsShared: interfaces whose hook_slots slot is taken go to
// hook_more, and the slot says so; when the slot's owner goes, another
// takes the slot.
func TestHookSlotsShared(t *testing.T) {
	tr := load(t, Options{})
	// Three keys with one slot.
	var keys []hoptraceHookKey
	want := hookSlotIdx(hoptraceHookKey{NetnsIno: 7, Ifindex: 1})
	for i := uint32(1); len(keys) < 3; i++ {
		if k := (hoptraceHookKey{NetnsIno: 7, Ifindex: i}); hookSlotIdx(k) == want {
			keys = append(keys, k)
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for i, k := range keys {
		if err := tr.putHookFlags(k, uint32(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(owner hoptraceHookKey, more []hoptraceHookKey) {
		t.Helper()
		var slot hoptraceHookSlot
		if err := tr.coll.Maps["hook_slots"].Lookup(want, &slot); err != nil {
			t.Fatal(err)
		}
		wantMore := uint32(0)
		if len(more) > 0 {
			wantMore = uint32(hoptraceHookFlagHOOK_MORE)
		}
		if slot.Key != owner || slot.Flags != tr.hookFlagsOf[owner]|wantMore {
			t.Errorf("slot %+v, want %+v with flags %d, more %v", slot, owner, tr.hookFlagsOf[owner], more)
		}
		for _, k := range more {
			var f uint32
			if err := tr.coll.Maps["hook_more"].Lookup(k, &f); err != nil || f != tr.hookFlagsOf[k] {
				t.Errorf("hook_more[%+v] = %d, %v; want %d", k, f, err, tr.hookFlagsOf[k])
			}
		}
	}
	check(keys[0], keys[1:])
	delete(tr.hookFlagsOf, keys[0])
	if err := tr.writeHookSlot(want); err != nil {
		t.Fatal(err)
	}
	check(keys[1], keys[2:])
	var f uint32
	if err := tr.coll.Maps["hook_more"].Lookup(keys[1], &f); err == nil {
		t.Errorf("the slot's new owner is still in hook_more")
	}
}

// TestRoutedThroughBridge: a frame from a to the bridge's MAC for b's
// address is passed up by the bridge (its ingress: a last hook, the packet
// leaves the table), routed by the host and sent down the bridge to b. The
// route on continues from the CPU's arrivals: one packet, six hooks.
func TestRoutedThroughBridge(t *testing.T) {
	allModes(t, func(t *testing.T, opts Options) {
		topo := testenv.NewTopology(t, 2)
		a, b := topo.Hosts[0], topo.Hosts[1]
		br, err := netlink.LinkByIndex(topo.BridgeIndex)
		if err != nil {
			t.Fatal(err)
		}
		// Routing between the bridge's own ports: forwarding on the bridge
		// alone, so the host's setting is left as it is.
		sysctl := "/proc/sys/net/ipv4/conf/" + topo.Bridge + "/forwarding"
		if err := os.WriteFile(sysctl, []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
		tr := load(t, opts)
		attachAll(t, tr, topo)
		if err := tr.Attach(Iface{Index: topo.BridgeIndex}); err != nil {
			t.Fatal(err)
		}
		col := collect(t, tr)
		rx := b.UDPConn(t, 0)
		port := uint16(rx.LocalAddr().(*net.UDPAddr).Port)
		frame := udpFrame(a, b, port, []byte("routed"))
		copy(frame[0:6], br.Attrs().HardwareAddr)
		sendFrames(t, a, frame, 1, 0)
		buf := make([]byte, 64)
		_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := rx.ReadFrom(buf); err != nil {
			t.Fatalf("routed datagram: %v", err)
		}
		isDgram := func(h *event.Hop) bool { return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == port }
		hops, _ := col.wait(t, "six hops", func(hops []event.Hop, _ []event.Drop) bool {
			return len(filterHops(hops, isDgram)) >= 6
		})
		dg := filterHops(hops, isDgram)
		ab := path(topo, a, b)
		want := []hookID{ab[0], ab[1],
			{topo.HostNetnsIno, uint32(topo.BridgeIndex), event.Ingress},
			{topo.HostNetnsIno, uint32(topo.BridgeIndex), event.Egress},
			ab[2], ab[3]}
		var got []hookID
		for _, h := range dg {
			got = append(got, hookOf(h))
			if h.PacketID != dg[0].PacketID {
				t.Errorf("hop at %s: packet %#x, the first hop's is %#x", hookOf(h), h.PacketID, dg[0].PacketID)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("hooks %v, want %v", got, want)
		}
		// The headers of each hop, though after the first only the bridge's
		// egress sends them (routing rewrote the MACs and the TTL): the
		// others come as compact events.
		brMAC := [6]byte(br.Attrs().HardwareAddr)
		for i, h := range dg {
			src, dst, ttl := [6]byte(a.MAC), brMAC, uint8(64)
			if i >= 3 {
				src, dst, ttl = brMAC, [6]byte(b.MAC), 63
			}
			if h.Pkt.SrcMAC != src || h.Pkt.DstMAC != dst || h.Pkt.TTL != ttl || h.Pkt.Src != a.IP || h.Pkt.Dst != b.IP {
				t.Errorf("hop %d at %v: %v > %v ttl %d, %v > %v; want %v > %v ttl %d",
					i, hookOf(h), net.HardwareAddr(h.Pkt.SrcMAC[:]), net.HardwareAddr(h.Pkt.DstMAC[:]), h.Pkt.TTL,
					h.Pkt.Src, h.Pkt.Dst, net.HardwareAddr(src[:]), net.HardwareAddr(dst[:]), ttl)
			}
		}
		if inTable(t, tr, dg[0]) {
			t.Errorf("the routed datagram is left in the table")
		}
		loss, err := tr.Loss()
		if err != nil {
			t.Fatal(err)
		}
		if loss.Evicted != 0 {
			t.Errorf("%d packets counted as evicted", loss.Evicted)
		}
	})
}

// TestEqualContentIsNoEviction: without the skb key, a packet with the
// content of one that already passed the hook is a new packet under the
// same key; at the ingress of a veth whose peer is traced that is not an
// eviction (IPv6 duplicate address detection and MLD send such packets
// from every namespace at once).
func TestEqualContentIsNoEviction(t *testing.T) {
	tr, a := testRunTracer(t)
	in, eg := tr.coll.Programs["hop_ingress_legacy"], tr.coll.Programs["hop_egress_legacy"]
	run := func(p *ebpf.Program, ifindex int) {
		t.Helper()
		var ctx [11]uint32
		ctx[10] = uint32(ifindex)
		if _, err := p.Run(&ebpf.RunOptions{Data: udpTestFrame(0x4444, 5001), Context: ctx}); err != nil {
			t.Fatal(err)
		}
	}
	run(eg, 1)
	run(in, a.HostVethIndex) // continues
	run(in, a.HostVethIndex) // the same content again: a new packet
	loss, err := tr.Loss()
	if err != nil {
		t.Fatal(err)
	}
	if loss.Evicted != 0 {
		t.Errorf("%d evictions counted for a packet of equal content", loss.Evicted)
	}
}

// testRunTracer loads a legacy tracer keyed by content, for packets made with
// BPF_PROG_TEST_RUN, and attaches it to both ends of a one-host topology's
// veth. Its drop tracepoint is closed: BPF_PROG_TEST_RUN frees its skb with
// kfree_skb, which would end each packet's entry.
func testRunTracer(t *testing.T) (*Tracer, *testenv.NSHost) {
	t.Helper()
	topo := testenv.NewTopology(t, 1)
	a := topo.Hosts[0]
	tr := load(t, Options{ForceLegacy: true, noSkbKey: true})
	if tr.drop != nil {
		if err := tr.drop.Close(); err != nil {
			t.Fatal(err)
		}
		tr.drop = nil
	}
	for _, i := range []Iface{{Name: a.HostVeth}, {Name: a.Iface, Netns: a.Path}} {
		if err := tr.Attach(i); err != nil {
			t.Fatal(err)
		}
	}
	return tr, a
}
