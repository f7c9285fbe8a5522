// Command pingpong is a 1-byte TCP request/response load generator, the W3
// workload of the benchmark harness (cmd/benchharness): the client sends one
// byte, waits for the server's one-byte answer, and repeats, on one connection
// (like netperf's TCP_RR). It reports transactions per second and the p50, p99
// and p99.9 round-trip latency.
//
//	pingpong server -l :7777
//	pingpong client -c 172.17.0.3:7777 -d 5s [-json]
//
// The server answers every connection until it is stopped (SIGINT/SIGTERM).
// The client's result is one line of text, or with -json one JSON object:
//
//	{"transactions":123456,"seconds":5.000,"tps":24691.2,"p50_us":38.1,"p99_us":61.0,"p999_us":140.2}
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "pingpong: %v\n", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: pingpong server -l ADDR | pingpong client -c ADDR [-d DURATION] [-json]")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "server":
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		fs.SetOutput(stderr)
		listen := fs.String("l", ":7777", "listen on this address")
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		fmt.Fprintf(stderr, "pingpong: serving on %s\n", ln.Addr())
		return serve(ctx, ln)
	case "client":
		fs := flag.NewFlagSet("client", flag.ContinueOnError)
		fs.SetOutput(stderr)
		addr := fs.String("c", "", "server address HOST:PORT (required)")
		dur := fs.Duration("d", 5*time.Second, "run for this long")
		asJSON := fs.Bool("json", false, "print the result as one JSON object")
		if err := fs.Parse(args[1:]); err != nil || *addr == "" || *dur <= 0 {
			return errUsage
		}
		res, err := client(ctx, *addr, *dur)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(res)
		}
		_, err = fmt.Fprintf(stdout, "%d transactions in %.3fs: %.1f/s, p50 %.1fus, p99 %.1fus, p99.9 %.1fus\n",
			res.Transactions, res.Seconds, res.TPS, res.P50us, res.P99us, res.P999us)
		return err
	}
	return errUsage
}

// serve echoes one byte for each byte read, on every connection, until ctx ends.
func serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		go func() {
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			var b [1]byte
			for {
				if _, err := io.ReadFull(c, b[:]); err != nil {
					return
				}
				if _, err := c.Write(b[:]); err != nil {
					return
				}
			}
		}()
	}
}

// Result is what a client run measured.
type Result struct {
	Transactions int     `json:"transactions"`
	Seconds      float64 `json:"seconds"`
	TPS          float64 `json:"tps"`
	P50us        float64 `json:"p50_us"`
	P99us        float64 `json:"p99_us"`
	P999us       float64 `json:"p999_us"`
}

// client runs transactions back to back for dur and measures each one.
func client(ctx context.Context, addr string, dur time.Duration) (Result, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Result{}, fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	// Go sets TCP_NODELAY by default; a stop closes the connection to end a
	// blocked read.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	lat := make([]time.Duration, 0, 1<<20)
	var b [1]byte
	start := time.Now()
	end := start.Add(dur)
	for {
		t0 := time.Now()
		if !t0.Before(end) {
			break
		}
		if _, err := c.Write(b[:]); err != nil {
			return Result{}, interrupted(ctx, fmt.Errorf("write: %w", err))
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return Result{}, interrupted(ctx, fmt.Errorf("read: %w", err))
		}
		lat = append(lat, time.Since(t0))
	}
	return summarize(lat, time.Since(start)), nil
}

func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return err
}

// summarize turns per-transaction latencies into a Result (sorts lat).
func summarize(lat []time.Duration, elapsed time.Duration) Result {
	r := Result{Transactions: len(lat), Seconds: elapsed.Seconds()}
	if elapsed > 0 {
		r.TPS = float64(len(lat)) / elapsed.Seconds()
	}
	if len(lat) == 0 {
		return r
	}
	slices.Sort(lat)
	us := func(q float64) float64 {
		i := int(q * float64(len(lat)-1))
		return float64(lat[i]) / 1e3
	}
	r.P50us, r.P99us, r.P999us = us(0.50), us(0.99), us(0.999)
	return r
}
