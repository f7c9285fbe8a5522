package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/hoptrace/hoptrace/resolver"
	"github.com/hoptrace/hoptrace/tracer"
	"github.com/hoptrace/hoptrace/tracer/capture"
	"github.com/hoptrace/hoptrace/tracer/filter"
	"github.com/hoptrace/hoptrace/tracer/journey"
)

// newFlagSet makes a subcommand's flag set whose --help prints the usage text
// and the flags to stdout.
func newFlagSet(name, usage string, stdout, stderr io.Writer) (*pflag.FlagSet, *bool) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(stderr)
	help := fs.BoolP("help", "h", false, "show this help")
	fs.Usage = func() {
		fmt.Fprint(stdout, usage, "\nFlags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	return fs, help
}

// parseFlags parses args, turning --help into errHelp and bad flags into usage errors.
func parseFlags(fs *pflag.FlagSet, help *bool, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fs.Usage()
			return errHelp
		}
		return usagef("%s: %v (see 'hoptrace %s --help')", fs.Name(), err, fs.Name())
	}
	if *help {
		fs.Usage()
		return errHelp
	}
	return nil
}

// captureFlags are the selection and tracer flags shared by trace, record and live latency.
type captureFlags struct {
	containers      []string
	ifaces          []string
	noContainerSide bool
	legacy          bool
	dockerHost      string
	noDocker        bool
	ringBytes       int
	count           int
	duration        time.Duration
	readyFile       string
	metricsAddr     string
	timeout         time.Duration
	quiet           bool
	verifierLog     string
	snaplen         uint32 // record only
	filter          *filter.Program
}

func (c *captureFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&c.containers, "container", "C", nil, "trace the bridges this container (name or ID) is on and show only its journeys; repeatable")
	fs.StringArrayVarP(&c.ifaces, "iface", "i", nil, "trace this host interface (e.g. eth0): with -C besides those containers' bridges, without -C instead of the Docker bridges; +eth0 adds it to every Docker bridge; repeatable")
	fs.IntVarP(&c.count, "count", "c", 0, "stop after this many journeys (0: no limit)")
	fs.DurationVar(&c.duration, "duration", 0, "stop after this long, e.g. 30s (0: until Ctrl-C)")
	fs.BoolVar(&c.noContainerSide, "no-container-side", false, "do not hook eth0 inside containers (host side only)")
	fs.BoolVar(&c.legacy, "legacy", false, "attach with clsact/cls_bpf filters even where TCX exists")
	fs.IntVar(&c.ringBytes, "ring-bytes", 0, "each CPU's ring buffer size in bytes, rounded up to a power of two (default 16 MiB shared out, 2 to 4 MiB a CPU), behind a 256 KiB ring a CPU that events go to first")
	fs.DurationVar(&c.timeout, "journey-timeout", journey.DefaultTimeout, "finish a journey that saw no hop for this long")
	fs.StringVar(&c.readyFile, "ready-file", "", "create this file once every hook is attached (for scripts and tests)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "also serve Prometheus metrics of the journeys on this address, e.g. 127.0.0.1:9464 (docs/metrics.md)")
	fs.StringVar(&c.dockerHost, "docker-host", "", "Docker daemon address (default $DOCKER_HOST, else unix:///var/run/docker.sock)")
	fs.BoolVar(&c.noDocker, "no-docker", false, "do not ask Docker; name namespaces only")
	fs.BoolVarP(&c.quiet, "quiet", "q", false, "no progress notes on stderr")
	fs.StringVar(&c.verifierLog, "verifier-log", "", "if the kernel's verifier rejects a BPF program, write its full log to this file")
	tcpdumpHabits(fs)
}

func (c *captureFlags) validate(fs *pflag.FlagSet) error {
	if c.count < 0 {
		return usagef("%s: -c must not be negative", fs.Name())
	}
	if c.duration < 0 {
		return usagef("%s: --duration must not be negative", fs.Name())
	}
	// Trailing arguments are a filter expression, as in tcpdump.
	f, err := filter.Compile(strings.Join(fs.Args(), " "))
	if err != nil {
		return usagef("%s: %v (see 'hoptrace %s --help')", fs.Name(), err, fs.Name())
	}
	c.filter = f
	return nil
}

func (c *captureFlags) config(log *slog.Logger) capture.Config {
	// "-i +eth0": eth0 besides everything Docker, not instead of it.
	var ifaces []string
	all := false
	for _, i := range c.ifaces {
		if name, ok := strings.CutPrefix(i, "+"); ok {
			i, all = name, true
		}
		ifaces = append(ifaces, i)
	}
	cfg := capture.Config{
		Containers:      c.containers,
		Ifaces:          ifaces,
		AllBridges:      all,
		NoContainerSide: c.noContainerSide,
		Tracer:          tracer.Options{ForceLegacy: c.legacy, RingBufferBytes: c.ringBytes, Snaplen: c.snaplen, Filter: c.filter},
		Resolver:        resolver.Options{DockerHost: c.dockerHost},
		Logger:          log,
	}
	if c.noDocker {
		cfg.Resolver.Docker = resolver.NoDocker{}
	}
	return cfg
}

func (c *captureFlags) journeyConfig(hostNetns uint32) journey.Config {
	return journey.Config{Timeout: c.timeout, HostNetnsIno: hostNetns}
}

// logger writes warnings (and notes unless quiet) to stderr as one plain
// line each: "hoptrace: <message> key=value ...".
// An error carrying the verifier's log is shortened to one line, the log
// written to verifierLog (if set).
func logger(stderr io.Writer, quiet bool, verifierLog string) *slog.Logger {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	return slog.New(&lineHandler{w: stderr, level: level, verifierLog: verifierLog})
}

type lineHandler struct {
	mu          sync.Mutex
	w           io.Writer
	level       slog.Level
	attrs       []slog.Attr
	verifierLog string
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("hoptrace: ")
	if r.Level >= slog.LevelWarn {
		b.WriteString(strings.ToLower(r.Level.String()) + ": ")
	}
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		var v any = a.Value
		if err, ok := a.Value.Any().(error); ok && a.Value.Kind() == slog.KindAny {
			v = explainVerifier(err, h.verifierLog)
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, v)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineHandler{w: h.w, level: h.level, attrs: append(slices.Clip(h.attrs), as...), verifierLog: h.verifierLog}
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }

// writeReady creates the --ready-file.
func writeReady(path string) error {
	if path == "" {
		return nil
	}
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("write ready file: %w", err)
	}
	return nil
}

// useColor decides colour: only on a terminal, never with --no-color or NO_COLOR.
func useColor(w io.Writer, noColor bool) bool {
	if noColor || os.Getenv("NO_COLOR") != "" {
		return false
	}
	return isTerminal(w)
}

// packetFilter compiles a --filter expression for offline use (replay,
// export, latency of a recording): a journey is kept when its packet, as
// first seen, matches, just as the kernel decides live. Empty: nil.
func packetFilter(cmd, expr string) (journey.PacketMatcher, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, nil
	}
	p, err := filter.Compile(expr)
	if err != nil {
		return nil, usagef("%s: %v", cmd, err)
	}
	return p, nil
}
