package tracer

import (
	"net"
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
// destination port from 5001 to 5002, as NAT would between two hooks.
func TestChangedFrameSendsHeaders(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	tr := load(t, Options{countHookCalls: true})
	if f := tr.Features(); !f.TCX || !f.SkbKey {
		// Without the skb key every hop is decoded (no continue_here);
		// without tcx the rewriter cannot be placed after our hook.
		t.Skipf("needs tcx and the skb key: %v", f)
	}
	attachAll(t, tr, topo)
	rewriter := rewriteDport(t, 5001, 5002)
	l, err := link.AttachTCX(link.TCXOptions{
		Interface: a.HostVethIndex, Program: rewriter, Attach: ebpf.AttachTCXIngress, Anchor: link.Tail(),
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
	udpTo(t, a, to, []byte("rewritten on the way"), n, time.Millisecond)
	ours := func(h *event.Hop) bool {
		return h.Pkt.Layers.Has(event.LayerUDP) && h.Pkt.Dst == b.IP && (h.Pkt.DstPort == 5001 || h.Pkt.DstPort == 5002)
	}
	for id, hs := range packetsOf(t, c, n, ours) {
		checkJourney(t, "datagram", hs, path(topo, a, b))
		for i, want := range []uint16{5001, 5001, 5002, 5002} {
			if hs[i].Pkt.DstPort != want {
				t.Errorf("packet %#x at %v: destination port %d, want %d", id, hookOf(hs[i]), hs[i].Pkt.DstPort, want)
			}
		}
	}
	// The two hops after a frame's first and after its rewrite joined
	// without the decode; the rewritten one could not.
	continued, err := tr.hopsContinued()
	if err != nil {
		t.Fatal(err)
	}
	if continued < 2*n {
		t.Errorf("%d hops joined without their decode, want at least %d", continued, 2*n)
	}
}

// rewriteDport is a TC program that sets the UDP destination port of an
// untagged IPv4 frame without options from `from` to `to` (the checksum to
// none) and passes every frame on.
func rewriteDport(t *testing.T, from, to uint16) *ebpf.Program {
	t.Helper()
	be := func(v uint16) int32 { return int32(v>>8 | v<<8&0xff00) } // as a little-endian load sees it
	spec := &ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 76, asm.Word), // __sk_buff.data
			asm.LoadMem(asm.R3, asm.R1, 80, asm.Word), // __sk_buff.data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 42),
			asm.JGT.Reg(asm.R4, asm.R3, "out"),
			asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
			asm.JNE.Imm(asm.R5, be(0x0800), "out"),
			asm.LoadMem(asm.R5, asm.R2, 14, asm.Byte),
			asm.JNE.Imm(asm.R5, 0x45, "out"),
			asm.LoadMem(asm.R5, asm.R2, 23, asm.Byte),
			asm.JNE.Imm(asm.R5, 17, "out"),
			asm.LoadMem(asm.R5, asm.R2, 36, asm.Half),
			asm.JNE.Imm(asm.R5, be(from), "out"),
			asm.StoreImm(asm.R2, 36, int64(be(to)), asm.Half),
			asm.StoreImm(asm.R2, 40, 0, asm.Half),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("out"), // TCX_NEXT
			asm.Return(),
		},
	}
	p, err := ebpf.NewProgram(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
