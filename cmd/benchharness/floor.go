package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
)

// The floor condition: a TC program that only counts, attached with tcx in
// both directions at every hook hoptrace uses on the bed. It is what any
// tracer at those hooks pays before doing anything, so the hoptrace rows can
// be read against it: what is above the floor is hoptrace's own work. The
// harness runs it as a child process of its own binary (-floor), so it is
// started, measured and stopped like the other tracers.

// A hookPoint is an interface, in the host's network namespace when netns
// is "", else in the namespace at that path.
type hookPoint struct {
	netns string
	name  string
}

func (p hookPoint) String() string {
	if p.netns == "" {
		return p.name
	}
	return p.netns + ":" + p.name
}

func parseHookPoint(s string) (hookPoint, error) {
	i := strings.LastIndexByte(s, ':')
	p := hookPoint{name: s[i+1:]}
	if i >= 0 {
		p.netns = s[:i]
	}
	if p.name == "" || (i >= 0 && p.netns == "") {
		return p, fmt.Errorf("bad hook point %q: want IFNAME or NETNS-PATH:IFNAME", s)
	}
	return p, nil
}

// countingProgram is the floor's program: one per-CPU counter incremented,
// then TCX_NEXT (the next program, or the packet goes on).
func countingProgram(counter *ebpf.Map) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    floorProgName,
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, counter.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("out"),
			asm.Return(),
		},
	})
}

// runFloor attaches the counting program at points, writes readyFile and
// holds the links until ctx ends; closing them detaches.
func runFloor(ctx context.Context, points []hookPoint, readyFile string) error {
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("counter map: %w", err)
	}
	defer counter.Close()
	prog, err := countingProgram(counter)
	if err != nil {
		return fmt.Errorf("counting program: %w", err)
	}
	defer prog.Close()
	var links []link.Link
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	for _, p := range points {
		ls, err := attachBoth(prog, p)
		links = append(links, ls...)
		if err != nil {
			return err
		}
	}
	if readyFile != "" {
		if err := os.WriteFile(readyFile, nil, 0o644); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// attachBoth attaches prog at p's ingress and egress. The ifindex is
// resolved, and the link made, in p's namespace: the thread enters it for
// the duration.
func attachBoth(prog *ebpf.Program, p hookPoint) (links []link.Link, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if p.netns != "" {
		orig, err := netns.Get()
		if err != nil {
			return nil, err
		}
		defer orig.Close()
		target, err := netns.GetFromPath(p.netns)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return nil, fmt.Errorf("enter %s: %w", p.netns, err)
		}
		defer func() {
			if serr := netns.Set(orig); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
	}
	ifc, err := net.InterfaceByName(p.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: at})
		if err != nil {
			return links, fmt.Errorf("attach tcx at %s: %w", p, err)
		}
		links = append(links, l)
	}
	return links, nil
}
