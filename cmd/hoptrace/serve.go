package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hoptrace/hoptrace/tracer"
	"github.com/hoptrace/hoptrace/tracer/capture"
	"github.com/hoptrace/hoptrace/tracer/metrics"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
)

const serveUsage = `Usage: hoptrace serve [flags] [EXPRESSION]

Always-on latency and drop metrics for Prometheus. serve hooks what trace
hooks (the same -C, -i and filter EXPRESSION), follows containers as they
come and go, and serves /metrics (Prometheus text and OpenMetrics) and
/healthz until SIGINT or SIGTERM.

The packets are counted in the kernel: latency histograms between
consecutive hooks and from a packet's first to its last hook, packets per
path and drops by reason. No event per packet reaches user space; the
counts are read when Prometheus scrapes. Series are named by container,
interface, bridge and network, never by address or port, and those of
removed containers go. docs/metrics.md lists the metrics.

Timing a packet costs more than counting it: each CPU times up to
--timed-rate new packets a second one by one, and past that one packet in
8, counted 8 times. Under a flood the histograms are then an estimate,
while hoptrace_packets_total and the drop counts stay exact. With
--timed-rate 0 every packet is timed.

serve listens on 127.0.0.1:9464 unless --listen says otherwise: exposing
the metrics on another address is an explicit choice.

Examples:
  hoptrace serve                               every Docker bridge
  hoptrace serve --listen 127.0.0.1:9500 -C web tcp port 8080
`

// A CPU times every packet up to defaultTimedRate new packets a second
// and one in timeOneIn past that: timing a packet (a clock read and a
// histogram update at each hook) costs more than following it.
const (
	defaultTimedRate = tracer.DefaultTimedPerCPU
	timeOneIn        = tracer.DefaultTimeOneIn
)

// serveIgnored are capture flags that mean nothing to serve.
var serveIgnored = []string{"count", "journey-timeout", "ring-bytes", "metrics-addr"}

// runServe serves the kernel's aggregates as Prometheus metrics.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs, help := newFlagSet("serve", serveUsage, stdout, stderr)
	var cf captureFlags
	cf.register(fs)
	for _, name := range serveIgnored {
		_ = fs.MarkHidden(name)
	}
	listen := fs.String("listen", "127.0.0.1:9464", "serve /metrics and /healthz on this address")
	timedRate := fs.Int("timed-rate", defaultTimedRate, "new packets a second each CPU times one by one; past that one in 8 (0: time every packet)")
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	if *timedRate < 0 {
		return usagef("serve: --timed-rate %d: want 0 (every packet) or more", *timedRate)
	}
	for _, name := range serveIgnored {
		if fs.Changed(name) {
			return usagef("serve: --%s has no meaning for serve", name)
		}
	}
	if err := cf.validate(fs); err != nil {
		return err
	}
	log := logger(stderr, cf.quiet, cf.verifierLog)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := checkPrivileges("serve", privileges{netAdmin: true, bpf: true, docker: !cf.noDocker}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer ln.Close()

	cfg := cf.config(log)
	cfg.Tracer.Aggregate = true
	cfg.Tracer.TimedPerCPU = *timedRate
	cfg.Tracer.TimeOneIn = timeOneIn
	cfg.Tracer.RingBufferBytes = 1 // the least: no events go through it
	// Nothing to drain: the reader only looks now and then, and a stop
	// still ends it within this.
	cfg.Tracer.DrainInterval = 250 * time.Millisecond
	sess, err := capture.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", explainVerifier(err, cf.verifierLog))
	}
	defer func() { err = errors.Join(err, closeSession("serve", sess)) }()
	// --duration counts once every hook is attached.
	if cf.duration > 0 {
		defer time.AfterFunc(cf.duration, cancel).Stop()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.NewCollector(sess.Metrics, versionString()),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	srv := &http.Server{Handler: serveMux(reg), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	ran := make(chan error, 1)
	go func() { ran <- sess.Run(ctx, capture.Discard{}) }()

	if err := writeReady(cf.readyFile); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info(fmt.Sprintf("serving http://%s/metrics: %d interfaces hooked (%s); Ctrl-C to stop", ln.Addr(), len(sess.Attached()), sess.Features()))

	var runErr error
	runEnded := false
	select {
	case <-ctx.Done():
	case runErr = <-ran:
		runEnded = true
	case runErr = <-served:
	}
	cancel()
	if !runEnded {
		// Run ends with ctx (after draining for at most a moment); the
		// session is closed only after it, never under it.
		if err := <-ran; runErr == nil {
			runErr = err
		}
	}
	shut, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	shutErr := srv.Shutdown(shut)
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", runErr)
	}
	if shutErr != nil {
		return fmt.Errorf("serve: stop http server: %w", shutErr)
	}
	return nil
}

// serveMux routes /metrics (text or OpenMetrics, as the scraper asks) and
// /healthz.
func serveMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "hoptrace serve: metrics at /metrics, health at /healthz")
	})
	return mux
}

// startMetrics serves the journeys of a live capture as metrics on addr
// (--metrics-addr of trace, record and latency): the same metrics as serve,
// counted from the journeys assembled in user space. stop shuts the server.
func startMetrics(addr string, sess *capture.Session) (sink pipeline.Sink, stop func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	var (
		mu   sync.Mutex // scrapes may overlap
		last metrics.Lost
	)
	js := metrics.NewJourneys(versionString(), func() metrics.Lost {
		mu.Lock()
		defer mu.Unlock()
		// Metrics, not Loss: it is safe once the session is closed.
		if st, err := sess.Metrics(); err == nil {
			last = st.Lost
		}
		return last
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(js, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := &http.Server{Handler: serveMux(reg), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return js, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	}, nil
}
