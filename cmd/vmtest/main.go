// Command vmtest runs hoptrace's privileged tests on several Debian kernels,
// each in its own qemu VM with no network device.
//
// For each kernel it fetches the Debian linux-image package (apt-get
// download, cached in vmtests/.cache), builds an initramfs holding busybox,
// iptables/nft/iproute2 with their libraries, the kernel modules the tests
// need and the static test binaries of the privileged packages, boots it
// (KVM if a probe succeeds, TCG otherwise), and reports every test per kernel.
// It exits non-zero if any test fails, a VM hangs or does not boot.
//
//	go run ./cmd/vmtest                  # 6.1 and 6.12
//	go run ./cmd/vmtest -kernel 6.1      # one kernel
//	go run ./cmd/vmtest -run TestAttach  # some tests
//
// See docs/vmtests.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	kernels     []string
	pkgs        string
	run         string
	skip        string
	accel       string
	timeout     time.Duration
	testTimeout time.Duration
	memMiB      int
	cpus        int
	parallel    int
	count       int
	verbose     bool
	vmEnv       []string
	root        string
	hoptrace    string // static hoptrace binary for the VM, if built
	logf        func(string, ...any)
}

func (o *options) testArgs() string {
	// -test.short: the VMs may run under TCG, many times slower than the
	// host, with a time limit; a test that sweeps many cases (each a BPF
	// load) runs a sample of them there, and all of them on the host.
	a := []string{"-test.short", fmt.Sprintf("-test.count=%d", max(o.count, 1))}
	if o.run != "" {
		a = append(a, "-test.run "+shellQuote(o.run))
	}
	if o.skip != "" {
		a = append(a, "-test.skip "+shellQuote(o.skip))
	}
	return strings.Join(a, " ")
}

type listFlag struct{ l *[]string }

func (f listFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.Join(*f.l, ",")
}

func (f listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*f.l = append(*f.l, v)
		}
	}
	return nil
}

var errFailed = errors.New("vmtest failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.Is(err, errFailed):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &options{}
	var envs []string
	fs := flag.NewFlagSet("vmtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(listFlag{&o.kernels}, "kernel", "kernel `series` (6.1, 6.12) or a linux-image package name; repeatable or comma-separated (default 6.1,6.12)")
	fs.StringVar(&o.pkgs, "pkgs", "", "comma-separated `packages` to test (default: every package with netns or root-gated tests through vmtests/testenv)")
	fs.StringVar(&o.run, "run", "", "only tests matching `regexp` (go test -run)")
	fs.StringVar(&o.skip, "skip", "", "leave out tests matching `regexp` (go test -skip)")
	fs.StringVar(&o.accel, "accel", "auto", "qemu accelerator: auto (KVM if a probe boots, else TCG), kvm or tcg")
	// Under TCG the 6.1 VM took ~700 s here in CI (it walks the legacy
	// paths: per-netns program loads, each verified under emulation), so
	// the 12m this was left no room for a slower or busier CI machine. 25m
	// still bounds a hung VM: both VMs fit CI's 90-minute budget with the
	// host tests.
	fs.DurationVar(&o.timeout, "timeout", 25*time.Minute, "kill a VM that has not finished after this long")
	fs.IntVar(&o.memMiB, "mem", 2048, "VM memory in MiB")
	// One vCPU by default: as fast here under TCG, and it avoids an
	// emulation flake seen once with two (an int3 oops in the receive path
	// while a TCX attach was live-patching kernel text).
	fs.IntVar(&o.cpus, "smp", 1, "VM CPUs")
	// A TCG VM keeps one host CPU busy whatever its -smp: two kernels
	// side by side on a 2-CPU host take the time of the slower one, not
	// of both (CI: ~800 s instead of ~1250).
	fs.IntVar(&o.count, "count", 1, "run each test `n` times in the VM (go test -count), to hunt a flake")
	fs.IntVar(&o.parallel, "parallel", 0, "VMs to run at once (default: the host's CPUs over -smp, at most one per kernel)")
	fs.BoolVar(&o.verbose, "v", false, "stream the VM consoles")
	fs.Var(listFlag{&envs}, "env", "extra `KEY=VALUE` for the tests in the VM (repeatable)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./cmd/vmtest [flags]\n\nRuns the privileged tests on Debian kernels in qemu VMs (see docs/vmtests.md).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(o.kernels) == 0 {
		o.kernels = []string{"6.1", "6.12"}
	}
	if o.accel != "auto" && o.accel != "kvm" && o.accel != "tcg" {
		return fmt.Errorf("-accel %q: want auto, kvm or tcg", o.accel)
	}
	if o.cpus < 1 {
		return fmt.Errorf("-smp %d: want at least 1", o.cpus)
	}
	if o.count < 1 {
		return fmt.Errorf("-count %d: want at least 1", o.count)
	}
	if o.parallel < 0 {
		return fmt.Errorf("-parallel %d: want at least 1 (0: from the host's CPUs)", o.parallel)
	}
	if o.parallel == 0 {
		o.parallel = max(1, runtime.NumCPU()/o.cpus)
	}
	// VMs run side by side: their lines and reports go out whole.
	stdout = &lockedWriter{w: stdout}
	o.testTimeout = o.timeout - 30*time.Second
	if o.testTimeout < time.Minute {
		o.testTimeout = o.timeout
	}
	for _, e := range envs {
		if !strings.Contains(e, "=") {
			return fmt.Errorf("-env %q: want KEY=VALUE", e)
		}
	}
	o.vmEnv = envs
	// The canary: HOPTRACE_VMTEST_BREAK=1 on the host makes vmtests/vmcheck fail in the VM.
	if v := os.Getenv("HOPTRACE_VMTEST_BREAK"); v != "" {
		o.vmEnv = append(o.vmEnv, "HOPTRACE_VMTEST_BREAK="+v)
	}
	start := time.Now()
	o.logf = func(format string, a ...any) {
		fmt.Fprintf(stdout, "vmtest [%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}

	if os.Geteuid() != 0 {
		return errors.New("needs root (apt-get download, qemu): run 'sudo make vmtest'")
	}
	if _, err := exec.LookPath(qemuBin); err != nil {
		return fmt.Errorf("%s not found: run vmtests/testbed.sh --vm", qemuBin)
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	o.root = root
	cache := filepath.Join(root, "vmtests", ".cache")
	outDir := filepath.Join(root, "vmtests", "out")
	for _, d := range []string{cache, outDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}

	// Kernels first: a missing package should fail before minutes of building.
	var kernels []*kernel
	for _, short := range o.kernels {
		k, err := fetchKernel(ctx, short, cache, o.logf)
		if err != nil {
			return err
		}
		o.logf("kernel %s: %s (%s)", short, k.Package, k.Release)
		kernels = append(kernels, k)
	}

	var pkgs []testPkg
	if o.pkgs != "" {
		pkgs, err = selectPackages(root, o.pkgs)
	} else {
		pkgs, err = discoverPackages(ctx, root)
	}
	if err != nil {
		return err
	}
	names := make([]string, len(pkgs))
	for i, p := range pkgs {
		names[i] = "./" + p.Rel
	}
	o.logf("building static test binaries, one at a time: %s", strings.Join(names, " "))
	pkgs, buildFailed, err := buildTests(ctx, root, filepath.Join(cache, "tests"), pkgs, o.logf)
	if err != nil {
		return err
	}
	if len(pkgs) == 0 {
		return fmt.Errorf("no test binaries to run (failed to build: %s)", strings.Join(buildFailed, " "))
	}
	if o.hoptrace, err = buildHoptrace(ctx, root, filepath.Join(cache, "tests"), pkgs); err != nil {
		return err
	}

	accel := o.accel
	if accel == "auto" {
		ok, why := probeKVM(ctx, kernels[0], o)
		accel = "tcg"
		if ok {
			accel = "kvm"
		}
		o.logf("accelerator: %s (%s)", accel, why)
	}
	// Up to o.parallel VMs at once, started in the order the kernels were
	// given; the summary keeps that order.
	results := make([]*kernelResult, len(kernels))
	slots := make(chan struct{}, o.parallel)
	var wg sync.WaitGroup
	for i, k := range kernels {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			results[i] = runKernel(ctx, k, accel, pkgs, cache, outDir, o, stdout)
		}()
	}
	wg.Wait()
	results = slices.DeleteFunc(results, func(r *kernelResult) bool { return r == nil })

	failed := false
	fmt.Fprintf(stdout, "\n== summary (%.0fs in all)\n", time.Since(start).Seconds())
	fmt.Fprintf(stdout, "   %-6s %-34s %-5s %6s %6s %6s %8s  %s\n", "kernel", "release", "accel", "pass", "fail", "skip", "time", "result")
	for _, r := range results {
		pass, fail, skip := r.counts()
		res := "ok"
		if len(r.failures()) > 0 {
			res, failed = "FAILED", true
		}
		fmt.Fprintf(stdout, "   %-6s %-34s %-5s %6d %6d %6d %7.0fs  %s\n", r.K.Short, r.K.Release, r.Accel, pass, fail, skip, r.Elapsed.Seconds(), res)
	}
	for _, r := range results {
		fmt.Fprintf(stdout, "   %-6s %s\n", r.K.Short, r.featureSummary())
	}
	// Why a kernel failed, again at the end: with the VMs side by side a
	// failing kernel's report may sit far up a long log.
	for _, r := range results {
		if why := r.failures(); len(why) > 0 {
			fmt.Fprintf(stdout, "   %-6s FAILED: %s\n", r.K.Short, strings.Join(why, "; "))
			r.failureOutput(stdout, 25)
		}
	}
	if len(buildFailed) > 0 {
		fmt.Fprintf(stdout, "   FAILED to build the tests of %s (not run on any kernel)\n", strings.Join(buildFailed, " "))
		failed = true
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if failed {
		return errFailed
	}
	return nil
}

func runKernel(ctx context.Context, k *kernel, accel string, pkgs []testPkg, cache, outDir string, o *options, stdout io.Writer) *kernelResult {
	r := &kernelResult{K: k, Accel: accel, ExitRC: -1}
	for _, p := range pkgs {
		if p.Rel == "tracer" && o.run == "" && o.skip == "" {
			r.WantFeatures = true
		}
	}
	start := time.Now()
	defer func() {
		r.Elapsed = time.Since(start)
		var b bytes.Buffer
		r.report(&b)
		_, _ = stdout.Write(b.Bytes())
	}()

	mods, missing, err := k.modules(wantModules)
	if err != nil {
		r.Err = err
		return r
	}
	if len(missing) > 0 {
		o.logf("kernel %s: not in this kernel (neither module nor built in): %s", k.Short, strings.Join(missing, " "))
	}
	initrd := filepath.Join(cache, "initramfs-"+k.Release+".cpio")
	if err := buildImage(initrd, k, mods, filepath.Join(cache, "modules"), pkgs, o); err != nil {
		r.Err = err
		return r
	}
	if st, err := os.Stat(initrd); err == nil {
		o.logf("kernel %s: initramfs %.0f MiB with %d modules, %d test binaries; booting (%s)", k.Short, float64(st.Size())/(1<<20), len(mods), len(pkgs), accel)
	}
	r.Log = filepath.Join(outDir, k.Short+".log")
	logf, err := os.Create(r.Log)
	if err != nil {
		r.Err = err
		return r
	}
	defer logf.Close()
	p := newParser(r, time.Now())
	line := p.line
	if o.verbose {
		line = func(l string) {
			fmt.Fprintf(stdout, "[%s] %s\n", k.Short, l)
			p.line(l)
		}
	}
	_, err = runQEMU(ctx, qemuArgs(accel, k, initrd, o), o.timeout, logf, line)
	if err != nil {
		r.Err = err
	}
	if err == nil && r.ExitRC == -1 {
		r.Err = errors.New("the VM stopped without its exit line")
	}
	return r
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run vmtest inside the hoptrace module")
	}
	return filepath.Dir(mod), nil
}

// lockedWriter passes each Write whole to w, one at a time.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
