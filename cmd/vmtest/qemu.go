package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const qemuBin = "qemu-system-x86_64"

// qemuArgs is the VM: no network device at all (-nodefaults, -nic none), no
// display, the console on the serial port read through stdio.
func qemuArgs(accel string, k *kernel, initrd string, o *options) []string {
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-nic", "none",
		"-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(o.memMiB), "-smp", strconv.Itoa(o.cpus),
		"-serial", "stdio",
		"-kernel", k.Vmlinuz,
		"-append", "console=ttyS0 panic=-1 mitigations=off rdinit=/init",
	}
	if initrd != "" {
		args = append(args, "-initrd", initrd)
	}
	return args
}

// runQEMU boots the VM, copies every console line to log and to line, and
// kills the VM when ctx ends or timeout passes. timedOut says which.
func runQEMU(ctx context.Context, args []string, timeout time.Duration, log io.Writer, line func(string)) (timedOut bool, err error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, qemuBin, args...)
	// qemu dies with the runner, and gets no terminal to put in raw mode.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdin = nil
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("start %s: %w (install qemu-system-x86: vmtests/testbed.sh --vm)", qemuBin, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			l := strings.TrimRight(sc.Text(), "\r")
			fmt.Fprintln(log, l)
			line(l)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	werr := cmd.Wait()
	pw.Close()
	<-done
	if tctx.Err() != nil && ctx.Err() == nil {
		return true, fmt.Errorf("VM did not finish within %v: killed", timeout)
	}
	if ctx.Err() != nil {
		return false, fmt.Errorf("interrupted: VM killed: %w", ctx.Err())
	}
	if werr != nil {
		return false, fmt.Errorf("%s: %w", qemuBin, werr)
	}
	return false, nil
}

// probeKVM boots the kernel without an initramfs under KVM: it panics at
// once (no root), which proves KVM runs a guest here. Anything else (no
// /dev/kvm, "KVM internal error", a hang) means TCG.
func probeKVM(ctx context.Context, k *kernel, o *options) (bool, string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false, "no usable /dev/kvm (" + err.Error() + ")"
	}
	f.Close()
	var buf bytes.Buffer
	args := qemuArgs("kvm", k, "", o)
	for i, a := range args {
		if strings.HasPrefix(a, "console=ttyS0") {
			args[i] = "console=ttyS0 panic=-1 loglevel=4"
		}
	}
	// On "KVM internal error" qemu stops the guest but stays up: end it then.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timedOut, err := runQEMU(pctx, args, 20*time.Second, &buf, func(l string) {
		if strings.Contains(l, "KVM internal error") {
			cancel()
		}
	})
	out := buf.String()
	switch {
	case ctx.Err() != nil:
		return false, "interrupted"
	case timedOut:
		return false, "KVM probe hung"
	case strings.Contains(out, "KVM internal error"):
		return false, "KVM internal error in probe"
	case err != nil && !errors.Is(err, context.Canceled):
		return false, "KVM probe failed: " + firstLine(out)
	case !strings.Contains(out, "Linux version") && !strings.Contains(out, "Kernel panic"):
		return false, "KVM probe printed no kernel output"
	}
	return true, "KVM probe booted"
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
