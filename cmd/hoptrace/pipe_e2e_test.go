package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// livePipe is 'hoptrace record -w - ARGS | hoptrace export --pcapng - - |
// READER', READER being 'tshark -l -r - -T fields -e frame.interface_name
// -e frame.packet_id', or (without tshark, as in the VMs) pcapgo reading
// the stream as it comes and writing the same two fields.
type livePipe struct {
	record, export, tshark *exec.Cmd
	recErr, expErr         *lockedBuffer
	out                    *lockedBuffer // the reader's lines: interface, packet ID
	done                   chan struct{}
	errs                   [3]error
}

func startLivePipe(t *testing.T, useTshark bool, recordArgs ...string) *livePipe {
	t.Helper()
	var tshark string
	if useTshark {
		tshark = testenv.RequireCommand(t, "tshark")
	}
	bin := hoptraceBinary(t)
	ready := filepath.Join(t.TempDir(), "ready")
	p := &livePipe{recErr: &lockedBuffer{}, expErr: &lockedBuffer{}, out: &lockedBuffer{}, done: make(chan struct{})}
	p.record = exec.Command(bin, append([]string{"record", "-w", "-", "--ready-file", ready}, recordArgs...)...)
	p.export = exec.Command(bin, "export", "--pcapng", "-", "-")
	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.record.Stdout, p.record.Stderr = w1, p.recErr
	p.export.Stdin, p.export.Stdout, p.export.Stderr = r1, w2, p.expErr
	cmds := []*exec.Cmd{p.record, p.export}
	if useTshark {
		p.tshark = exec.Command(tshark, "-l", "-r", "-", "-T", "fields", "-e", "frame.interface_name", "-e", "frame.packet_id")
		p.tshark.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
		p.tshark.Stdin, p.tshark.Stdout = r2, p.out
		cmds = append(cmds, p.tshark)
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// Only the processes (and the pcapgo reader) hold the pipes now.
	for _, f := range []*os.File{r1, w1, w2} {
		f.Close()
	}
	readerDone := make(chan error, 1)
	if useTshark {
		r2.Close()
		close(readerDone)
	} else {
		go func() { readerDone <- readFields(r2, p.out); r2.Close() }()
	}
	go func() {
		for i, c := range cmds {
			p.errs[i] = c.Wait()
		}
		if err := <-readerDone; err != nil {
			p.errs[2] = err
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			for _, c := range cmds {
				_ = c.Process.Kill()
			}
			<-p.done
		}
	})
	for deadline := time.Now().Add(readyWithin); ; {
		if _, err := os.Stat(ready); err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("record -w - not ready after %v\nstderr: %s", readyWithin, p.recErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readFields reads a pcapng stream as it comes and writes each packet's
// interface name and packet ID, as tshark -T fields does.
func readFields(r io.Reader, out io.Writer) error {
	ng, err := pcapgo.NewNgReader(r, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		return fmt.Errorf("read pcapng: %w", err)
	}
	for {
		_, ci, opts, err := ng.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read pcapng: %w", err)
		}
		intf, _ := ng.Interface(ci.InterfaceIndex)
		id := ""
		if opts.PacketID != nil {
			id = fmt.Sprint(*opts.PacketID)
		}
		fmt.Fprintf(out, "%s\t%s\n", intf.Name, id)
	}
}

// seen is what the reader printed so far: packets per interface, and how many
// packets each packet ID (journey) has.
func (p *livePipe) seen() (ifaces map[string]int, ids map[string]int) {
	ifaces, ids = map[string]int{}, map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(p.out.Bytes())), "\n") {
		name, id, ok := strings.Cut(l, "\t")
		if !ok {
			continue
		}
		ifaces[name]++
		ids[id]++
	}
	return ifaces, ids
}

// stop interrupts record as Ctrl-C does; export and the reader end at the
// end of their input. All three must end cleanly.
func (p *livePipe) stop(t *testing.T) {
	t.Helper()
	_ = p.record.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the pipeline did not end within 20s of SIGINT to record\nrecord: %s\nexport: %s", p.recErr, p.expErr)
	}
	for i, name := range []string{"record", "export", "reader"} {
		if p.errs[i] != nil {
			t.Errorf("%s: %v\nrecord: %s\nexport: %s", name, p.errs[i], p.recErr, p.expErr)
		}
	}
	// record's summary on stderr; export's note on stderr.
	if !strings.Contains(p.recErr.String(), "hops") || strings.Contains(p.recErr.String(), "recorded to") {
		t.Errorf("record -w - stderr: %s", p.recErr)
	}
	if !strings.Contains(p.expErr.String(), "export: ") {
		t.Errorf("export stderr: %s", p.expErr)
	}
}

// waitLive drives traffic until the reader has shown packets on every wanted
// interface and at least one packet ID shared by several packets (one
// packet's hops), all while the capture still runs.
func (p *livePipe) waitLive(t *testing.T, want []string, traffic func()) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		traffic()
		ifaces, ids := p.seen()
		shared := 0
		for _, n := range ids {
			if n >= 2 {
				shared++
			}
		}
		missing := []string{}
		for _, w := range want {
			if ifaces[w] == 0 {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 && shared > 0 {
			t.Logf("live through the pipe: %v; %d journeys with several packets", ifaces, shared)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s of traffic the reader shows %v (missing %v), %d shared packet IDs\nrecord: %s\nexport: %s",
				ifaces, missing, shared, p.recErr, p.expErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestLivePipeNetns: the pipeline on namespaces without Docker, read by
// pcapgo as it comes (it runs in the VM tests too, which have no tshark):
// the namespace-named interfaces and shared packet IDs, live.
func TestLivePipeNetns(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	p := startLivePipe(t, false, "--no-docker", "-q", "icmp", "and", "host", b.IP.String())
	id := uint16(0x5300)
	p.waitLive(t, []string{a.Name + ":eth0", b.Name + ":eth0", a.HostVeth + "@" + topo.Bridge}, func() {
		id++
		a.Ping(t, b.IP, 1, id)
	})
	p.stop(t)
}

// TestLivePipeDocker is the pipeline with real containers:
// 'hoptrace record -w - | hoptrace export --pcapng - - | tshark -r -' shows
// container-named interfaces and packet IDs shared by one packet's hops
// while traffic flows.
func TestLivePipeDocker(t *testing.T) {
	web, client := webAndClient(t)
	p := startLivePipe(t, true, "-q", "-C", client.Name, "tcp", "port", "8080")
	url := "http://" + web.IP().String() + ":8080/"
	p.waitLive(t, []string{client.Name + ":eth0", web.Name + ":eth0"}, func() {
		if err := wget(client.Name, url); err != nil {
			t.Fatal(err)
		}
	})
	p.stop(t)
}

// TestRecordDevNull: record -w /dev/null ends cleanly (it used to fail
// syncing /dev/null at the end).
func TestRecordDevNull(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	run := startHoptrace(t, "record", "-w", "/dev/null", "--no-docker", "-q", "icmp", "and", "host", b.IP.String())
	a.Ping(t, b.IP, 2, 0x5400)
	if err := run.stop(t); err != nil {
		t.Fatalf("record -w /dev/null: %v\n%s", err, run.stderr)
	}
	if !strings.Contains(run.stderr.String(), "recorded to /dev/null") {
		t.Errorf("stderr: %s", run.stderr)
	}
	if bytes.Contains(run.stdout.Bytes(), []byte("hops")) {
		t.Errorf("stdout: %s", run.stdout)
	}
}
