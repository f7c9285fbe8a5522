package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hoptrace/hoptrace/tracer/pcapng"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
)

const exportUsage = `Usage: hoptrace export --pcapng OUT [flags] FILE...
       hoptrace export --pcapng OUT [flags] -r FILE [EXPRESSION]

Writes a recording as a pcapng file for Wireshark or tshark. Every hop is one
packet, on an interface named after what it is: web:eth0 (eth0 inside container
web), veth3c4d@docker0 (a bridge port), docker0 (the bridge). Each packet has
its direction (inbound for a TC ingress hook, outbound for egress) and a comment
with its journey ID, hop number, the containers along the way and the time since
the previous hop, e.g.
  hoptrace journey 12 hop 2/4 (+2.1us after hop 1): veth1a2b@docker0 ingress,
  left client, entered docker0; client -> web; delivered
In Wireshark: View > Packet Comments, or the filter frame.comment contains "journey 12".
Every packet's ID (frame.packet_id) is its journey ID, so the filter
frame.packet_id == 12 shows every sighting of one packet. --at IFACE writes
only what one interface saw, as a capture there would have. Interface
statistics at the end count each interface's packets; events the kernel
could not deliver (ring buffer full) are counted as dropped on an interface
of their own, hoptrace:lost.

Packet bytes: a recording made with 'record --snaplen N' keeps the first N bytes
of each packet, and those are exported. Without them (the default, snaplen 0)
hoptrace writes the headers it decoded in the kernel: Ethernet (and VLAN tag),
IPv4/IPv6, TCP/UDP/ICMP or ARP, with the real addresses, ports, flags, sequence
numbers, IP ID and TTL, and the real packet length as the original length; but
no payload, no IP or TCP options, TCP window 65535 and zero L4 checksums, so
Wireshark shows them as cut short by the snaplen ("packet size limited").

Several files are read in order as one recording (the parts of a rotated one).
FILE "-" reads standard input and OUT "-" writes standard output, flushed as
packets are written, so a live capture can be watched in Wireshark:
  hoptrace record -w - | hoptrace export --pcapng - - | wireshark -k -i -
(packets appear a few seconds late: journeys finish out of order, and the
export puts them back in time order). As in tcpdump, -r FILE reads a
recording, and words after it are a filter expression. Notes go to stderr.
Needs neither root nor Docker.

Examples:
  hoptrace export --pcapng x.pcapng x.hop
  hoptrace export --pcapng web.pcapng --at web:eth0 x.hop    one vantage point
  hoptrace export -w - -r x.hop tcp port 80 | tshark -r - -Y 'frame.packet_id == 3'
`

// runExport converts recordings to pcapng.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs, help := newFlagSet("export", exportUsage, stdout, stderr)
	out := fs.StringP("pcapng", "w", "", "write pcapng to this file (\"-\" for standard output); required")
	at := fs.StringArray("at", nil, "write only the packets seen at this interface (web:eth0, veth3c4d, docker0): one vantage point; repeatable")
	var of offlineFlags
	of.register(fs, "export")
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("export: --pcapng OUT is required (see 'hoptrace export --help')")
	}
	files, sel, err := of.selection("export", fs.Args())
	if err != nil {
		return err
	}

	var w io.Writer = stdout
	if *out != "-" {
		// Write next to OUT and rename at the end, so a failed export does
		// not leave a half-written file under the real name.
		f, cerr := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*")
		if cerr != nil {
			return fmt.Errorf("export: %w", cerr)
		}
		defer func() {
			if err != nil {
				f.Close()
				os.Remove(f.Name())
			}
		}()
		w = f
		defer func() {
			if err != nil {
				return
			}
			if err = f.Chmod(0o644); err == nil {
				err = f.Close()
			}
			if err == nil {
				err = os.Rename(f.Name(), *out)
			}
			if err != nil {
				err = fmt.Errorf("export: write %s: %w", *out, err)
				os.Remove(f.Name())
			}
		}()
	}

	src, err := openRecordings("export", files, stderr, of.quiet)
	if err != nil {
		return err
	}
	defer src.Close()
	// To stdout the packets are flushed as they are written, so
	// 'hoptrace record -w - | hoptrace export --pcapng - - | wireshark -k -i -'
	// shows them live.
	counted := &countingWriter{w: w}
	ex := pcapng.New(counted, pcapng.Options{HoptraceVersion: versionString(), Header: src.Header(), At: *at, Stream: *out == "-"})
	sinks := []pipeline.Sink{ex}
	if wantProgress(stdout, stderr, of.quiet, false) {
		sinks = append(sinks, &exportProgress{p: newProgress(stderr, nil), ex: ex, out: counted})
	}
	err = offline(ctx, "export", src, pipeline.Config{Journey: of.journey, Select: sel}, stderr, sinks...)
	switch {
	case errors.Is(err, syscall.EPIPE):
		return nil // the reader went away: a quiet end
	case errors.Is(err, pcapng.ErrNoPackets) && len(*at) > 0:
		return fmt.Errorf("export: no hops to export (nothing recorded, or nothing matched -C/-i/--at)")
	case errors.Is(err, pcapng.ErrNoPackets):
		return fmt.Errorf("export: no hops to export (nothing recorded, or nothing matched -C/-i)")
	case err != nil:
		return err
	}
	if *out == "-" {
		if err := flushOutput(stdout); errors.Is(err, syscall.EPIPE) {
			return nil
		}
	}
	st := ex.Stats()
	if !of.quiet {
		fmt.Fprintf(stderr, "hoptrace: export: %d packets of %d journeys on %d interfaces", st.Packets, st.Journeys, st.Interfaces)
		if st.Synthesized > 0 {
			fmt.Fprintf(stderr, " (%d with headers rebuilt from decoded fields)", st.Synthesized)
		}
		if *out != "-" {
			fmt.Fprintf(stderr, " to %s", *out)
		}
		fmt.Fprintln(stderr)
		if l := st.Loss; l.Total() > 0 {
			fmt.Fprintf(stderr, "hoptrace: export: the recording lost %d hops and %d drops (kernel ring buffer full)\n", l.Hops, l.Drops)
		}
	}
	return nil
}
