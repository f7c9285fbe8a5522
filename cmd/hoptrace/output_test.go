package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
