package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/resolver"
	"github.com/hoptrace/hoptrace/tracer"
)

const checkUsage = `Usage: hoptrace check [flags]

Checks what this host offers hoptrace, one line each, saying what works and
what degrades: the kernel's BTF, the capabilities of this process, whether the
BPF programs load (with the ring buffer), TCX attach, the per-packet skb key,
drop reasons, and whether Docker answers. It loads the programs for a moment
and attaches nothing to any interface.

Exit status 0 when 'hoptrace trace' can run here (perhaps with less), 1 when
it cannot; replay, latency FILE and export need none of this.

Examples:
  hoptrace check
  sudo hoptrace check --docker-host unix:///run/docker.sock
`

// checkLine is one finding: what, whether it works, and what that means.
type checkLine struct {
	what string
	ok   bool
	note string
	// fatal: tracing cannot run without it.
	fatal bool
	// off: not looked at, as asked (--no-docker).
	off bool
}

// checkProbes look at the host; variables of a check so tests can pose as
// any host.
type checkProbes struct {
	kernel func() string
	btf    func() error
	caps   func() (all, missing []string, err error)
	load   func() (tracer.Features, error)
	docker func(ctx context.Context) (host string, err error)
}

func hostProbes(dockerHost string, noDocker bool) checkProbes {
	return checkProbes{
		kernel: func() string {
			var uts unix.Utsname
			if unix.Uname(&uts) != nil {
				return "unknown"
			}
			return unix.ByteSliceToString(uts.Release[:]) + " (" + unix.ByteSliceToString(uts.Machine[:]) + ")"
		},
		btf: func() error {
			_, err := os.Stat("/sys/kernel/btf/vmlinux")
			return err
		},
		caps: privileges{netAdmin: true, bpf: true, docker: !noDocker}.missing,
		load: func() (tracer.Features, error) {
			t, err := tracer.Load(tracer.Options{})
			if err != nil {
				return tracer.Features{}, err
			}
			f := t.Features()
			return f, t.Close()
		},
		docker: func(ctx context.Context) (string, error) {
			if noDocker {
				return "", resolver.ErrNoDocker
			}
			d, err := resolver.NewDocker(dockerHost)
			if err != nil {
				return dockerHost, err
			}
			defer d.Close()
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			return d.Host(), d.Ping(ctx)
		},
	}
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("check", checkUsage, stdout, stderr)
	dockerHost := fs.String("docker-host", "", "Docker daemon address (default $DOCKER_HOST, else unix:///var/run/docker.sock)")
	noDocker := fs.Bool("no-docker", false, "do not ask Docker")
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("check: unexpected argument %q", fs.Arg(0))
	}
	lines := runProbes(ctx, hostProbes(*dockerHost, *noDocker))
	if err := writeCheck(stdout, lines); err != nil {
		return err
	}
	var fatal []string
	for _, l := range lines {
		if l.fatal {
			fatal = append(fatal, l.what)
		}
	}
	if len(fatal) > 0 {
		return fmt.Errorf("check: hoptrace cannot trace on this host as it is (%s)", strings.Join(fatal, ", "))
	}
	return nil
}

// runProbes turns the probes' answers into lines, in the order a reader
// fixes them: kernel, privileges, then what the kernel offers, then Docker.
func runProbes(ctx context.Context, p checkProbes) []checkLine {
	lines := []checkLine{{what: "kernel", ok: true, note: p.kernel()}}

	btfErr := p.btf()
	if btfErr == nil {
		lines = append(lines, checkLine{what: "BTF", ok: true, note: "/sys/kernel/btf/vmlinux: the programs are relocated for this kernel (CO-RE)"})
	} else {
		lines = append(lines, checkLine{what: "BTF", fatal: true, note: "no /sys/kernel/btf/vmlinux: tracing needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (>= 5.8)"})
	}

	all, missing, err := p.caps()
	switch {
	case err != nil:
		lines = append(lines, checkLine{what: "capabilities", ok: true, note: fmt.Sprintf("cannot read them (%v): the kernel will say", err)})
	case len(missing) == 0:
		lines = append(lines, checkLine{what: "capabilities", ok: true, note: "has " + andList(all) + ": trace, record, latency, links and cleanup can run"})
	default:
		lines = append(lines, checkLine{what: "capabilities", fatal: true, note: fmt.Sprintf("missing %s: run as root, or with %s (replay, latency FILE and export need none)",
			strings.Join(missing, ", "), andList(all))})
	}

	feat, loadErr := p.load()
	switch {
	case loadErr == nil:
		lines = append(lines, checkLine{what: "BPF programs", ok: true, note: "load and pass the verifier"},
			checkLine{what: "ring buffer", ok: true, note: "events reach user space; losses are counted and shown"})
		lines = append(lines, featureLines(feat)...)
	case errors.Is(loadErr, tracer.ErrPermission) || len(missing) > 0:
		lines = append(lines, checkLine{what: "BPF programs", fatal: true, note: "not permitted to load them: run 'hoptrace check' as root to see TCX, skb key, drop reasons and the ring buffer"})
	case btfErr != nil || errors.Is(loadErr, tracer.ErrNoBTF):
		lines = append(lines, checkLine{what: "BPF programs", fatal: true, note: "cannot load without BTF"})
	default:
		lines = append(lines, checkLine{what: "BPF programs", fatal: true, note: fmt.Sprintf("do not load: %s", oneLine(loadErr))})
	}

	host, dockerErr := p.docker(ctx)
	switch {
	case errors.Is(dockerErr, resolver.ErrNoDocker):
		lines = append(lines, checkLine{what: "Docker", off: true, note: "not asked (--no-docker): namespaces are named, containers are not"})
	case dockerErr != nil:
		lines = append(lines, checkLine{what: "Docker", note: fmt.Sprintf("not reachable at %s (%s): namespaces are named from /run/netns and Docker's netns directory, containers are not; start dockerd or give --docker-host",
			host, oneLine(dockerErr))})
	default:
		lines = append(lines, checkLine{what: "Docker", ok: true, note: fmt.Sprintf("answers at %s: interfaces are named after containers, and new ones are followed", host)})
	}
	return lines
}

// featureLines say what each kernel feature gives, or what replaces it.
func featureLines(f tracer.Features) []checkLine {
	lines := make([]checkLine, 0, 3)
	if f.TCX {
		lines = append(lines, checkLine{what: "TCX", ok: true, note: "hooks attach as BPF links and vanish with the process"})
	} else {
		lines = append(lines, checkLine{what: "TCX", note: "no (kernel < 6.6): clsact qdiscs and hoptrace-* cls_bpf filters instead; after a SIGKILL run 'hoptrace cleanup'"})
	}
	if f.SkbKey {
		lines = append(lines, checkLine{what: "skb key", ok: true, note: "the hops of a packet are joined by the kernel's skb"})
	} else {
		lines = append(lines, checkLine{what: "skb key", note: "no (kernel < 6.3): the hops of a packet are joined by content and time"})
	}
	if f.Drops {
		lines = append(lines, checkLine{what: "drop reasons", ok: true, note: "drops are shown with the kernel's reason names"})
	} else {
		lines = append(lines, checkLine{what: "drop reasons", note: "no (kernel < 5.17): drops are not reported"})
	}
	return lines
}

// writeCheck prints the lines as a table: what, yes/no, note.
func writeCheck(w io.Writer, lines []checkLine) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range lines {
		state := "no"
		switch {
		case l.off:
			state = "off"
		case l.ok:
			state = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", l.what, state, l.note)
	}
	return tw.Flush()
}

// oneLine is an error's first line (a verifier log has many).
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
