package main

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// A stop (Ctrl-C, SIGTERM, -c, --duration) must end hoptrace soon whatever
// its stdout does: a paused `| less`, a terminal stopped with Ctrl-S, a FIFO
// nobody opened for reading. Writes that block in the kernel cannot be
// cancelled, so stdout and stderr are outWriters: the program's writes go
// into a bounded buffer, and one goroutine per stream does the write(2)
// calls. Until a stop, a full buffer makes the program wait as a direct
// write would (a slow reader slows the capture; the kernel counts what the
// ring buffer then loses). After a stop, a stream has stopGrace to be read;
// past that, waiting on a write(2) that does not return fails with
// errOutputStuck, and the process exits with the writer goroutine still
// blocked in it.
//
// The alternative, O_NONBLOCK on the descriptor and os.File's
// SetWriteDeadline, was rejected: O_NONBLOCK is a flag of the open file
// description, shared with the shell's terminal or the other writers of the
// pipe, which would then see EAGAIN (and keep the flag after a SIGKILL);
// and regular files and many terminals cannot be polled, so there would be
// no deadline on them at all.

// stopGrace is how long output may take to be read after a stop.
const stopGrace = time.Second

// stallLimit: past the deadline, a write(2) that has not returned for this
// long means nobody reads. A stream that is being read still gets what is
// queued after the deadline (the summary, the error line).
const stallLimit = 100 * time.Millisecond

// outBufferBytes bounds what an outWriter holds for its reader.
const outBufferBytes = 256 << 10

// Output is written in batches: a write(2) and a goroutine wakeup per line
// cost more than the line (trace -o json prints ~200k journeys a second on
// a busy host). What is queued goes out once coalesceBytes are there, or
// coalesceDelay after the first of it, or at a Flush: a person at a
// terminal does not see the delay.
const (
	coalesceBytes = 64 << 10
	coalesceDelay = 2 * time.Millisecond
)

// errOutputStuck: the reader did not take the output before the deadline.
var errOutputStuck = fmt.Errorf("nobody read it within %s of the stop", stopGrace)

// outWriter writes to w from its own goroutine; see above.
type outWriter struct {
	w     io.Writer
	limit int

	mu       sync.Mutex
	pending  []byte    // accepted, not yet handed to w
	spare    []byte    // the other buffer, reused
	busy     bool      // a w.Write is in progress
	started  time.Time // when it started
	err      error     // the first error of w.Write; pending data is then dropped
	deadline time.Time
	changed  chan struct{} // closed and replaced at every change of the above
	kick     chan struct{} // wakes the goroutine
	batch    int           // pending bytes that wake it at once
	timer    *time.Timer   // wakes it coalesceDelay after pending got its first bytes
	armed    bool          // the timer runs
}

func newOutWriter(w io.Writer, limit int) *outWriter {
	o := &outWriter{w: w, limit: limit, changed: make(chan struct{}), kick: make(chan struct{}, 1),
		batch: max(1, min(coalesceBytes, limit/2))}
	o.timer = time.AfterFunc(time.Hour, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.armed = false
		o.kickLocked()
	})
	o.timer.Stop()
	go o.loop()
	return o
}

// loop runs for the life of the process.
func (o *outWriter) loop() {
	for range o.kick {
		o.mu.Lock()
		if len(o.pending) == 0 || o.err != nil {
			o.mu.Unlock()
			continue
		}
		buf := o.pending
		o.pending, o.spare = o.spare[:0], nil
		o.busy, o.started = true, time.Now()
		o.mu.Unlock()

		_, err := o.w.Write(buf)

		o.mu.Lock()
		o.busy = false
		o.spare = buf[:0]
		if err != nil && o.err == nil {
			o.err = err
			o.pending = o.pending[:0]
		}
		if len(o.pending) > 0 {
			o.queuedLocked() // what came during the write
		}
		o.changedLocked()
		o.mu.Unlock()
	}
}

func (o *outWriter) kickLocked() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// queuedLocked wakes the goroutine when a batch is pending, and otherwise
// makes sure the timer will.
func (o *outWriter) queuedLocked() {
	switch {
	case len(o.pending) >= o.batch:
		o.kickLocked()
	case !o.armed:
		o.armed = true
		o.timer.Reset(coalesceDelay)
	}
}

func (o *outWriter) changedLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// waitLocked waits, with mu released, for a change or until the deadline
// or a stall may have come. It returns errOutputStuck once the deadline
// passed and the write in progress has stalled.
func (o *outWriter) waitLocked() error {
	var wake time.Time
	now := time.Now()
	switch {
	case o.deadline.IsZero():
	case now.Before(o.deadline):
		wake = o.deadline
	case o.busy:
		wake = o.started.Add(stallLimit)
		if !now.Before(wake) {
			return errOutputStuck
		}
	}
	var timeout <-chan time.Time
	if !wake.IsZero() {
		t := time.NewTimer(wake.Sub(now))
		defer t.Stop()
		timeout = t.C
	}
	ch := o.changed
	o.mu.Unlock()
	select {
	case <-ch:
	case <-timeout:
	}
	o.mu.Lock()
	return nil
}

// Write queues p, waiting for room while the buffer is full (after the
// deadline: failing with errOutputStuck). A write error of the stream is
// returned by the next Write.
func (o *outWriter) Write(p []byte) (n int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(p) > 0 {
		if o.err != nil {
			return n, o.err
		}
		if room := o.limit - len(o.pending); room > 0 {
			k := min(room, len(p))
			o.pending = append(o.pending, p[:k]...)
			p, n = p[k:], n+k
			o.queuedLocked()
			continue
		}
		if err := o.waitLocked(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Flush waits until everything queued was written, or the stream is stuck
// past the deadline.
func (o *outWriter) Flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.pending) > 0 {
		o.kickLocked()
	}
	for o.err == nil && (len(o.pending) > 0 || o.busy) {
		if err := o.waitLocked(); err != nil {
			return err
		}
	}
	return o.err
}

// GiveUpBy sets the deadline after which blocked writes fail, unless an
// earlier one is set already.
func (o *outWriter) GiveUpBy(t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.deadline.IsZero() || t.Before(o.deadline) {
		o.deadline = t
		o.changedLocked()
	}
}

// Fd is the descriptor written to, for terminal detection.
func (o *outWriter) Fd() uintptr {
	if f, ok := o.w.(interface{ Fd() uintptr }); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}

// giveUpBy sets the deadline of each writer that is an outWriter (the
// others, e.g. buffers in tests, never block).
func giveUpBy(t time.Time, ws ...io.Writer) {
	for _, w := range ws {
		if o, ok := w.(interface{ GiveUpBy(time.Time) }); ok {
			o.GiveUpBy(t)
		}
	}
}

// flushOutput waits until w wrote everything it holds (outWriter), or its deadline.
func flushOutput(w io.Writer) error {
	if f, ok := w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// isStuck reports errors that mean a reader did not take the output in time.
func isStuck(err error) bool { return errors.Is(err, errOutputStuck) }
