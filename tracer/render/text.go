package render

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/tracer/journey"
)

// ANSI colours, used only when Options.Color is set.
const (
	cReset  = "\x1b[0m"
	cRed    = "\x1b[31m"
	cGreen  = "\x1b[32m"
	cYellow = "\x1b[33m"
	cCyan   = "\x1b[36m"
	cDim    = "\x1b[2m"
	cBold   = "\x1b[1m"
)

// Text prints one line per journey (plus one per hop when verbose).
type Text struct {
	w   *bufio.Writer
	out io.Writer
	opt Options
	buf []byte // the line being built, reused
}

// NewText returns a text printer writing to w. Each journey is flushed as
// soon as it is printed, so live output is not held back.
func NewText(w io.Writer, opt Options) *Text {
	return &Text{w: bufio.NewWriter(w), out: w, opt: opt}
}

func (t *Text) paint(color, s string) string {
	if !t.opt.Color || s == "" {
		return s
	}
	return color + s + cReset
}

// Journey prints one journey:
//
//	12:00:01.123456 TCP 172.17.0.2:41234 > 172.17.0.3:8080 [S] client:eth0 -> veth1a2b -> docker0 -> veth3c4d -> web:eth0  30us
//
// and for a TCP retransmission (Journey.Retransmit) what it repeats:
//
//	... web:eth0  31us  retransmit of #12 after 1.02s (#12 DROPPED at veth82f1: NETFILTER_DROP)
func (t *Text) Journey(j *journey.Journey) error {
	w := t.w
	// The common part is built in t.buf: a busy trace prints tens of
	// thousands of lines a second.
	b := t.opt.wall(j.Start).AppendFormat(t.buf[:0], "15:04:05.000000")
	b = append(b, ' ')
	if p := j.Packet(); p != nil {
		b = appendDescribe(b, p)
		if h := j.First(); h.GSOSegs > 1 {
			b = strconv.AppendUint(append(b, " len "...), uint64(h.Len), 10)
			b = strconv.AppendUint(append(b, " (gso "...), uint64(h.GSOSegs), 10)
			b = strconv.AppendUint(append(b, 'x'), uint64(h.GSOSize), 10)
			b = append(b, ')')
		}
		b = append(b, ' ')
		b = t.appendPath(b, j, 0)
	} else {
		b = append(b, "(no hops seen)"...)
	}
	b = appendDuration(append(b, "  "...), j.Transit)
	t.buf = b
	w.Write(b)
	if v := t.verdict(j); v != "" {
		w.WriteString("  ")
		w.WriteString(v)
	}
	for _, rw := range j.Rewrites {
		fmt.Fprintf(w, "  [%s %s became %s at %s]", rw.Kind, rw.From, rw.To, j.Hops[rw.Hop].Label())
	}
	if r := j.Retransmit; r != nil {
		w.WriteString("  ")
		w.WriteString(t.paint(cYellow, fmt.Sprintf("retransmit of #%d after %s (#%d %s)", r.Of, FormatDuration(r.After), r.Of, r.OfFate())))
	}
	w.WriteByte('\n')
	if t.opt.Verbose {
		t.hops(j)
	}
	return w.Flush()
}

// KeepsJourneys is false: a journey is written out during Journey
// (pipeline.JourneyKeeper).
func (t *Text) KeepsJourneys() bool { return false }

// appendPath appends hop i and what follows it; a flooded packet's
// branches go in braces: a -> b -> {c -> d | e -> f | g}.
func (t *Text) appendPath(b []byte, j *journey.Journey, i int) []byte {
	b = j.Hops[i].Endpoint.AppendLabel(b)
	// Its children: one, the next hop, on most journeys.
	var kidBuf [4]int
	kids := kidBuf[:0]
	for k := i + 1; k < len(j.Hops); k++ {
		if j.Hops[k].Parent == i {
			kids = append(kids, k)
		}
	}
	if len(kids) == 0 {
		return b
	}
	// The bridge between two of its ports is named once, before the
	// branches when it flooded the packet.
	if br, ok := j.Bridged(kids[0]); ok && allBridged(j, kids, br) {
		b = append(b, " -> "...)
		b = append(b, t.paint(cDim, br.Label())...)
	}
	if len(kids) == 1 {
		return t.appendPath(append(b, " -> "...), j, kids[0])
	}
	b = append(b, " -> {"...)
	for n, k := range kids {
		if n > 0 {
			b = append(b, " | "...)
		}
		b = t.appendPath(b, j, k)
	}
	return append(b, '}')
}

// allBridged reports whether every hop in kids came through bridge b.
func allBridged(j *journey.Journey, kids []int, b journey.BridgeStep) bool {
	for _, k := range kids {
		if bk, ok := j.Bridged(k); !ok || bk != b {
			return false
		}
	}
	return true
}

// verdict is the text after the transit time; empty for a plain delivery.
func (t *Text) verdict(j *journey.Journey) string {
	var parts []string
	if d := j.Drop; d != nil && d.AfterDelivery {
		parts = append(parts, t.paint(cYellow, "then freed by "+d.Where(j)+"'s stack: "+d.Name()))
	} else if d != nil {
		s := "DROPPED at " + d.Where(j) + ": " + d.Name()
		if dev := d.Dev(); dev != "" && dev != d.Where(j) {
			s += " (dev " + dev + ")"
		}
		parts = append(parts, t.paint(cRed+cBold, s))
	}
	switch j.Verdict {
	case journey.VerdictHost:
		parts = append(parts, t.paint(cCyan, "to host"))
	case journey.VerdictLeftHost:
		parts = append(parts, t.paint(cCyan, "left host"))
	case journey.VerdictIncomplete:
		s := "incomplete"
		if j.TimedOut {
			s += " (timed out)"
		}
		parts = append(parts, t.paint(cYellow, s))
	}
	if j.Fanout > 1 {
		parts = append(parts, fmt.Sprintf("flooded to %d", j.Fanout))
	}
	if j.Evicted {
		parts = append(parts, t.paint(cYellow, "evicted"))
	}
	return strings.Join(parts, "  ")
}

// hops prints each hop: time, delta from the hop it came from, interface,
// direction and what it means for the packet.
func (t *Text) hops(j *journey.Journey) {
	w := t.w
	for i := range j.Hops {
		h := &j.Hops[i]
		if b, ok := j.Bridged(i); ok {
			what := "forwarded by the bridge (inferred: its hooks do not see bridged packets)"
			if b.Kind != "" {
				what = "forwarded by " + b.Kind + " on " + b.Bridge + " (inferred: no hook sees it)"
			}
			fmt.Fprintf(w, "    %15s %8s  %-16s %-7s %s\n", "", "", b.Label(), "", t.paint(cDim, what))
		}
		fmt.Fprintf(w, "    %s %8s  %-16s %-7s %s",
			t.opt.wall(h.TimeNS).Format("15:04:05.000000"),
			"+"+FormatDuration(h.Delta), h.Label(), h.Dir, h.Action())
		if h.Parent >= 0 && h.Parent != i-1 {
			fmt.Fprintf(w, " (from %s)", j.Hops[h.Parent].Label())
		}
		fmt.Fprintf(w, "  len %d", h.Len)
		if h.GSOSegs > 1 {
			fmt.Fprintf(w, " gso %dx%d", h.GSOSegs, h.GSOSize)
		}
		for _, rw := range j.Rewrites {
			if rw.Hop == i {
				fmt.Fprintf(w, "  %s now %s", rw.Kind, rw.To)
			}
		}
		w.WriteByte('\n')
	}
	if d := j.Drop; d != nil {
		var delta time.Duration
		if d.After >= 0 && d.TimeNS > j.Hops[d.After].TimeNS {
			delta = time.Duration(d.TimeNS - j.Hops[d.After].TimeNS)
		}
		fmt.Fprintf(w, "    %s %8s  %s\n", t.opt.wall(d.TimeNS).Format("15:04:05.000000"), "+"+FormatDuration(delta),
			t.paint(cRed, "dropped at "+d.Where(j)+": "+d.Name()))
	}
}

// Summary prints the end-of-run counters, loss first when there was any.
func (t *Text) Summary(s Summary) error {
	w := t.w
	st := &s.Stats
	if s.Loss.Total() > 0 {
		fmt.Fprintf(w, "%s\n", t.paint(cRed+cBold, fmt.Sprintf("WARNING: %d events lost (ring buffer full): %d hops, %d drops",
			s.Loss.Total(), s.Loss.Hops, s.Loss.Drops)))
	}
	if s.Loss.Evicted > 0 {
		fmt.Fprintf(w, "%s\n", t.paint(cRed+cBold, fmt.Sprintf("WARNING: %d packets evicted in flight (kernel packet table full): their journeys split, later drops unseen",
			s.Loss.Evicted)))
	}
	if s.NotAssembled {
		fmt.Fprintf(w, "recorded hops %d", st.Hops)
	} else {
		fmt.Fprintf(w, "journeys %d", st.Journeys)
	}
	var vs []string
	for _, v := range []journey.Verdict{journey.VerdictContainer, journey.VerdictHost, journey.VerdictLeftHost, journey.VerdictDropped, journey.VerdictIncomplete} {
		if n := st.ByVerdict[v]; n > 0 {
			vs = append(vs, fmt.Sprintf("%s %d", v, n))
		}
	}
	if len(vs) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(vs, ", "))
	}
	if !s.NotAssembled {
		fmt.Fprintf(w, ", hops %d", st.Hops)
	}
	if s.Duration > 0 {
		fmt.Fprintf(w, " in %s", s.Duration.Round(time.Millisecond))
	}
	w.WriteByte('\n')
	fmt.Fprintf(w, "drops %d", st.Drops)
	if len(st.DropsByReason) > 0 {
		fmt.Fprintf(w, ": %s", reasons(st.DropsByReason))
	}
	if st.UnmatchedDrops > 0 {
		fmt.Fprintf(w, " (%d not joined to a journey)", st.UnmatchedDrops)
	}
	w.WriteByte('\n')
	fmt.Fprintf(w, "events lost %d, packets evicted in flight %d, journeys evicted %d (in-flight cap), timed out %d\n",
		s.Loss.Total(), s.Loss.Evicted, st.Evictions, st.TimedOut)
	if n := s.Names; n.Waited > 0 {
		fmt.Fprintf(w, "names: %d journeys waited for Docker to name a new container, %d printed unnamed after %s\n",
			n.Waited, n.GaveUp, journey.DefaultNameWait)
	}
	return w.Flush()
}

// reasons lists drop reasons, most frequent first, then by name.
func reasons(m map[string]uint64) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Slice(names, func(a, b int) bool {
		if m[names[a]] != m[names[b]] {
			return m[names[a]] > m[names[b]]
		}
		return names[a] < names[b]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", n, m[n])
	}
	return strings.Join(parts, ", ")
}
