// Command hoptrace traces packets hop by hop across Docker's bridge networking.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// gcPercent and memoryLimit are the collector's settings unless the user
// sets GOGC or GOMEMLIMIT: journeys are made and dropped at the packet
// rate, and at Go's default (100) the collector took ~20% of `trace -o
// json`'s CPU (BenchmarkTraceJSON: ~1000 ns a hop at 100, ~750 at 400).
// The live heap is small (journeys in flight, the topology), so 400 costs
// little memory; the limit makes the collector run sooner if it ever is not.
//
// maxProcs is GOMAXPROCS unless the user sets it. The capture is one
// goroutine (rings, journeys, output); the others (the output's write(2),
// signals, Docker events) mostly wait. With a P per CPU, every wakeup of
// one of them had idle threads spin, steal, and sleep again in futex and
// nanosleep: on a 2-CPU host under iperf3, `trace -o json` spent ~1.5 s of
// CPU in 6 s with 12k context switches, ~1.25 s and 5.5k with one P.
const (
	gcPercent   = 400
	memoryLimit = 1 << 30
	maxProcs    = 1
)

// tuneRuntime applies gcPercent, memoryLimit and maxProcs where the
// environment does not say otherwise.
func tuneRuntime(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(maxProcs)
	}
}

// version is stamped at build time with -ldflags "-X main.version=...";
// without, versionString asks the build info.
var version = "dev"

func main() {
	// A closed stdout (hoptrace trace | head) must end the capture through
	// the normal path, detaching every hook, not kill the process.
	signal.Ignore(syscall.SIGPIPE)
	tuneRuntime(os.Getenv)
	// Writes that block (nobody reads stdout) must not keep a stop from
	// ending the process: see output.go.
	stdout, stderr := newOutWriter(os.Stdout, outBufferBytes), newOutWriter(os.Stderr, outBufferBytes)
	ctx, cancel := context.WithCancel(context.Background())
	go onSignals(cancel, stdout, stderr)
	err := run(ctx, os.Args[1:], stdout, stderr)
	code := exitCode(stderr, err)
	_ = stdout.Flush()
	_ = stderr.Flush()
	os.Exit(code)
}

// onSignals turns the first SIGINT or SIGTERM into a stop: the command ends
// its work (a capture detaches its hooks and prints its summary) and its
// output has stopGrace to be read. A second one stops the waiting for
// readers of the output, so the process exits as soon as the hooks are
// detached.
func onSignals(stop context.CancelFunc, stdout, stderr *outWriter) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	<-sigs
	stop()
	giveUpBy(time.Now().Add(stopGrace), stdout, stderr)
	<-sigs
	giveUpBy(time.Now(), stdout, stderr)
	fmt.Fprintln(stderr, "hoptrace: second interrupt: not waiting for output to be read")
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // bad flags or arguments
)

// usageError marks errors caused by bad command-line input.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// errHelp is returned when --help was asked for and printed.
var errHelp = errors.New("help requested")

func exitCode(stderr io.Writer, err error) int {
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, syscall.EPIPE):
		// The reader of our output went away (hoptrace ... | head): the
		// normal end of a pipeline, not a failure worth a word.
		return exitOK
	}
	fmt.Fprintf(stderr, "hoptrace: %v\n", err)
	var ue usageError
	var amb *topology.AmbiguousError
	if errors.As(err, &ue) || errors.As(err, &amb) {
		return exitUsage // an ambiguous --container is bad input too
	}
	return exitError
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"links", "show the bridge topology: bridges, veths, peers, containers", runLinks},
		{"trace", "trace packets live, one journey per packet", runTrace},
		{"record", "capture journeys to a file for later analysis", runRecord},
		{"replay", "print journeys from a recording", runReplay},
		{"latency", "per-path and per-hop latency percentiles, live or from a recording", runLatency},
		{"export", "export a recording to pcapng for Wireshark", runExport},
		{"check", "what this host offers: kernel features, capabilities, Docker", runCheck},
		{"serve", "serve Prometheus metrics of latency and drops, aggregated in the kernel", runServe},
		{"cleanup", "remove legacy TC filters left behind by a killed hoptrace", runCleanup},
		{"version", "print the version", runVersion},
		{"help", "show the help of a command: hoptrace help trace", runHelp},
		{"completion", "print a shell completion script: bash, zsh or fish", runCompletion},
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, `hoptrace shows the path each packet takes across Docker's bridge networking:
container eth0 -> host veth -> bridge -> host veth -> container eth0, with the time
between hops, and where and why a packet was dropped.

Usage: hoptrace <command> [flags] [args]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'hoptrace help <command>' (or 'hoptrace <command> --help') for the flags of a command.\n")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return usagef("no command given")
	}
	name := args[0]
	switch name {
	case "-h", "--help":
		printUsage(stdout)
		return nil
	case "help":
		return runHelp(ctx, args[1:], stdout, stderr)
	case "--version", "-V":
		name = "version"
	case "__complete":
		// Hidden: the completion scripts' helper.
		return runComplete(ctx, args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	return usagef("unknown command %q (run 'hoptrace --help' for the list)", name)
}

// runHelp is 'hoptrace help [CMD]': the overview, or CMD --help.
func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) == 0:
		printUsage(stdout)
		return nil
	case len(args) > 1:
		return usagef("help: one command at a time (run 'hoptrace help' for the list)")
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, []string{"--help"}, stdout, stderr)
		}
	}
	return usagef("help: unknown command %q (run 'hoptrace help' for the list)", args[0])
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return usagef("version: unexpected argument %q", args[0])
	}
	fmt.Fprintf(stdout, "hoptrace %s\n", versionString())
	return nil
}

// versionString is the version stamped by 'make build' (-X main.version),
// else what the Go toolchain recorded: the module version of 'go install
// ...@v1.2.3', or the VCS revision and time of a plain 'go build' in a
// checkout (with "+dirty" for uncommitted changes).
func versionString() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	return versionFromBuildInfo(bi)
}

func versionFromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return version
	}
	v := "dev-" + rev[:min(12, len(rev))]
	if dirty {
		v += "+dirty"
	}
	if at != "" {
		v += " (" + at + ")"
	}
	return v
}
