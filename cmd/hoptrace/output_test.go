package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/pipeline"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// stuckWriter blocks every Write until released; it then records.
type stuckWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
	err     error
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	return w.buf.Write(p)
}

func (w *stuckWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestOutWriterPassesWritesInOrder(t *testing.T) {
	w := &stuckWriter{release: make(chan struct{})}
	close(w.release)
	o := newOutWriter(w, 64)
	var want bytes.Buffer
	for i := range 1000 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		if n, err := o.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.String() != want.String() {
		t.Fatalf("got %d bytes, want %d, or out of order", len(w.String()), want.Len())
	}
}

// writeCounter counts the writes it gets.
type writeCounter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *writeCounter) state() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), w.writes
}

// TestOutWriterCoalesces: many small writes in a burst reach the stream in
// a few large ones, and a lone line gets out without a Flush.
func TestOutWriterCoalesces(t *testing.T) {
	w := &writeCounter{}
	o := newOutWriter(w, outBufferBytes)
	var want bytes.Buffer
	const lines = 20000 // ~300 KB: several batches
	for i := range lines {
		line := fmt.Sprintf("journey %d\n", i)
		want.WriteString(line)
		if _, err := o.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		runtime.Gosched() // the writer's goroutine may run between lines
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	got, writes := w.state()
	if got != want.String() {
		t.Fatalf("got %d bytes, want %d, or out of order", len(got), want.Len())
	}
	// One write per line would be 20000; a batch is 64 KiB, and the timer
	// adds one write per 2 ms the burst lasts.
	if writes > lines/10 {
		t.Errorf("%d lines took %d writes", lines, writes)
	}
	t.Logf("%d lines, %d bytes: %d writes", lines, len(got), writes)

	if _, err := o.Write([]byte("alone\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _ := w.state(); strings.HasSuffix(got, "alone\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lone line was not written within 10s without a Flush")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOutWriterGivesUp: a reader that never reads blocks a full buffer only
// until the deadline; later writes and flushes fail at once.
func TestOutWriterGivesUp(t *testing.T) {
	w := &stuckWriter{release: make(chan struct{})} // never released
	o := newOutWriter(w, 16)
	done := make(chan error, 1)
	go func() {
		_, err := o.Write(bytes.Repeat([]byte("x"), 100))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("write returned %v with a full buffer and no deadline", err)
	case <-time.After(50 * time.Millisecond):
	}
	o.GiveUpBy(time.Now().Add(10 * time.Millisecond))
	o.GiveUpBy(time.Now().Add(time.Hour)) // later: ignored
	select {
	case err := <-done:
		if !isStuck(err) {
			t.Fatalf("blocked write: %v, want errOutputStuck", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked write still blocked 5s after its deadline")
	}
	if _, err := o.Write(bytes.Repeat([]byte("y"), 100)); !isStuck(err) {
		t.Errorf("write after the deadline: %v", err)
	}
	if err := o.Flush(); !isStuck(err) {
		t.Errorf("flush after the deadline: %v", err)
	}
	if err := o.Flush(); !isStuck(err) {
		t.Errorf("flush again: %v", err)
	}
}

// TestOutWriterFinishAfterDeadline: a stream that is read still gets what
// was written after its deadline passed (the summary, the error line).
func TestOutWriterFinishAfterDeadline(t *testing.T) {
	w := &stuckWriter{release: make(chan struct{})}
	close(w.release)
	o := newOutWriter(w, 1024)
	o.GiveUpBy(time.Now().Add(-time.Second))
	if _, err := o.Write([]byte("summary\n")); err != nil {
		t.Fatal(err)
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.String() != "summary\n" {
		t.Fatalf("got %q", w.String())
	}
}

// TestOutWriterReportsWriteErrors: the stream's error (a closed pipe) comes
// back from the next Write and from Flush.
func TestOutWriterReportsWriteErrors(t *testing.T) {
	w := &stuckWriter{release: make(chan struct{}), err: syscall.EPIPE}
	close(w.release)
	o := newOutWriter(w, 1024)
	if _, err := o.Write([]byte("first\n")); err != nil {
		t.Fatalf("first write: %v (the error is only known later)", err)
	}
	if err := o.Flush(); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("flush: %v, want EPIPE", err)
	}
	if _, err := o.Write([]byte("second\n")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("second write: %v, want EPIPE", err)
	}
}

// The printers of trace, trace --exchanges, record and replay keep no
// journey, so the pipeline may reuse journeys' memory; a printer that does
// not say so is taken to keep them.
func TestPrintersKeepNoJourneys(t *testing.T) {
	for _, out := range []string{"text", "json"} {
		pf := &printFlags{output: out}
		for name, p := range map[string]render.Printer{
			"trace, replay, record --print": linked(pf.printer(io.Discard, io.Discard, render.Options{})),
			"trace --exchanges":             exchangeLines(pf, io.Discard, io.Discard, render.Options{}),
			"record":                        summaryOnly{render.NewText(io.Discard, render.Options{})},
		} {
			if pipeline.KeepsJourneys(&heldSummary{Printer: p}) {
				t.Errorf("%s -o %s: the printer says it may keep journeys", name, out)
			}
		}
	}
	if !pipeline.KeepsJourneys(&heldSummary{Printer: keepingPrinter{}}) {
		t.Error("a printer that does not say whether it keeps journeys was taken not to")
	}
}

type keepingPrinter struct{}

func (keepingPrinter) Journey(*journey.Journey) error { return nil }
func (keepingPrinter) Summary(render.Summary) error   { return nil }
