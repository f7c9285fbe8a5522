package main

import (
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The kernel's own account of what a condition's BPF programs cost: the
// run time and run count bpf_stats keeps per program (BPF_ENABLE_STATS).
// Their quotient, ns per hook call, is the least noisy measure of a
// tracer's kernel cost on a shared machine: it does not depend on what the
// workload's throughput did that minute. bpf_stats itself costs two clock
// reads a call (~40 ns on this machine kind: an empty program's 14 ns
// became 55), so it is on only in extra runs of the workloads after the
// measured ones (harness.kernelCost), never while throughput is measured,
// and the ns it reports include it, the floor's row too.

// floorProgName names the floor's program, for its stats.
const floorProgName = "ht_floor"

// enableKernelStats starts bpf_stats; closing the result stops it.
func enableKernelStats() (io.Closer, error) {
	return ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
}

// probeKernelStats tells whether bpf_stats can be turned on here, and
// leaves it off: it is on only in kernelCost's runs.
func probeKernelStats() error {
	stats, err := enableKernelStats()
	if err != nil {
		return err
	}
	return stats.Close()
}

// progPrefix is the name prefix of the programs whose stats count for c,
// or "" (no programs: none, tcpdump).
func progPrefix(c condition) string {
	switch c.kind {
	case kindHoptrace:
		return "hop_" // the hook programs, not the drop tracepoint's
	case kindFloor:
		return floorProgName
	}
	return ""
}

// progTotals are the summed run time and run count of the programs loaded
// now whose names start with prefix.
type progTotals struct {
	runtime time.Duration
	runs    uint64
}

func readProgTotals(prefix string) (progTotals, error) {
	var t progTotals
	id := ebpf.ProgramID(0)
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return t, nil
		}
		if err != nil {
			return t, err
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := p.Info()
		if err == nil && strings.HasPrefix(info.Name, prefix) {
			if st, err := p.Stats(); err == nil {
				t.runtime += st.Runtime
				t.runs += st.RunCount
			}
		}
		p.Close()
	}
}

// nsPerRun is the run time per call between two totals, or -1.
func nsPerRun(a, b progTotals) float64 {
	if b.runs <= a.runs || b.runtime < a.runtime {
		return -1
	}
	return float64(b.runtime-a.runtime) / float64(b.runs-a.runs)
}
