package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pcapng"
	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/tracer/tracefile"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

var testLoss = event.Loss{Hops: 3, Drops: 1}

func testRecordingHeader() tracefile.Header {
	return tracefile.Header{HoptraceVersion: "test", Kernel: "6.1.0-test", Hostname: "box",
		Start: tracefiletest.Start, MonoOffsetNS: tracefiletest.MonoOffset}
}

// writeRecording writes the synthetic scenario (client <-> web, with drops)
// to sink, the way record does: snapshot first, then events, loss at the end.
func writeRecording(t *testing.T, sink tracefile.Sink, events []tracefiletest.Event) {
	t.Helper()
	if err := sink.WriteSnapshot(tracefiletest.Snapshot()); err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		var err error
		if ev.Hop != nil {
			err = sink.WriteHop(ev.Hop)
		} else {
			err = sink.WriteDrop(ev.Drop)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.WriteLoss(testLoss); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
}

func recordingFile(t *testing.T, events []tracefiletest.Event) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.hop")
	w, err := tracefile.CreateFile(path, testRecordingHeader())
	if err != nil {
		t.Fatal(err)
	}
	writeRecording(t, w, events)
	return path
}

func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// direct is what trace's printers give for the same events fed straight to
// the assembler with the snapshot's names: the journeys, and the summary.
func direct(t *testing.T, events []tracefiletest.Event, json bool) (string, string) {
	t.Helper()
	snap := tracefiletest.Snapshot()
	asm := journey.New(journey.Config{HostNetnsIno: snap.HostNetnsIno}, topology.NewIndex(snap))
	var out, sum bytes.Buffer
	opt := render.Options{WallOffsetNS: tracefiletest.MonoOffset}
	var pr, sumPr render.Printer = render.NewText(&out, opt), render.NewText(&sum, opt)
	if json {
		pr, sumPr = render.NewJSON(&out, opt), render.NewJSON(&sum, opt)
	}
	emit := func(js []*journey.Journey) {
		for _, j := range js {
			if err := pr.Journey(j); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ev := range events {
		if ev.Hop != nil {
			emit(asm.AddHop(*ev.Hop))
		} else {
			emit(asm.AddDrop(*ev.Drop))
		}
	}
	emit(asm.Flush())
	if err := sumPr.Summary(render.Summary{Stats: asm.Stats(), Loss: testLoss}); err != nil {
		t.Fatal(err)
	}
	return out.String(), sum.String()
}

func TestReplayMatchesDirect(t *testing.T) {
	events := tracefiletest.Events(tracefiletest.Options{Packets: 200, DropEvery: 7})
	path := recordingFile(t, events)
	for _, format := range []string{"json", "text"} {
		got, stderr, err := runCmd(t, "replay", "-o", format, "--no-color", path)
		if err != nil {
			t.Fatalf("replay -o %s: %v\n%s", format, err, stderr)
		}
		want, wantSum := direct(t, events, format == "json")
		if got != want {
			t.Fatalf("replay -o %s differs from the printers fed directly\n got: %.600s\nwant: %.600s", format, got, want)
		}
		// The summary, and nothing else, on stderr.
		if stderr != wantSum {
			t.Errorf("replay -o %s: stderr %q, want the summary %q", format, stderr, wantSum)
		}
		if !strings.Contains(got, "client") || !strings.Contains(got, "web") || !strings.Contains(got, "NETFILTER_DROP") {
			t.Fatalf("replay -o %s lacks names or drops:\n%.600s", format, got)
		}
	}
}

// TestReplayRotated: the parts of a rotated recording replay as one.
func TestReplayRotated(t *testing.T) {
	events := tracefiletest.Events(tracefiletest.Options{Packets: 200, DropEvery: 7})
	dir := t.TempDir()
	rot, err := tracefile.CreateRotating(tracefile.RotateConfig{Path: filepath.Join(dir, "r.hop"), MaxBytes: 4000}, testRecordingHeader())
	if err != nil {
		t.Fatal(err)
	}
	writeRecording(t, rot, events)
	if len(rot.Files()) < 3 {
		t.Fatalf("only %d parts", len(rot.Files()))
	}
	got, stderr, err := runCmd(t, append([]string{"replay", "-o", "json"}, rot.Files()...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if want, _ := direct(t, events, true); got != want {
		t.Fatalf("rotated replay differs\n got: %.600s\nwant: %.600s", got, want)
	}
}

func TestReplaySelection(t *testing.T) {
	events := tracefiletest.Events(tracefiletest.Options{Packets: 20, DropEvery: 2})
	path := recordingFile(t, events)
	all, _, err := runCmd(t, "replay", "-o", "json", path)
	if err != nil {
		t.Fatal(err)
	}
	// Replies (odd packets) are dropped at veth1a2b, before client:eth0.
	// A container the recording never had is an error after the replay.
	client, _, err := runCmd(t, "replay", "-o", "json", "-C", "nobody", "-C", "client", path)
	if err == nil || !strings.Contains(err.Error(), `no container "nobody" in the recording`) || strings.Contains(err.Error(), "client") {
		t.Fatalf("-C nobody -C client: %v, want an error naming nobody alone", err)
	}
	if code := exitCode(io.Discard, err); code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	byIface, _, err := runCmd(t, "replay", "-o", "json", "-i", "client:eth0", path)
	if err != nil {
		t.Fatal(err)
	}
	byLabel, _, err := runCmd(t, "replay", "-o", "json", "-i", "web:eth0", path)
	if err != nil {
		t.Fatal(err)
	}
	count, _, err := runCmd(t, "replay", "-o", "json", "-c", "3", path)
	if err != nil {
		t.Fatal(err)
	}
	// Requests go client:40000 -> web:80, replies come back from port 80.
	toWeb, _, err := runCmd(t, "replay", "-o", "json", "-f", "tcp and dst port 80", path)
	if err != nil {
		t.Fatal(err)
	}
	none, _, err := runCmd(t, "replay", "-o", "json", "--filter", "udp or icmp", path)
	if err != nil {
		t.Fatal(err)
	}
	n := func(s string) int { return strings.Count(s, `"type":"journey"`) }
	if n(all) != 20 || n(client) != 20 || n(byIface) != 10 || n(byLabel) != 20 || n(count) != 3 || n(toWeb) != 10 || n(none) != 0 {
		t.Fatalf("journeys: all %d, -C client %d, -i client:eth0 %d, -i web:eth0 %d, -c 3 %d, -f dst port 80 %d, -f udp or icmp %d; want 20, 20, 10, 20, 3, 10, 0",
			n(all), n(client), n(byIface), n(byLabel), n(count), n(toWeb), n(none))
	}
	if strings.Contains(toWeb, `"src_port":80,`) {
		t.Errorf("-f 'dst port 80' kept a reply from port 80")
	}
	if _, _, err := runCmd(t, "replay", "-f", "port", path); err == nil {
		t.Errorf("replay -f with a bad expression: no error")
	}
}

func TestReplayTruncated(t *testing.T) {
	events := tracefiletest.Events(tracefiletest.Options{Packets: 50})
	path := recordingFile(t, events)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data[:len(data)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCmd(t, "replay", "-o", "json", path)
	if err != nil {
		t.Fatalf("a truncated recording must replay: %v", err)
	}
	notes := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(notes) != 2 || !strings.Contains(notes[0], "cut short") || !strings.Contains(notes[0], path) || !strings.HasPrefix(notes[1], `{"type":"summary"`) {
		t.Fatalf("stderr %q, want one note naming the file, then the summary", stderr)
	}
	if n := strings.Count(out, `"type":"journey"`); n == 0 || n >= 50 {
		t.Fatalf("%d journeys from two thirds of the file", n)
	}
}

func TestReplayBadInput(t *testing.T) {
	events := tracefiletest.Events(tracefiletest.Options{Packets: 10})
	path := recordingFile(t, events)
	data, _ := os.ReadFile(path)
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0x40
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"corrupt", write("bad.hop", bad), "corrupt recording at byte"},
		{"empty", write("empty.hop", nil), "the file is empty"},
		{"pcapng", write("x.pcapng", []byte("\x0a\x0d\x0d\x0a\x1c\x00\x00\x00")), "pcapng file, not a hoptrace recording"},
		{"missing", filepath.Join(dir, "nope.hop"), "no such file"},
	} {
		_, _, err := runCmd(t, "replay", tc.path)
		var stderr bytes.Buffer
		code := exitCode(&stderr, err)
		msg := stderr.String()
		if code != exitError || !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.path) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%s: exit %d, message %q; want exit 1 and one line with the file and %q", tc.name, code, msg, tc.want)
		}
	}
}

func TestReplayExportUsage(t *testing.T) {
	for _, cmd := range []string{"replay", "export"} {
		out, _, err := runCmd(t, cmd, "--help")
		if !errors.Is(err, errHelp) || !strings.Contains(out, "Usage: hoptrace "+cmd) {
			t.Errorf("%s --help: %v, %q", cmd, err, out)
		}
		_, _, err = runCmd(t, cmd)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%s without a file: %v, want a usage error", cmd, err)
		}
	}
	if _, _, err := runCmd(t, "replay", "-o", "yaml", "x.hop"); !errors.As(err, new(usageError)) {
		t.Errorf("replay -o yaml: %v", err)
	}
	if _, _, err := runCmd(t, "export", "x.hop"); !errors.As(err, new(usageError)) {
		t.Errorf("export without --pcapng: %v", err)
	}
}

func TestExportCommand(t *testing.T) {
	events := tracefiletest.Events(tracefiletest.Options{Packets: 30, DropEvery: 3})
	path := recordingFile(t, events)
	hops := 0
	for _, ev := range events {
		if ev.Hop != nil {
			hops++
		}
	}
	out := filepath.Join(t.TempDir(), "out.pcapng")
	_, stderr, err := runCmd(t, "export", "--pcapng", out, path)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "packets of 30 journeys on 4 interfaces") {
		t.Errorf("stderr %q", stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, _, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			break
		}
		if len(opts.Comments) != 1 || !strings.HasPrefix(opts.Comments[0], "hoptrace journey ") {
			t.Fatalf("comments %q", opts.Comments)
		}
		n++
	}
	if n != hops {
		t.Fatalf("%d packets, want %d", n, hops)
	}
	var names []string
	for i := 0; i < r.NInterfaces(); i++ {
		intf, _ := r.Interface(i)
		names = append(names, intf.Name)
	}
	// The recording lost 3 hops: they are on an interface of their own.
	if got := strings.Join(names, ","); got != "client:eth0,veth1a2b@docker0,veth3c4d@docker0,web:eth0,"+pcapng.LostInterface {
		t.Errorf("interfaces %s", got)
	}

	// Nothing matches: an error, and no file left behind.
	out2 := filepath.Join(t.TempDir(), "none.pcapng")
	if _, _, err := runCmd(t, "export", "--pcapng", out2, "-C", "nobody", path); err == nil {
		t.Fatal("export of nothing succeeded")
	}
	if entries, _ := os.ReadDir(filepath.Dir(out2)); len(entries) != 0 {
		t.Fatalf("left %v behind", entries)
	}
}

// TestReplayContainerRule: -C takes an exact name over an ID prefix, a
// unique ID prefix, and refuses a prefix of several IDs (exit 2, naming
// the candidates).
func TestReplayContainerRule(t *testing.T) {
	events := tracefiletest.Events(tracefiletest.Options{Packets: 4})
	snap := tracefiletest.Snapshot()
	// Both IDs start with "abc"; client is also called by web's ID prefix.
	ids := map[string]string{"client": "abc111", "web": "abc222"}
	for i := range snap.Containers {
		c := &snap.Containers[i]
		c.ID = ids[c.Name] + c.ID[6:]
	}
	for i := range snap.Endpoints {
		if c := snap.Endpoints[i].Container; c != nil {
			cc := *c
			cc.ID = ids[cc.Name] + cc.ID[6:]
			snap.Endpoints[i].Container = &cc
		}
	}
	path := filepath.Join(t.TempDir(), "ids.hop")
	w, err := tracefile.CreateFile(path, testRecordingHeader())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if ev.Hop != nil {
			w.WriteHop(ev.Hop)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCmd(t, "replay", "-o", "json", "-C", "abc", path)
	if code := exitCode(io.Discard, err); code != exitUsage || !strings.Contains(fmt.Sprint(err), "client (abc111") || !strings.Contains(fmt.Sprint(err), "web (abc222") {
		t.Errorf("-C abc: exit %d, %v; want exit %d naming both candidates", code, err, exitUsage)
	}
	out, _, err := runCmd(t, "replay", "-o", "json", "-C", "abc2", path)
	if err != nil || !strings.Contains(out, `"container":"web"`) {
		t.Errorf("-C abc2 (web's prefix): %v\n%.300s", err, out)
	}
}
