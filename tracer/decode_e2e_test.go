package tracer

// Privileged tests for the header decoding in the BPF hop program that
// tracer_test.go (IPv4 ICMP/TCP/UDP) does not reach: ARP, IPv6 with UDP and
// ICMPv6, 802.1Q tags, TCP flags/seq/ack beyond the handshake, snaplen
// bytes and GSO super-packets. Traffic only flows between the namespaces of
// a throwaway testenv topology.

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// hopsAt returns, for each hook of want, the hops at that hook matching f,
// and fails unless every hook has at least one.
func hopsAt(t *testing.T, what string, hops []event.Hop, want []hookID, f func(*event.Hop) bool) [][]event.Hop {
	t.Helper()
	out := make([][]event.Hop, len(want))
	for i, w := range want {
		out[i] = filterHops(hops, func(h *event.Hop) bool { return hookOf(*h) == w && f(h) })
		if len(out[i]) == 0 {
			t.Fatalf("%s: no hop at %s", what, w)
		}
	}
	return out
}

// atAllHooks is a wait predicate: a hop matching f at every hook of want.
func atAllHooks(want []hookID, f func(*event.Hop) bool) func([]event.Hop, []event.Drop) bool {
	return func(hops []event.Hop, _ []event.Drop) bool {
		for _, w := range want {
			if len(filterHops(hops, func(h *event.Hop) bool { return hookOf(*h) == w && f(h) })) == 0 {
				return false
			}
		}
		return true
	}
}

func mac6(b []byte) [6]byte { return [6]byte(b) }

var broadcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// TestDecodeARP: the first ping between fresh namespaces resolves the peer
// with ARP; the request and the reply are decoded at all four hooks.
func TestDecodeARP(t *testing.T) {
	modes(t, func(t *testing.T, legacy bool) {
		topo := testenv.NewTopology(t, 2)
		tr := load(t, Options{ForceLegacy: legacy})
		attachAll(t, tr, topo)
		c := collect(t, tr)
		a, b := topo.Hosts[0], topo.Hosts[1]
		if n := a.Ping(t, b.IP, 1, 0x4a52); n != 1 {
			t.Fatalf("ping not answered")
		}
		isARP := func(op uint16, from, to *testenv.NSHost) func(*event.Hop) bool {
			return func(h *event.Hop) bool {
				p := h.Pkt
				return p.Layers.Has(event.LayerARP) && p.ARPOp == op && p.Src == from.IP && p.Dst == to.IP
			}
		}
		reqPath, repPath := path(topo, a, b), path(topo, b, a)
		hops, _ := c.wait(t, "arp request and reply", func(hops []event.Hop, d []event.Drop) bool {
			return atAllHooks(reqPath, isARP(1, a, b))(hops, d) && atAllHooks(repPath, isARP(2, b, a))(hops, d)
		})
		for _, hs := range hopsAt(t, "arp request", hops, reqPath, isARP(1, a, b)) {
			h := hs[0]
			p := h.Pkt
			if !p.Layers.Has(event.LayerEth) || p.Layers&(event.LayerIPv4|event.LayerIPv6|event.LayerVLAN) != 0 ||
				p.EtherType != event.EtherTypeARP {
				t.Errorf("arp request at %s: layers %#x ethertype %#x", hookOf(h), p.Layers, p.EtherType)
			}
			if p.SrcMAC != mac6(a.MAC) || p.DstMAC != broadcastMAC {
				t.Errorf("arp request at %s: ethernet %x -> %x, want %x -> broadcast", hookOf(h), p.SrcMAC, p.DstMAC, a.MAC)
			}
			if p.ARPSenderMAC != mac6(a.MAC) || p.ARPTargetMAC != [6]byte{} {
				t.Errorf("arp request at %s: sender MAC %x target MAC %x, want %x and zero", hookOf(h), p.ARPSenderMAC, p.ARPTargetMAC, a.MAC)
			}
			if h.Len < 14+28 {
				t.Errorf("arp request at %s: len %d", hookOf(h), h.Len)
			}
		}
		rep := hopsAt(t, "arp reply", hops, repPath, isARP(2, b, a))
		for _, hs := range rep {
			h := hs[0]
			p := h.Pkt
			if p.EtherType != event.EtherTypeARP || p.SrcMAC != mac6(b.MAC) || p.DstMAC != mac6(a.MAC) {
				t.Errorf("arp reply at %s: ethertype %#x ethernet %x -> %x", hookOf(h), p.EtherType, p.SrcMAC, p.DstMAC)
			}
			if p.ARPSenderMAC != mac6(b.MAC) || p.ARPTargetMAC != mac6(a.MAC) {
				t.Errorf("arp reply at %s: sender MAC %x target MAC %x, want %x and %x", hookOf(h), p.ARPSenderMAC, p.ARPTargetMAC, b.MAC, a.MAC)
			}
		}
		// The unicast reply is one packet along its path.
		var one []event.Hop
		for _, hs := range rep {
			one = append(one, hs[0])
		}
		checkJourney(t, "arp reply", one, repPath)
	})
}

// addIPv6 gives h's eth0 addr/64 without duplicate address detection, so
// it is usable at once.
func addIPv6(t *testing.T, h *testenv.NSHost, addr netip.Addr) {
	t.Helper()
	nsh, err := netns.GetFromPath(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	nl, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	lnk, err := nl.LinkByIndex(h.IfaceIndex)
	if err != nil {
		t.Fatal(err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
	if err := nl.AddrAdd(lnk, a); err != nil {
		t.Fatalf("add %s in %s: %v", addr, h.Name, err)
	}
}

// ula returns a random fd00::/8 /64 prefix's addresses ::1 and ::2.
func ula() (netip.Addr, netip.Addr) {
	var b [16]byte
	_, _ = rand.Read(b[1:8])
	b[0] = 0xfd
	b[15] = 1
	a1 := netip.AddrFrom16(b)
	b[15] = 2
	return a1, netip.AddrFrom16(b)
}

func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ipv6UDPFrame builds an Ethernet frame with an IPv6/UDP datagram carrying
// the given flow label and hop limit, with a valid UDP checksum.
func ipv6UDPFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, flow uint32, hops uint8, sport, dport uint16, payload []byte) []byte {
	f := make([]byte, 14+40+8+len(payload))
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:54]
	binary.BigEndian.PutUint32(ip[0:], 6<<28|0x2e<<20|flow&0xfffff) // traffic class 0x2e must not leak into the label
	binary.BigEndian.PutUint16(ip[4:], uint16(8+len(payload)))
	ip[6], ip[7] = 17, hops
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	udp := f[54:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	sum := csumAdd(0, ip[8:40])
	sum += uint32(8 + len(payload))
	sum += 17
	sum = csumAdd(sum, udp)
	ck := csumFold(sum)
	if ck == 0 {
		ck = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], ck)
	return f
}

// TestDecodeIPv6 sends, over IPv6 between two namespaces, a UDP datagram
// through the stack (hop limit 33), an ICMPv6 echo through
// a raw socket, and a hand-made UDP frame with a chosen flow label; the
// neighbour discovery before them is ICMPv6 too.
func TestDecodeIPv6(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		testenv.Lacks(t, "ipv6", "kernel without IPv6")
	}
	modes(t, func(t *testing.T, legacy bool) {
		topo := testenv.NewTopology(t, 2)
		a, b := topo.Hosts[0], topo.Hosts[1]
		a6, b6 := ula()
		addIPv6(t, a, a6)
		addIPv6(t, b, b6)
		// Snaplen 0: snaplen bytes are TestDecodeSnaplen's subject.
		tr := load(t, Options{ForceLegacy: legacy})
		attachAll(t, tr, topo)
		c := collect(t, tr)
		ab, ba := path(topo, a, b), path(topo, b, a)

		// UDP through the stack, hop limit 33.
		var rx, tx *net.UDPConn
		err := b.Do(func() error {
			var err error
			rx, err = net.ListenUDP("udp6", &net.UDPAddr{IP: b6.AsSlice()})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer rx.Close()
		err = a.Do(func() error {
			var err error
			tx, err = net.ListenUDP("udp6", &net.UDPAddr{IP: a6.AsSlice()})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		raw, err := tx.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 33)
		}); err != nil || serr != nil {
			t.Fatalf("set hop limit: %v %v", err, serr)
		}
		dport := uint16(rx.LocalAddr().(*net.UDPAddr).Port)
		sport := uint16(tx.LocalAddr().(*net.UDPAddr).Port)
		if _, err := tx.WriteTo([]byte("hoptrace over ipv6"), rx.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		_ = rx.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, _, err := rx.ReadFrom(buf); err != nil {
			t.Fatalf("ipv6 datagram: %v", err)
		}
		isUDP := func(h *event.Hop) bool {
			p := h.Pkt
			return p.Layers.Has(event.LayerIPv6|event.LayerUDP) && p.SrcPort == sport && p.DstPort == dport
		}
		hops, _ := c.wait(t, "ipv6 udp hops", atAllHooks(ab, isUDP))
		var udp []event.Hop
		for _, hs := range hopsAt(t, "ipv6 udp", hops, ab, isUDP) {
			udp = append(udp, hs[0])
			h := hs[0]
			p := h.Pkt
			if p.Layers&(event.LayerIPv4|event.LayerARP|event.LayerVLAN|event.LayerFragment) != 0 ||
				!p.Layers.Has(event.LayerEth) || p.EtherType != event.EtherTypeIPv6 {
				t.Errorf("ipv6 udp at %s: layers %#x ethertype %#x", hookOf(h), p.Layers, p.EtherType)
			}
			if p.Src != a6 || p.Dst != b6 || p.Proto != event.ProtoUDP || p.TTL != 33 {
				t.Errorf("ipv6 udp at %s: %s -> %s proto %d hop limit %d, want %s -> %s 17 33", hookOf(h), p.Src, p.Dst, p.Proto, p.TTL, a6, b6)
			}
			if p.SrcMAC != mac6(a.MAC) || p.DstMAC != mac6(b.MAC) {
				t.Errorf("ipv6 udp at %s: ethernet %x -> %x", hookOf(h), p.SrcMAC, p.DstMAC)
			}
		}
		checkJourney(t, "ipv6 udp", udp, ab)

		// Neighbour discovery ran first: a solicitation from a, an advertisement from b.
		isND := func(typ uint8, from netip.Addr) func(*event.Hop) bool {
			return func(h *event.Hop) bool {
				p := h.Pkt
				return p.Layers.Has(event.LayerIPv6|event.LayerICMPv6) && p.ICMPType == typ && p.Src == from
			}
		}
		hops, _ = c.wait(t, "neighbour discovery", func(hops []event.Hop, d []event.Drop) bool {
			return atAllHooks(ab[:2], isND(135, a6))(hops, d) && atAllHooks(ba[:2], isND(136, b6))(hops, d)
		})
		for _, hs := range append(hopsAt(t, "neighbour solicitation", hops, ab[:2], isND(135, a6)),
			hopsAt(t, "neighbour advertisement", hops, ba[:2], isND(136, b6))...) {
			p := hs[0].Pkt
			if p.Proto != event.ProtoICMPv6 || p.ICMPCode != 0 || p.TTL != 255 || p.Layers.Has(event.LayerICMP) {
				t.Errorf("neighbour discovery at %s: %+v", hookOf(hs[0]), p)
			}
		}

		// ICMPv6 echo through a raw socket; the kernel fills the checksum.
		const id, seq = 0x6e6f, 7
		var conn net.PacketConn
		err = a.Do(func() error {
			var err error
			conn, err = net.ListenPacket("ip6:ipv6-icmp", a6.String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		msg := make([]byte, 8+16)
		msg[0] = 128
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], seq)
		copy(msg[8:], "hoptrace icmpv6!")
		if _, err := conn.WriteTo(msg, &net.IPAddr{IP: b6.AsSlice()}); err != nil {
			t.Fatal(err)
		}
		isEcho := func(typ uint8) func(*event.Hop) bool {
			return func(h *event.Hop) bool {
				p := h.Pkt
				return p.Layers.Has(event.LayerICMPv6) && p.ICMPType == typ && p.ICMPID == id && p.ICMPSeq == seq
			}
		}
		hops, _ = c.wait(t, "icmpv6 echo", func(hops []event.Hop, d []event.Drop) bool {
			return atAllHooks(ab, isEcho(128))(hops, d) && atAllHooks(ba, isEcho(129))(hops, d)
		})
		for _, e := range []struct {
			typ      uint8
			want     []hookID
			src, dst netip.Addr
		}{{128, ab, a6, b6}, {129, ba, b6, a6}} {
			var one []event.Hop
			for _, hs := range hopsAt(t, "icmpv6 echo", hops, e.want, isEcho(e.typ)) {
				h := hs[0]
				one = append(one, h)
				p := h.Pkt
				if p.Src != e.src || p.Dst != e.dst || p.Proto != event.ProtoICMPv6 || p.ICMPCode != 0 ||
					p.TTL != 64 || p.EtherType != event.EtherTypeIPv6 || p.Layers.Has(event.LayerICMP) {
					t.Errorf("icmpv6 type %d at %s: %+v", e.typ, hookOf(h), p)
				}
			}
			checkJourney(t, fmt.Sprintf("icmpv6 type %d", e.typ), one, e.want)
		}

		// A hand-made frame: flow label 0xabcde, traffic class 0x2e, hop limit 9.
		const flow, hl, fsport = 0xabcde, 9, 40006
		frame := ipv6UDPFrame(a.MAC, b.MAC, a6, b6, flow, hl, fsport, dport, []byte("flow label"))
		sendFrames(t, a, frame, 1, 0)
		_ = rx.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, _, err := rx.ReadFrom(buf); err != nil {
			t.Fatalf("hand-made ipv6 datagram not received: %v", err)
		}
		isFrame := func(h *event.Hop) bool { return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.SrcPort == fsport }
		hops, _ = c.wait(t, "hand-made ipv6 frame", atAllHooks(ab, isFrame))
		for _, hs := range hopsAt(t, "hand-made ipv6 frame", hops, ab, isFrame) {
			h := hs[0]
			p := h.Pkt
			if p.IPID != flow || p.TTL != hl || p.Src != a6 || p.Dst != b6 || p.Proto != event.ProtoUDP || p.DstPort != dport {
				t.Errorf("hand-made ipv6 frame at %s: flow label %#x hop limit %d %s -> %s proto %d dport %d; want %#x %d",
					hookOf(h), p.IPID, p.TTL, p.Src, p.Dst, p.Proto, p.DstPort, flow, hl)
			}
			if h.Len != uint32(len(frame)) {
				t.Errorf("hand-made ipv6 frame at %s: len %d, want %d", hookOf(h), h.Len, len(frame))
			}
		}
	})
}

// vlanFrame inserts an 802.1Q tag (priority 5, vid) after the MACs.
func vlanFrame(frame []byte, vid uint16) []byte {
	f := make([]byte, 0, len(frame)+4)
	f = append(f, frame[:12]...)
	f = binary.BigEndian.AppendUint16(f, 0x8100)
	f = binary.BigEndian.AppendUint16(f, 5<<13|vid)
	return append(f, frame[12:]...)
}

// TestDecodeVLAN sends an 802.1Q-tagged IPv4/UDP frame from a; the bridge
// (no VLAN filtering) carries it to b. At a's eth0 egress the tag is in the
// frame; from the receiving veth on the kernel holds it in skb metadata.
func TestDecodeVLAN(t *testing.T) {
	modes(t, func(t *testing.T, legacy bool) {
		topo := testenv.NewTopology(t, 2)
		tr := load(t, Options{ForceLegacy: legacy})
		attachAll(t, tr, topo)
		c := collect(t, tr)
		a, b := topo.Hosts[0], topo.Hosts[1]
		const vid, port = 0x7b5, 40123
		plain := udpFrame(a, b, port, []byte("tagged"))
		frame := vlanFrame(plain, vid)
		sendFrames(t, a, frame, 1, 0)
		isTagged := func(h *event.Hop) bool {
			return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == port
		}
		want := path(topo, a, b)
		hops, _ := c.wait(t, "tagged frame hops", atAllHooks(want, isTagged))
		var one []event.Hop
		for _, hs := range hopsAt(t, "tagged frame", hops, want, isTagged) {
			h := hs[0]
			one = append(one, h)
			p := h.Pkt
			if !p.Layers.Has(event.LayerEth|event.LayerVLAN|event.LayerIPv4|event.LayerUDP) || p.VLAN != vid ||
				p.EtherType != event.EtherTypeIPv4 {
				t.Errorf("tagged frame at %s: layers %#x vlan %#x ethertype %#x, want vlan %#x ethertype 0x800",
					hookOf(h), p.Layers, p.VLAN, p.EtherType, vid)
			}
			if p.SrcMAC != mac6(a.MAC) || p.DstMAC != mac6(b.MAC) || p.Src != a.IP || p.Dst != b.IP ||
				p.Proto != event.ProtoUDP || p.IPID != 0x1234 || p.TTL != 64 || p.SrcPort != 40000 {
				t.Errorf("tagged frame at %s: inner headers %+v", hookOf(h), p)
			}
			// The tag is 4 bytes of the frame or of skb metadata.
			if h.Len != uint32(len(frame)) && h.Len != uint32(len(plain)) {
				t.Errorf("tagged frame at %s: len %d, want %d or %d", hookOf(h), h.Len, len(frame), len(plain))
			}
			if h.Data != nil {
				t.Errorf("tagged frame at %s: %d data bytes with snaplen 0", hookOf(h), len(h.Data))
			}
		}
		checkJourney(t, "tagged frame", one, want)
	})
}

// TestDecodeTCPFlags follows a connection's handshake, data, close and a
// refused connection: flags, seq and ack of each segment.
func TestDecodeTCPFlags(t *testing.T) {
	modes(t, func(t *testing.T, legacy bool) {
		topo := testenv.NewTopology(t, 2)
		tr := load(t, Options{ForceLegacy: legacy})
		attachAll(t, tr, topo)
		c := collect(t, tr)
		a, b := topo.Hosts[0], topo.Hosts[1]
		// A port nobody listens on: SYN, then RST|ACK.
		closed := b.ListenTCP(t, 0)
		cport := uint16(closed.Addr().(*net.TCPAddr).Port)
		closed.Close()
		err := a.Do(func() error {
			conn, err := net.DialTimeout("tcp4", netip.AddrPortFrom(b.IP, cport).String(), 3*time.Second)
			if err == nil {
				conn.Close()
				return fmt.Errorf("connected to a closed port")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		l := b.ListenTCP(t, 0)
		port := uint16(l.Addr().(*net.TCPAddr).Port)
		conn := a.DialTCP(t, netip.AddrPortFrom(b.IP, port))
		srv, err := l.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		msg := []byte("twenty bytes of data")
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Read(make([]byte, 64)); err != nil {
			t.Fatal(err)
		}
		conn.Close() // FIN from a
		local := uint16(conn.LocalAddr().(*net.TCPAddr).Port)

		seg := func(flags uint8, sport, dport uint16) func(*event.Hop) bool {
			return func(h *event.Hop) bool {
				p := h.Pkt
				return p.Layers.Has(event.LayerIPv4|event.LayerTCP) && p.TCPFlags == flags && p.SrcPort == sport && p.DstPort == dport
			}
		}
		ab, ba := path(topo, a, b), path(topo, b, a)
		fin := event.TCPFin | event.TCPAck
		rst := event.TCPRst | event.TCPAck
		isRST := func(h *event.Hop) bool { return h.Pkt.TCPFlags == rst && h.Pkt.SrcPort == cport }
		hops, _ := c.wait(t, "tcp segments", func(hops []event.Hop, d []event.Drop) bool {
			return atAllHooks(ab, seg(fin, local, port))(hops, d) && atAllHooks(ba, isRST)(hops, d)
		})
		first := func(what string, want []hookID, f func(*event.Hop) bool) event.Hop {
			t.Helper()
			hs := hopsAt(t, what, hops, want, f)
			var one []event.Hop
			for _, h := range hs {
				one = append(one, h[0])
				if h[0].Pkt.Seq != hs[0][0].Pkt.Seq || h[0].Pkt.Ack != hs[0][0].Pkt.Ack {
					t.Errorf("%s: seq/ack changed along the path: %d/%d at %s, %d/%d at the start",
						what, h[0].Pkt.Seq, h[0].Pkt.Ack, hookOf(h[0]), hs[0][0].Pkt.Seq, hs[0][0].Pkt.Ack)
				}
			}
			checkJourney(t, what, one, want)
			return one[0]
		}

		// Refused: the RST acknowledges the SYN.
		var rsyn event.Hop
		for _, h := range filterHops(hops, func(h *event.Hop) bool { return h.Pkt.TCPFlags == event.TCPSyn && h.Pkt.DstPort == cport }) {
			rsyn = h
			break
		}
		rrst := filterHops(hops, isRST)
		if rsyn.Pkt.DstPort != cport || len(rrst) == 0 {
			t.Fatalf("refused connection: syn %+v, %d rst hops", rsyn.Pkt, len(rrst))
		}
		rstHop := first("rst", ba, seg(rst, cport, rsyn.Pkt.SrcPort))
		if rstHop.Pkt.Ack != rsyn.Pkt.Seq+1 || rstHop.Pkt.Seq != 0 {
			t.Errorf("rst seq %d ack %d, want 0 and syn seq+1 = %d", rstHop.Pkt.Seq, rstHop.Pkt.Ack, rsyn.Pkt.Seq+1)
		}

		syn := first("syn", ab, seg(event.TCPSyn, local, port))
		synack := first("syn-ack", ba, seg(event.TCPSyn|event.TCPAck, port, local))
		if syn.Pkt.Ack != 0 || synack.Pkt.Ack != syn.Pkt.Seq+1 {
			t.Errorf("syn ack %d; syn-ack ack %d, want syn seq+1 = %d", syn.Pkt.Ack, synack.Pkt.Ack, syn.Pkt.Seq+1)
		}
		// The handshake's last ACK and the data segment.
		var ack *event.Hop
		for _, h := range filterHops(hops, func(h *event.Hop) bool {
			return hookOf(*h) == ab[0] && seg(event.TCPAck, local, port)(h)
		}) {
			if h.Pkt.Seq == syn.Pkt.Seq+1 && h.Pkt.Ack == synack.Pkt.Seq+1 {
				ack = &h
				break
			}
		}
		if ack == nil {
			t.Errorf("no handshake ACK with seq %d ack %d", syn.Pkt.Seq+1, synack.Pkt.Seq+1)
		}
		data := first("data", ab, seg(event.TCPPsh|event.TCPAck, local, port))
		if data.Pkt.Seq != syn.Pkt.Seq+1 || data.Pkt.Ack != synack.Pkt.Seq+1 {
			t.Errorf("data seq %d ack %d, want %d %d", data.Pkt.Seq, data.Pkt.Ack, syn.Pkt.Seq+1, synack.Pkt.Seq+1)
		}
		if want := uint32(14 + 20 + 32 + len(msg)); data.Len != want { // Linux sends timestamps: 32-byte TCP header
			t.Logf("data segment len %d (expected %d with TCP timestamps)", data.Len, want)
		}
		f := first("fin", ab, seg(fin, local, port))
		if f.Pkt.Seq != syn.Pkt.Seq+1+uint32(len(msg)) || f.Pkt.Ack != synack.Pkt.Seq+1 {
			t.Errorf("fin seq %d ack %d, want %d %d", f.Pkt.Seq, f.Pkt.Ack, syn.Pkt.Seq+1+uint32(len(msg)), synack.Pkt.Seq+1)
		}
	})
}

// TestDecodeSnaplen checks the packet bytes hops carry: the frame's first
// min(snaplen, len) bytes at every hook, none with snaplen 0.
func TestDecodeSnaplen(t *testing.T) {
	for _, snap := range []uint32{64, 0} {
		t.Run(fmt.Sprint("snaplen", snap), func(t *testing.T) {
			modes(t, func(t *testing.T, legacy bool) {
				topo := testenv.NewTopology(t, 2)
				tr := load(t, Options{ForceLegacy: legacy, Snaplen: snap})
				attachAll(t, tr, topo)
				c := collect(t, tr)
				a, b := topo.Hosts[0], topo.Hosts[1]
				rx := b.UDPConn(t, 0)
				port := uint16(rx.LocalAddr().(*net.UDPAddr).Port)
				long := udpFrame(a, b, port, make([]byte, 200))
				short := udpFrame(a, b, port, []byte("short")) // 47 bytes
				for i := range long[42:] {
					long[42+i] = byte(i)
				}
				// Distinct IP IDs, so the two are told apart.
				binary.BigEndian.PutUint16(short[18:], 0x1235)
				binary.BigEndian.PutUint16(short[24:], 0)
				binary.BigEndian.PutUint16(short[24:], csumFold(csumAdd(0, short[14:34])))
				sendFrames(t, a, long, 1, 0)
				sendFrames(t, a, short, 1, 0)
				want := path(topo, a, b)
				byID := func(id uint32) func(*event.Hop) bool {
					return func(h *event.Hop) bool {
						return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.DstPort == port && h.Pkt.IPID == id
					}
				}
				hops, _ := c.wait(t, "frames", func(hops []event.Hop, d []event.Drop) bool {
					return atAllHooks(want, byID(0x1234))(hops, d) && atAllHooks(want, byID(0x1235))(hops, d)
				})
				for _, fr := range []struct {
					id    uint32
					frame []byte
				}{{0x1234, long}, {0x1235, short}} {
					for _, hs := range hopsAt(t, "frame", hops, want, byID(fr.id)) {
						h := hs[0]
						if h.Len != uint32(len(fr.frame)) {
							t.Errorf("frame %#x at %s: len %d, want %d", fr.id, hookOf(h), h.Len, len(fr.frame))
						}
						if snap == 0 {
							if h.Data != nil {
								t.Errorf("frame %#x at %s: %d data bytes with snaplen 0", fr.id, hookOf(h), len(h.Data))
							}
							continue
						}
						wantData := fr.frame[:min(int(snap), len(fr.frame))]
						if !slices.Equal(h.Data, wantData) {
							t.Errorf("frame %#x at %s: data\n%x\nwant\n%x", fr.id, hookOf(h), h.Data, wantData)
						}
						if len(h.Data) >= 12 && (!slices.Equal(h.Data[0:6], b.MAC) || !slices.Equal(h.Data[6:12], a.MAC)) {
							t.Errorf("frame %#x at %s: data MACs %x %x", fr.id, hookOf(h), h.Data[0:6], h.Data[6:12])
						}
					}
				}
			})
		})
	}
}

// TestDecodeGSO writes a megabyte over TCP between the namespaces: veths
// keep TSO super-packets whole, so hops show Len above the MTU with a
// segment count and size.
func TestDecodeGSO(t *testing.T) {
	modes(t, func(t *testing.T, legacy bool) {
		topo := testenv.NewTopology(t, 2)
		a, b := topo.Hosts[0], topo.Hosts[1]
		tr := load(t, Options{ForceLegacy: legacy})
		if err := tr.Attach(Iface{Name: a.HostVeth}); err != nil {
			t.Fatal(err)
		}
		c := collect(t, tr)
		l := b.ListenTCP(t, 0)
		port := uint16(l.Addr().(*net.TCPAddr).Port)
		conn := a.DialTCP(t, netip.AddrPortFrom(b.IP, port))
		srv, err := l.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		const total = 1 << 20
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, 64<<10)
			n := 0
			_ = srv.SetReadDeadline(time.Now().Add(20 * time.Second))
			for n < total {
				m, err := srv.Read(buf)
				if err != nil {
					done <- err
					return
				}
				n += m
			}
			done <- nil
		}()
		if _, err := conn.Write(make([]byte, total)); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("receive: %v", err)
		}
		isGSO := func(h *event.Hop) bool {
			return h.Dir == event.Ingress && h.Pkt.Layers.Has(event.LayerTCP) && h.Pkt.DstPort == port && h.GSOSegs > 1
		}
		hops, _ := c.wait(t, "a GSO hop", func(hops []event.Hop, _ []event.Drop) bool {
			return len(filterHops(hops, isGSO)) > 0
		})
		gso := filterHops(hops, isGSO)
		t.Logf("%d GSO hops; first: len %d segs %d size %d", len(gso), gso[0].Len, gso[0].GSOSegs, gso[0].GSOSize)
		for _, h := range gso {
			segs, size := uint32(h.GSOSegs), uint32(h.GSOSize)
			// Between 20 and 60 bytes of TCP header.
			if h.Len <= 1514 || size == 0 || size > 1500-20-20 ||
				h.Len-14-20-60 > segs*size || h.Len-14-20-20 <= (segs-1)*size {
				t.Errorf("GSO hop: len %d segs %d size %d do not fit", h.Len, segs, size)
			}
		}
		// Anything longer than a frame is a GSO packet and says so.
		for _, h := range hops {
			if h.Len > 1514 && h.GSOSegs <= 1 {
				t.Errorf("hop at %s len %d beyond the MTU with %d segments (size %d)", hookOf(h), h.Len, h.GSOSegs, h.GSOSize)
			}
		}
	})
}

// TestDecodeFragments sends UDP datagrams larger than the MTU over IPv6 and
// IPv4, so the sending stack fragments them. Every fragment is marked; only
// the first has a UDP header, so later ones carry no ports (an IPv6 fragment
// header read as UDP would give source port 0x1100: next header 17, then a
// zero byte) and a port filter does not match them. Fragments of one
// datagram with equal sizes are still different packets.
func TestDecodeFragments(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		testenv.Lacks(t, "ipv6", "kernel without IPv6")
	}
	allModes(t, func(t *testing.T, opts Options) {
		topo := testenv.NewTopology(t, 2)
		a, b := topo.Hosts[0], topo.Hosts[1]
		a6, b6 := ula()
		addIPv6(t, a, a6)
		addIPv6(t, b, b6)
		rx4 := b.UDPConn(t, 0)
		var rx6, tx6 *net.UDPConn
		if err := b.Do(func() (err error) {
			rx6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: b6.AsSlice()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer rx6.Close()
		if err := a.Do(func() (err error) {
			tx6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: a6.AsSlice()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer tx6.Close()
		tx4 := a.UDPConn(t, 0)
		port4 := uint16(rx4.LocalAddr().(*net.UDPAddr).Port)
		port6 := uint16(rx6.LocalAddr().(*net.UDPAddr).Port)
		// 4500 bytes: four fragments over a 1500-byte MTU, the middle two of
		// one size.
		big := make([]byte, 4500)
		send := func() {
			t.Helper()
			for _, s := range []struct {
				tx, rx *net.UDPConn
			}{{tx6, rx6}, {tx4, rx4}} {
				if _, err := s.tx.WriteTo(big, s.rx.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 8192)
				_ = s.rx.SetReadDeadline(time.Now().Add(3 * time.Second))
				if n, _, err := s.rx.ReadFrom(buf); err != nil || n != len(big) {
					t.Fatalf("reassembled datagram: %d bytes, %v", n, err)
				}
			}
		}
		isFrag := func(v6 bool) func(*event.Hop) bool {
			return func(h *event.Hop) bool {
				p := h.Pkt
				if !p.Layers.Has(event.LayerFragment) || p.Proto != event.ProtoUDP {
					return false
				}
				if v6 {
					return p.Src == a6 && p.Dst == b6
				}
				return p.Src == a.IP && p.Dst == b.IP
			}
		}

		t.Run("decode", func(t *testing.T) {
			tr := load(t, opts)
			attachAll(t, tr, topo)
			c := collect(t, tr)
			send()
			ab := path(topo, a, b)
			enough := func(v6 bool) func([]event.Hop, []event.Drop) bool {
				return func(hops []event.Hop, _ []event.Drop) bool {
					for _, w := range ab {
						if len(filterHops(hops, func(h *event.Hop) bool { return hookOf(*h) == w && isFrag(v6)(h) })) < 4 {
							return false
						}
					}
					return true
				}
			}
			hops, _ := c.wait(t, "fragments", func(hops []event.Hop, d []event.Drop) bool {
				return enough(true)(hops, d) && enough(false)(hops, d)
			})
			for _, v6 := range []bool{true, false} {
				port := port4
				if v6 {
					port = port6
				}
				for _, w := range ab {
					frags := filterHops(hops, func(h *event.Hop) bool { return hookOf(*h) == w && isFrag(v6)(h) })
					first, later := 0, 0
					fps := map[uint64]bool{}
					for _, h := range frags {
						p := h.Pkt
						fps[h.Fingerprint] = true
						if p.Layers.Has(event.LayerUDP) {
							first++
							if p.DstPort != port {
								t.Errorf("v6 %v at %s: first fragment to port %d, want %d", v6, w, p.DstPort, port)
							}
							continue
						}
						later++
						if p.Layers&(event.LayerTCP|event.LayerICMP|event.LayerICMPv6) != 0 || p.SrcPort != 0 || p.DstPort != 0 {
							t.Errorf("v6 %v at %s: later fragment decoded as L4: layers %#x ports %d > %d", v6, w, p.Layers, p.SrcPort, p.DstPort)
						}
					}
					if first != 1 || later != 3 {
						t.Errorf("v6 %v at %s: %d first and %d later fragments, want 1 and 3", v6, w, first, later)
					}
					if len(fps) != len(frags) {
						t.Errorf("v6 %v at %s: %d fragments share %d fingerprints", v6, w, len(frags), len(fps))
					}
				}
			}
		})

		t.Run("filter", func(t *testing.T) {
			// 0x1100 is what a fragment header reads as a source port; the
			// real destination ports match the first fragments only.
			expr := fmt.Sprintf("port %d or (udp and dst port %d) or (udp and dst port %d)", 0x1100, port4, port6)
			o := opts
			o.Filter = mustCompile(t, expr)
			tr := load(t, o)
			attachAll(t, tr, topo)
			c := collect(t, tr)
			send()
			firsts := func(hops []event.Hop, _ []event.Drop) bool {
				n := 0
				for _, v6 := range []bool{true, false} {
					n += len(filterHops(hops, isFrag(v6)))
				}
				return n >= 8
			}
			c.wait(t, "first fragments", firsts)
			time.Sleep(100 * time.Millisecond) // anything else the filter let through shows now
			hops, _ := c.wait(t, "all", func([]event.Hop, []event.Drop) bool { return true })
			for _, h := range hops {
				p := h.Pkt
				if !p.Layers.Has(event.LayerFragment|event.LayerUDP) || (p.DstPort != port4 && p.DstPort != port6) {
					t.Errorf("%q matched what is not a first fragment at %s: %+v", expr, hookOf(h), p)
				}
			}
			if len(hops) != 8 {
				t.Errorf("%q: %d hops, want a first fragment of each datagram at 4 hooks", expr, len(hops))
			}
		})
	})
}
