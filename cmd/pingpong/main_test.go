package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- { // 100us .. 1us, unsorted
		lat = append(lat, time.Duration(i)*time.Microsecond)
	}
	r := summarize(lat, 2*time.Second)
	if r.Transactions != 100 || r.TPS != 50 {
		t.Errorf("transactions %d tps %v, want 100 and 50", r.Transactions, r.TPS)
	}
	if r.P50us != 50 || r.P99us != 99 || r.P999us != 99 {
		t.Errorf("p50 %v p99 %v p99.9 %v, want 50 99 99", r.P50us, r.P99us, r.P999us)
	}
	if z := summarize(nil, time.Second); z.Transactions != 0 || z.P50us != 0 {
		t.Errorf("empty: %+v", z)
	}
}

// TestLoopback runs a server and a client over loopback for a moment.
func TestLoopback(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	var out bytes.Buffer
	if err := run(ctx, []string{"client", "-c", ln.Addr().String(), "-d", "200ms", "-json"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	if r.Transactions == 0 || r.TPS <= 0 || r.P50us <= 0 || r.P99us < r.P50us {
		t.Errorf("implausible result %+v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}

func TestUsage(t *testing.T) {
	var out bytes.Buffer
	for _, args := range [][]string{nil, {"both"}, {"client"}, {"client", "-c", "x:1", "-d", "0s"}} {
		if err := run(context.Background(), args, &out, &out); err != errUsage {
			t.Errorf("%q: err %v, want the usage", args, err)
		}
	}
}
