package pcapng_test

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/pcapng"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/playback"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// recording writes the synthetic scenario; with snaplen > 0 each hop carries
// real packet bytes (synthesized headers plus payload).
func recording(t *testing.T, o tracefiletest.Options, snaplen int) ([]byte, int) {
	t.Helper()
	var buf bytes.Buffer
	w, err := tracefile.Create(&buf, tracefile.Header{
		HoptraceVersion: "test", Kernel: "6.1.0-test", Hostname: "box",
		Start: tracefiletest.Start, MonoOffsetNS: tracefiletest.MonoOffset, Snaplen: uint32(snaplen),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteSnapshot(tracefiletest.Snapshot()); err != nil {
		t.Fatal(err)
	}
	hops := 0
	for _, ev := range tracefiletest.Events(o) {
		if ev.Drop != nil {
			err = w.WriteDrop(ev.Drop)
		} else {
			h := *ev.Hop
			h.Data = nil
			if snaplen > 0 {
				d := pcapng.Synthesize(&h.Pkt, h.Len)
				d = append(d, bytes.Repeat([]byte{'x'}, int(h.Len)-len(d))...)
				h.Data = d[:min(len(d), snaplen)]
			}
			err = w.WriteHop(&h)
			hops++
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), hops
}

func export(t *testing.T, rec []byte) ([]byte, pcapng.Stats) {
	t.Helper()
	src, err := playback.NewSource([]string{"rec"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(rec)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	e := pcapng.New(&out, pcapng.Options{HoptraceVersion: "test", Header: src.Header()})
	if _, err := pipeline.Run(context.Background(), src, pipeline.Config{}, e); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), e.Stats()
}

// TestExportReadBack checks the export with pcapgo's own reader: interfaces,
// flags, comments and time order.
func TestExportReadBack(t *testing.T) {
	rec, hops := recording(t, tracefiletest.Options{Packets: 40, DropEvery: 5}, 0)
	out, st := export(t, rec)
	if st.Packets != hops || st.Synthesized != hops || st.Interfaces != 4 {
		t.Fatalf("stats %+v, want %d packets, all synthesized, 4 interfaces", st, hops)
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(out), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	n := 0
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			break
		}
		n++
		if ci.Timestamp.UnixNano() < last {
			t.Fatalf("packet %d out of time order", n)
		}
		last = ci.Timestamp.UnixNano()
		if opts.Flags == nil || opts.Flags.Direction == pcapgo.NgEpbFlagDirectionUnknown {
			t.Fatalf("packet %d: no direction flag", n)
		}
		if len(opts.Comments) != 1 || !strings.HasPrefix(opts.Comments[0], "hoptrace journey ") {
			t.Fatalf("packet %d: comments %q", n, opts.Comments)
		}
		if ci.Length < len(data) || ci.CaptureLength != len(data) {
			t.Fatalf("packet %d: lengths %+v for %d bytes", n, ci, len(data))
		}
	}
	if n != hops {
		t.Fatalf("read %d packets, want %d", n, hops)
	}
}

// TestExportTshark runs tshark, not our own reader, on the export.
func TestExportTshark(t *testing.T) {
	tshark := testenv.RequireCommand(t, "tshark")
	for _, snaplen := range []int{0, 256} {
		rec, hops := recording(t, tracefiletest.Options{Packets: 40, DropEvery: 5}, snaplen)
		out, _ := export(t, rec)
		path := filepath.Join(t.TempDir(), "out.pcapng")
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "separator=|",
			"-e", "frame.interface_name", "-e", "frame.packet_flags_direction", "-e", "frame.comment",
			"-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "frame.len", "-e", "ip.checksum.status")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != hops {
			t.Fatalf("snaplen %d: tshark shows %d packets, want %d", snaplen, len(lines), hops)
		}
		ifaces := map[string]int{}
		dropped := 0
		for _, l := range lines {
			f := strings.Split(l, "|")
			if len(f) != 9 {
				t.Fatalf("tshark line %q", l)
			}
			ifaces[f[0]]++
			if f[1] != "1" && f[1] != "2" && f[1] != "0x00000001" && f[1] != "0x00000002" {
				t.Errorf("direction %q in %q", f[1], l)
			}
			if !strings.HasPrefix(f[2], "hoptrace journey ") || !strings.Contains(f[2], "; client") && !strings.Contains(f[2], "; web") {
				t.Errorf("comment %q", f[2])
			}
			if strings.Contains(f[2], "dropped after this hop: NETFILTER_DROP") {
				dropped++
			}
			if ips := []string{f[3], f[4]}; ips[0] != "172.17.0.2" && ips[0] != "172.17.0.3" {
				t.Errorf("ip.src %q", f[3])
			}
			if f[5] != "40000" && f[5] != "80" {
				t.Errorf("tcp.srcport %q", f[5])
			}
			if f[7] != "152" && f[7] != "1452" {
				t.Errorf("frame.len %q, want the recorded length", f[7])
			}
		}
		var names []string
		for n := range ifaces {
			names = append(names, n)
		}
		sort.Strings(names)
		want := []string{"client:eth0", "veth1a2b@docker0", "veth3c4d@docker0", "web:eth0"}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("interfaces %v, want %v", names, want)
		}
		if dropped != 8 {
			t.Errorf("%d drop comments, want 8", dropped)
		}
		t.Logf("snaplen %d: %d packets; first: %s", snaplen, len(lines), lines[0])
	}
}

func TestSynthesize(t *testing.T) {
	mac1 := [6]byte{2, 0x42, 0xac, 0x11, 0, 2}
	mac2 := [6]byte{2, 0x42, 0xac, 0x11, 0, 3}
	for _, tc := range []struct {
		name string
		p    event.Packet
		len  uint32
		want []gopacket.LayerType
	}{
		{"tcp4", event.Packet{Layers: event.LayerEth | event.LayerIPv4 | event.LayerTCP, EtherType: event.EtherTypeIPv4, SrcMAC: mac1, DstMAC: mac2,
			Src: netip.MustParseAddr("172.17.0.2"), Dst: netip.MustParseAddr("172.17.0.3"), Proto: 6, TTL: 64, IPID: 7,
			SrcPort: 40000, DstPort: 80, TCPFlags: event.TCPSyn, Seq: 1}, 74, []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeTCP}},
		{"udp6-vlan", event.Packet{Layers: event.LayerEth | event.LayerVLAN | event.LayerIPv6 | event.LayerUDP, EtherType: event.EtherTypeIPv6, VLAN: 10,
			Src: netip.MustParseAddr("fd00::2"), Dst: netip.MustParseAddr("fd00::3"), Proto: 17, TTL: 64, SrcPort: 5353, DstPort: 53}, 18 + 40 + 8 + 30,
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeDot1Q, layers.LayerTypeIPv6, layers.LayerTypeUDP}},
		{"icmp4", event.Packet{Layers: event.LayerEth | event.LayerIPv4 | event.LayerICMP, EtherType: event.EtherTypeIPv4,
			Src: netip.MustParseAddr("172.17.0.2"), Dst: netip.MustParseAddr("8.8.8.8"), Proto: 1, TTL: 64, ICMPType: 8, ICMPID: 9, ICMPSeq: 3}, 98,
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeICMPv4}},
		{"arp", event.Packet{Layers: event.LayerEth | event.LayerARP, EtherType: event.EtherTypeARP, ARPOp: 1, ARPSenderMAC: mac1,
			Src: netip.MustParseAddr("172.17.0.2"), Dst: netip.MustParseAddr("172.17.0.3")}, 42,
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeARP}},
	} {
		b := pcapng.Synthesize(&tc.p, tc.len)
		pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
		var got []gopacket.LayerType
		for _, l := range pkt.Layers() {
			got = append(got, l.LayerType())
		}
		if len(got) < len(tc.want) {
			t.Errorf("%s: layers %v, want %v (%v)", tc.name, got, tc.want, pkt.ErrorLayer())
			continue
		}
		for i := range tc.want {
			if got[i] != tc.want[i] {
				t.Errorf("%s: layers %v, want %v", tc.name, got, tc.want)
			}
		}
		if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			if int(ip.Length) != int(tc.len)-14 || ip.TTL != tc.p.TTL || ip.Id != uint16(tc.p.IPID) {
				t.Errorf("%s: ip %+v", tc.name, ip)
			}
			// The header checksum must verify.
			sum := 0
			for i := 14; i < 34; i += 2 {
				sum += int(b[i])<<8 | int(b[i+1])
			}
			for sum > 0xffff {
				sum = sum>>16 + sum&0xffff
			}
			if sum != 0xffff {
				t.Errorf("%s: IPv4 header checksum does not verify", tc.name)
			}
		}
		if ip, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok && int(ip.Length) != int(tc.len)-18-40 {
			t.Errorf("%s: ipv6 payload length %d", tc.name, ip.Length)
		}
		if a, ok := pkt.Layer(layers.LayerTypeARP).(*layers.ARP); ok && (a.Operation != 1 || !bytes.Equal(a.SourceProtAddress, []byte{172, 17, 0, 2})) {
			t.Errorf("%s: arp %+v", tc.name, a)
		}
	}
}
