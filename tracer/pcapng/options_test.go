package pcapng_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pcapng"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/playback"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// rounds writes the scenario's packets again every gap ns (each round its
// own journeys), then the loss counters.
func rounds(t *testing.T, o tracefiletest.Options, n int, gap uint64, loss event.Loss) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := tracefile.Create(&buf, tracefile.Header{
		HoptraceVersion: "test", Kernel: "6.1.0-test", Hostname: "box",
		Start: tracefiletest.Start, MonoOffsetNS: tracefiletest.MonoOffset,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteSnapshot(tracefiletest.Snapshot()); err != nil {
		t.Fatal(err)
	}
	for r := 0; r < n; r++ {
		for _, ev := range tracefiletest.Events(o) {
			if ev.Drop != nil {
				d := *ev.Drop
				d.TimeNS += uint64(r) * gap
				err = w.WriteDrop(&d)
			} else {
				h := *ev.Hop
				h.TimeNS += uint64(r) * gap
				err = w.WriteHop(&h)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if loss.Total() > 0 {
		if err := w.WriteLoss(loss); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func exportWith(t *testing.T, rec []byte, opts pcapng.Options, more ...pipeline.Sink) ([]byte, pcapng.Stats, error) {
	t.Helper()
	src, err := playback.NewSource([]string{"rec"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(rec)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	opts.HoptraceVersion, opts.Header = "test", src.Header()
	e := pcapng.New(&out, opts)
	_, err = pipeline.Run(context.Background(), src, pipeline.Config{}, append([]pipeline.Sink{e}, more...)...)
	return out.Bytes(), e.Stats(), err
}

type readPacket struct {
	iface   string
	id      uint64
	comment string
}

// readAll reads an export back with pcapgo: its packets, then its
// interfaces (their statistics come at the end).
func readAll(t *testing.T, out []byte) ([]readPacket, []pcapgo.NgInterface) {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(out), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var pks []readPacket
	for {
		_, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			break
		}
		intf, _ := r.Interface(ci.InterfaceIndex)
		pk := readPacket{iface: intf.Name}
		if opts.PacketID != nil {
			pk.id = *opts.PacketID
		}
		if len(opts.Comments) > 0 {
			pk.comment = opts.Comments[0]
		}
		pks = append(pks, pk)
	}
	var ifaces []pcapgo.NgInterface
	for i := 0; i < r.NInterfaces(); i++ {
		intf, _ := r.Interface(i)
		ifaces = append(ifaces, intf)
	}
	return pks, ifaces
}

// TestExportPacketIDs: each packet's ID is its journey's, so the hops of one
// packet share it and two journeys never do.
func TestExportPacketIDs(t *testing.T) {
	rec := rounds(t, tracefiletest.Options{Packets: 20, DropEvery: 5}, 1, 0, event.Loss{})
	out, st, err := exportWith(t, rec, pcapng.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pks, _ := readAll(t, out)
	if len(pks) != st.Packets || len(pks) == 0 {
		t.Fatalf("read %d packets, stats %+v", len(pks), st)
	}
	ids := map[uint64]int{}
	for _, pk := range pks {
		var journeyID uint64
		if _, err := fmt.Sscanf(pk.comment, "hoptrace journey %d ", &journeyID); err != nil {
			t.Fatalf("comment %q: %v", pk.comment, err)
		}
		if pk.id != journeyID || pk.id == 0 {
			t.Fatalf("packet ID %d, comment %q", pk.id, pk.comment)
		}
		ids[pk.id]++
	}
	if len(ids) != st.Journeys {
		t.Errorf("%d distinct packet IDs, want one per journey (%d)", len(ids), st.Journeys)
	}
	for id, n := range ids {
		if n < 2 {
			t.Errorf("journey %d: %d packets share its ID, want every hop", id, n)
		}
	}
}

// TestExportStatistics: every interface has a statistics block with its
// packet count; without loss nothing is dropped, with loss the lost hops
// are on an interface of their own, not charged to a real one.
func TestExportStatistics(t *testing.T) {
	for _, loss := range []event.Loss{{}, {Hops: 7, Drops: 2}} {
		rec := rounds(t, tracefiletest.Options{Packets: 20}, 1, 0, loss)
		out, st, err := exportWith(t, rec, pcapng.Options{})
		if err != nil {
			t.Fatal(err)
		}
		pks, ifaces := readAll(t, out)
		per := map[string]uint64{}
		for _, pk := range pks {
			per[pk.iface]++
		}
		wantIfaces := len(per)
		if loss.Total() > 0 {
			wantIfaces++
		}
		if len(ifaces) != wantIfaces || st.Interfaces != len(per) {
			t.Fatalf("loss %+v: %d interfaces (stats %d), want %d", loss, len(ifaces), st.Interfaces, wantIfaces)
		}
		for _, intf := range ifaces {
			s := intf.Statistics
			if intf.Name == pcapng.LostInterface {
				if s.PacketsDropped != loss.Hops || s.PacketsReceived != 0 || !strings.Contains(intf.Description, "7 hops") {
					t.Errorf("lost interface %+v", intf)
				}
				continue
			}
			wantDrop := uint64(0)
			if loss.Total() > 0 {
				wantDrop = pcapgo.NgNoValue64
			}
			if s.PacketsReceived != per[intf.Name] || s.PacketsDropped != wantDrop || s.StartTime.IsZero() || s.EndTime.Before(s.StartTime) {
				t.Errorf("loss %+v: %s statistics %+v, want %d received, dropped %d", loss, intf.Name, s, per[intf.Name], wantDrop)
			}
		}
	}
}

// TestExportAt: --at keeps one vantage point, by any of its names.
func TestExportAt(t *testing.T) {
	rec := rounds(t, tracefiletest.Options{Packets: 20}, 1, 0, event.Loss{})
	_, all, err := exportWith(t, rec, pcapng.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []string{"web:eth0", "veth3c4d@docker0", "veth3c4d"} {
		out, st, err := exportWith(t, rec, pcapng.Options{At: []string{at}})
		if err != nil {
			t.Fatal(err)
		}
		pks, ifaces := readAll(t, out)
		if len(ifaces) != 1 || st.Packets != len(pks) || st.Packets*4 != all.Packets || st.Journeys != all.Journeys {
			t.Fatalf("--at %s: %d interfaces, stats %+v (all: %+v)", at, len(ifaces), st, all)
		}
		if !strings.HasPrefix(ifaces[0].Name, strings.Split(at, "@")[0]) {
			t.Errorf("--at %s: interface %q", at, ifaces[0].Name)
		}
	}
	if _, _, err := exportWith(t, rec, pcapng.Options{At: []string{"eth9"}}); err != pcapng.ErrNoPackets {
		t.Errorf("--at naming nothing: %v, want ErrNoPackets", err)
	}
}

// probe looks at the output each time a journey passes the exporter.
type probe struct {
	out     func() []byte
	packets []int
	t       *testing.T
}

func (p *probe) Journey(*journey.Journey) error {
	pks, _ := readPartial(p.out())
	p.packets = append(p.packets, pks)
	return nil
}
func (p *probe) Summary(render.Summary) error { return nil }

// readPartial counts the complete packets at the start of an export.
func readPartial(b []byte) (int, error) {
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			return n, nil
		}
		n++
	}
}

// TestExportStream: streaming, packets are in the output as soon as they
// leave the reorder window, long before the end; otherwise some wait in
// the buffer.
func TestExportStream(t *testing.T) {
	const gap = 3_000_000_000 // 3s between rounds: past the reorder window
	rec := rounds(t, tracefiletest.Options{Packets: 2}, 4, gap, event.Loss{})
	for _, stream := range []bool{false, true} {
		var outBuf *bytes.Buffer
		src, err := playback.NewSource([]string{"rec"}, func(string) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(rec)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		outBuf = &bytes.Buffer{}
		e := pcapng.New(outBuf, pcapng.Options{Header: src.Header(), Stream: stream})
		p := &probe{out: outBuf.Bytes, t: t}
		if _, err := pipeline.Run(context.Background(), src, pipeline.Config{}, e, p); err != nil {
			t.Fatal(err)
		}
		// The last round's first journey: the rounds before it are out of
		// the window.
		seen := p.packets[len(p.packets)-2]
		switch {
		case stream && seen < 16:
			t.Errorf("streaming: %d packets written before the last round, want the 16 of the rounds before (per journey: %v)", seen, p.packets)
		case !stream && seen >= 16:
			t.Errorf("not streaming: all %d packets out of the window written, want some held in the buffer", seen)
		}
	}
}

// TestExportTsharkPacketIDs: tshark sees the packet IDs (frame.packet_id).
func TestExportTsharkPacketIDs(t *testing.T) {
	tshark := testenv.RequireCommand(t, "tshark")
	rec := rounds(t, tracefiletest.Options{Packets: 10}, 1, 0, event.Loss{Hops: 3})
	out, st, err := exportWith(t, rec, pcapng.Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out.pcapng")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, "-r", path, "-T", "fields", "-e", "frame.packet_id", "-e", "frame.interface_name")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	ids := map[string]int{}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) != 2 || f[0] == "" {
			t.Fatalf("tshark line %q", l)
		}
		ids[f[0]]++
	}
	if len(lines) != st.Packets || len(ids) != st.Journeys {
		t.Errorf("tshark: %d packets with %d packet IDs, want %d and %d", len(lines), len(ids), st.Packets, st.Journeys)
	}
}
