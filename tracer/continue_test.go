package tracer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// TestChangedFrameSendsHeaders: a hook that finds a packet's frame changed
// since the packet's last hop sends the headers it has now, not a compact
// hop with the old ones, and the hops after it go compact with the new.
// A TC program after hoptrace's on a's host veth rewrites the UDP
// destination port from 5001 to 5002, as NAT would between two hooks; or
// swaps two words of the payload (the checksum holds), which changes the
// bytes and not the headers. With a snaplen, each hop's bytes are those the
// packet had there, whether the hop went compact (a snaplen up to 128) or
// carried them (a larger one).
func TestChangedFrameSendsHeaders(t *testing.T) {
	payload := []byte("rewritten on the way")
	swapped := []byte("wrreitten on the way")
	nat := frameChange{func(t *testing.T) *ebpf.Program { return rewriteDport(t, 5001, 5002) }, [4]uint16{5001, 5001, 5002, 5002}, [4][]byte{payload, payload, payload, payload}}
	words := frameChange{swapPayloadWords, [4]uint16{5001, 5001, 5001, 5001}, [4][]byte{payload, payload, swapped, swapped}}
	for _, snaplen := range []uint32{0, 128, 256} {
		t.Run(fmt.Sprintf("port/snaplen=%d", snaplen), func(t *testing.T) { changedFrame(t, snaplen, nat) })
		t.Run(fmt.Sprintf("payload/snaplen=%d", snaplen), func(t *testing.T) { changedFrame(t, snaplen, words) })
	}
}

// frameChange is a rewriter between a packet's second and third hops and
// what the packet is at its four hops.
type frameChange struct {
	rewriter func(*testing.T) *ebpf.Program
	dport    [4]uint16
	payload  [4][]byte
}

func changedFrame(t *testing.T, snaplen uint32, change frameChange) {
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	tr := load(t, Options{countHookCalls: true, Snaplen: snaplen})
	if f := tr.Features(); !f.TCX || !f.SkbKey {
		// Without the skb key every hop is decoded (no continue_here);
		// without tcx the rewriter cannot be placed after our hook.
		t.Skipf("needs tcx and the skb key: %v", f)
	}
	attachAll(t, tr, topo)
	l, err := link.AttachTCX(link.TCXOptions{
		Interface: a.HostVethIndex, Program: change.rewriter(t), Attach: ebpf.AttachTCXIngress, Anchor: link.Tail(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c := collect(t, tr)

	const n = 5
	to := &net.UDPAddr{IP: b.IP.AsSlice(), Port: 5001}
	// One at a time: a datagram on its way keeps its CPU's slot (another
	// one in flight could take it and send it the long way).
	udpTo(t, a, to, change.payload[0], n, time.Millisecond)
	ours := func(h *event.Hop) bool {
		return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.Dst == b.IP && (h.Pkt.DstPort == 5001 || h.Pkt.DstPort == 5002)
	}
	for id, hs := range packetsOf(t, c, n, ours) {
		checkJourney(t, "datagram", hs, path(topo, a, b))
		for i, want := range change.dport {
			if hs[i].Pkt.DstPort != want {
				t.Errorf("packet %#x at %v: destination port %d, want %d", id, hookOf(hs[i]), hs[i].Pkt.DstPort, want)
			}
			if snaplen > 0 {
				checkFrameBytes(t, hs[i], want, change.payload[i])
			} else if hs[i].Data != nil {
				t.Errorf("packet %#x at %v: %d bytes without a snaplen", id, hookOf(hs[i]), len(hs[i].Data))
			}
		}
	}
	// The hop after a frame's first and after its change joined without
	// the decode; the changed one could not (without a snaplen, bytes
	// that changed under equal headers do not count). A snaplen past 128
	// copies every hop's bytes: none joined so.
	continued, err := tr.hopsContinued()
	if err != nil {
		t.Fatal(err)
	}
	if snaplen > 128 {
		if continued != 0 {
			t.Errorf("%d hops joined without their decode at snaplen %d, want none", continued, snaplen)
		}
	} else if continued < 2*n {
		t.Errorf("%d hops joined without their decode, want at least %d", continued, 2*n)
	}
}

// checkFrameBytes checks that hop h carries its whole frame (an untagged
// IPv4 UDP datagram without options: Ethernet, IPv4, UDP, payload) with
// the destination port dport.
func checkFrameBytes(t *testing.T, h event.Hop, dport uint16, payload []byte) {
	t.Helper()
	d := h.Data
	if len(d) != 14+20+8+len(payload) {
		t.Errorf("packet %#x at %v: %d bytes, want the whole %d-byte frame", h.PacketID, hookOf(h), len(d), 14+20+8+len(payload))
		return
	}
	if got := binary.BigEndian.Uint16(d[36:38]); got != dport {
		t.Errorf("packet %#x at %v: the bytes' destination port %d, want %d", h.PacketID, hookOf(h), got, dport)
	}
	if !bytes.Equal(d[42:], payload) {
		t.Errorf("packet %#x at %v: the bytes' payload %q, want %q", h.PacketID, hookOf(h), d[42:], payload)
	}
	if src := netip.AddrFrom4([4]byte(d[26:30])); src != h.Pkt.Src {
		t.Errorf("packet %#x at %v: the bytes' source %v, the headers' %v", h.PacketID, hookOf(h), src, h.Pkt.Src)
	}
}

// rewriteDport is a TC program that sets the UDP destination port of an
// untagged IPv4 frame without options from `from` to `to` (the checksum to
// none) and passes every frame on.
func rewriteDport(t *testing.T, from, to uint16) *ebpf.Program {
	be := func(v uint16) int32 { return int32(v>>8 | v<<8&0xff00) } // as a little-endian load sees it
	return udpRewriter(t, 42, asm.Instructions{
		asm.LoadMem(asm.R5, asm.R2, 36, asm.Half),
		asm.JNE.Imm(asm.R5, be(from), "out"),
		asm.StoreImm(asm.R2, 36, int64(be(to)), asm.Half),
		asm.StoreImm(asm.R2, 40, 0, asm.Half),
	})
}

// swapPayloadWords is a TC program that swaps the first two 16-bit words of
// the payload of an untagged IPv4 UDP datagram without options when they
// are "re" and "wr" (the checksum, a sum of the words, holds) and passes
// every frame on.
func swapPayloadWords(t *testing.T) *ebpf.Program {
	return udpRewriter(t, 46, asm.Instructions{
		asm.LoadMem(asm.R5, asm.R2, 42, asm.Half),
		asm.JNE.Imm(asm.R5, int32('r'|'e'<<8), "out"),
		asm.LoadMem(asm.R6, asm.R2, 44, asm.Half),
		asm.JNE.Imm(asm.R6, int32('w'|'r'<<8), "out"),
		asm.StoreMem(asm.R2, 42, asm.R6, asm.Half),
		asm.StoreMem(asm.R2, 44, asm.R5, asm.Half),
	})
}

// udpRewriter loads a TC program that runs rewrite on an untagged IPv4 UDP
// frame without options of at least n bytes (R2 the frame's start; jump to
// "out" to leave it alone) and passes every frame on.
func udpRewriter(t *testing.T, n int32, rewrite asm.Instructions) *ebpf.Program {
	t.Helper()
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 76, asm.Word), // __sk_buff.data
		asm.LoadMem(asm.R3, asm.R1, 80, asm.Word), // __sk_buff.data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, n),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R5, 0x0008, "out"), // ETH_P_IP as a little-endian load sees it
		asm.LoadMem(asm.R5, asm.R2, 14, asm.Byte),
		asm.JNE.Imm(asm.R5, 0x45, "out"),
		asm.LoadMem(asm.R5, asm.R2, 23, asm.Byte),
		asm.JNE.Imm(asm.R5, 17, "out"),
	}
	insns = append(insns, rewrite...)
	insns = append(insns,
		asm.Mov.Imm(asm.R0, -1).WithSymbol("out"), // TCX_NEXT
		asm.Return(),
	)
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
