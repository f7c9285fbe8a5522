package main

import (
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// floorProgram loads the floor's counting program for a test (root only).
func floorProgram(t *testing.T) *ebpf.Program {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test must run there")
		}
		t.Skip("needs root (BPF)")
	}
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { counter.Close() })
	prog, err := countingProgram(counter)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// TestProgTotals: with bpf_stats on, the floor's program run 1000 times
// adds 1000 runs and some run time to the totals of its name, and nothing
// to those of another name.
func TestProgTotals(t *testing.T) {
	prog := floorProgram(t)
	stats, err := enableKernelStats()
	if err != nil {
		t.Fatalf("bpf_stats: %v", err)
	}
	defer stats.Close()
	before, err := readProgTotals(floorProgName)
	if err != nil {
		t.Fatal(err)
	}
	other, err := readProgTotals("ht_no_such")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 64), Repeat: 1000}); err != nil {
		t.Fatal(err)
	}
	after, err := readProgTotals(floorProgName)
	if err != nil {
		t.Fatal(err)
	}
	if runs := after.runs - before.runs; runs != 1000 {
		t.Errorf("%d runs counted, want 1000", runs)
	}
	if ns := nsPerRun(before, after); ns <= 0 {
		t.Errorf("ns per run %v, want above 0", ns)
	}
	if o, _ := readProgTotals("ht_no_such"); o != other || o.runs != 0 {
		t.Errorf("totals of no program: %+v", o)
	}
	if ns := nsPerRun(after, after); ns != -1 {
		t.Errorf("ns per run with no runs: %v, want -1", ns)
	}
}

// TestStatsOffOutsideKernelCost: the harness's probe leaves bpf_stats off,
// so program runs are not counted (nor clocked) in the measured runs, which
// come before kernelCost turns it on; with it on, they are.
func TestStatsOffOutsideKernelCost(t *testing.T) {
	prog := floorProgram(t)
	if b, _ := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled"); len(b) > 0 && b[0] == '1' {
		t.Skip("kernel.bpf_stats_enabled=1: bpf_stats is on for the whole host")
	}
	run := func() uint64 {
		t.Helper()
		if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 64), Repeat: 100}); err != nil {
			t.Fatal(err)
		}
		st, err := prog.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.RunCount
	}
	if err := probeKernelStats(); err != nil {
		t.Fatalf("bpf_stats: %v", err)
	}
	if n := run(); n != 0 {
		t.Errorf("after the probe: %d runs counted, want none (does another process hold bpf_stats on?)", n)
	}
	stats, err := enableKernelStats()
	if err != nil {
		t.Fatalf("bpf_stats: %v", err)
	}
	defer stats.Close()
	if n := run(); n != 100 {
		t.Errorf("bpf_stats on: %d runs counted, want 100", n)
	}
}
