package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Host tools copied into the VM with the shared libraries ldd names: busybox
// has no iptables or nft, its ip/tc lack what tests ask of iproute2, and its
// setpriv cannot change uid (tests that drop root use util-linux setpriv).
// Dynamically linked tools keep their host paths so their loader finds them.
var hostTools = []string{"iptables", "ip6tables", "nft", "ip", "tc", "setpriv"}

// Directories of plugins that tools dlopen (ldd cannot see them).
var hostPluginDirs = []string{"/usr/lib/x86_64-linux-gnu/xtables"}

// Small host files the tools read.
var hostEtc = []string{"/etc/protocols", "/etc/services", "/etc/ethertypes"}

// vmEnv is the environment of the tests inside the VM.
//   - CI=true: a privileged test that cannot run fails instead of skipping.
//   - HOPTRACE_NO_DOCKER=1 and HOPTRACE_ABSENT=docker: except Docker tests,
//     which skip with that reason (testenv.RequireDocker, testenv.Lacks);
//     the VM has no Docker and no network.
//   - HOPTRACE_ABSENT also has smp when the VM has one CPU: tests of packets
//     that change CPUs skip there (the host runs them).
//   - HOPTRACE_VM: the kernel, for tests that want to say where they ran.
//   - HOPTRACE_BIN: the static hoptrace binary, for end-to-end tests (the VM
//     has no go to build one).
func vmEnv(k *kernel, o *options) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"TMPDIR=/tmp",
		"CI=true",
		"HOPTRACE_NO_DOCKER=1",
		"HOPTRACE_VM=" + k.Release,
	}
	if o.cpus < 2 {
		env = append(env, "HOPTRACE_ABSENT=docker,smp")
	} else {
		env = append(env, "HOPTRACE_ABSENT=docker")
	}
	if o.hoptrace != "" {
		env = append(env, "HOPTRACE_BIN="+hoptraceInVM)
	}
	return append(env, o.vmEnv...)
}

// buildImage writes the initramfs for one kernel.
func buildImage(out string, k *kernel, mods []module, modCache string, pkgs []testPkg, o *options) error {
	fs := newInitramfs()
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "root", "etc", "bin", "sbin", "usr/bin", "usr/sbin", "lib/modules", "var"} {
		fs.mkdirAll(d)
	}
	fs.addSymlink("var/run", "/run")
	// The kernel opens /dev/console for /init's stdio before anything is
	// mounted; Debian's kernels carry a built-in one, others may not.
	fs.addCharDev("dev/console", 5, 1)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox not found: install busybox-static (vmtests/testbed.sh)")
	}
	if err := checkStatic(bb); err != nil {
		return err
	}
	fs.addFile("bin/busybox", bb, 0o755)

	if err := addHostTools(fs, o.logf); err != nil {
		return err
	}
	if o.hoptrace != "" {
		fs.addFile(hoptraceInVM, o.hoptrace, 0o755)
	}
	fs.addData("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	fs.addData("etc/group", []byte("root:x:0:\n"), 0o644)
	fs.addData("etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644)

	var insmods []string
	for _, m := range mods {
		plain, err := decompressedModule(m, filepath.Join(modCache, k.Release))
		if err != nil {
			return err
		}
		name := "lib/modules/" + m.Name + ".ko"
		fs.addFile(name, plain, 0o644)
		insmods = append(insmods, "/"+name)
	}

	var runs []string
	for _, p := range pkgs {
		bin := "tests/" + strings.ReplaceAll(p.Rel, "/", "_") + ".test"
		fs.addFile(bin, p.Binary, 0o755)
		src := "src/" + p.Rel
		fs.mkdirAll(src)
		// Tests run in their package directory, as under go test; testdata
		// (golden files) comes along.
		if err := addTree(fs, filepath.Join(p.Dir, "testdata"), src+"/testdata"); err != nil {
			return err
		}
		runs = append(runs, fmt.Sprintf("run_pkg %s /%s /%s", p.Rel, src, bin))
	}
	fs.addData("init", []byte(initScript(k, insmods, runs, o)), 0o755)
	return fs.writeFile(out)
}

// addHostTools copies hostTools (following symlinks, keeping each link's name),
// their libraries and plugin directories.
func addHostTools(fs *initramfs, logf func(string, ...any)) error {
	libs := map[string]bool{}
	for _, t := range hostTools {
		p, err := exec.LookPath(t)
		if err != nil {
			logf("host has no %s: the VM will not have it either", t)
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return err
		}
		fs.addFile(real, real, 0o755)
		if real != p {
			fs.addSymlink(p, real)
		}
		// A tool on /usr/sbin is also found as /sbin/X on merged-/usr hosts.
		ls, err := lddLibs(real)
		if err != nil {
			return err
		}
		for _, l := range ls {
			libs[l] = true
		}
	}
	for _, d := range hostPluginDirs {
		if err := addTree(fs, d, d); err != nil {
			return err
		}
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			ls, err := lddLibs(filepath.Join(d, e.Name()))
			if err != nil {
				continue
			}
			for _, l := range ls {
				libs[l] = true
			}
		}
	}
	for l := range libs {
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			return err
		}
		fs.addFile(real, real, 0o755)
		if real != l {
			fs.addSymlink(l, real)
		}
	}
	for _, e := range hostEtc {
		if _, err := os.Stat(e); err == nil {
			fs.addFile(e, e, 0o644)
		}
	}
	// Debian's merged /usr: /lib and /lib64 are symlinks into /usr on the
	// host; in the VM the files sit at the paths ldd printed, which is enough.
	return nil
}

// Where the dynamic loader looks (Debian, amd64).
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// lddLibs lists the shared objects a dynamic ELF needs, recursively, and its
// loader, read from the ELF headers (running ldd on every xtables plugin
// takes tens of seconds here). A static binary or a non-ELF file has none.
func lddLibs(bin string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var visit func(p string, top bool) error
	visit = func(p string, top bool) error {
		f, err := elf.Open(p)
		if err != nil {
			if top {
				return nil
			}
			return fmt.Errorf("read %s: %w", p, err)
		}
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return fmt.Errorf("read loader of %s: %w", p, err)
			}
			interp := strings.TrimRight(string(b), "\x00")
			if !seen[interp] {
				seen[interp] = true
				out = append(out, interp)
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return nil // no dynamic section: static
		}
		for _, n := range needed {
			lib := ""
			for _, d := range libDirs {
				if _, err := os.Stat(filepath.Join(d, n)); err == nil {
					lib = filepath.Join(d, n)
					break
				}
			}
			if lib == "" {
				return fmt.Errorf("%s needs %s, not found in %v", p, n, libDirs)
			}
			if seen[lib] {
				continue
			}
			seen[lib] = true
			out = append(out, lib)
			if err := visit(lib, false); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(bin, true); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}

func checkStatic(bin string) error {
	out, _ := exec.Command("ldd", bin).CombinedOutput()
	if !bytes.Contains(out, []byte("not a dynamic executable")) && !bytes.Contains(out, []byte("statically linked")) {
		return fmt.Errorf("%s is dynamically linked; the VM needs busybox-static", bin)
	}
	return nil
}

// addTree copies a host directory (if it exists) into the archive at dst.
func addTree(img *initramfs, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return nil
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		name := filepath.ToSlash(filepath.Join(dst, rel))
		switch {
		case d.IsDir():
			img.mkdirAll(name)
		case d.Type()&os.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			img.addSymlink(name, t)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			img.addFile(name, p, uint32(info.Mode().Perm()))
		}
		return nil
	})
}

// Lines the init script prints for the runner to parse.
const (
	markBoot     = "HOPTRACE-VM-BOOTED"
	markPkgBegin = "HOPTRACE-VM-PKG-BEGIN"
	markPkgEnd   = "HOPTRACE-VM-PKG-END"
	markExit     = "HOPTRACE-VM-EXIT"
	markDmesg    = "HOPTRACE-VM-DMESG"
	markModFail  = "HOPTRACE-VM-INSMOD-FAILED"
)

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// initScript is /init: mount, load modules, run each test binary, report,
// power off. Everything goes to the console (ttyS0), which the runner reads.
func initScript(k *kernel, insmods, runs []string, o *options) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /run/docker
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# Kernel messages go to dmesg, printed at the end, not between test lines.
echo 1 > /proc/sys/kernel/printk
hostname hoptrace-vm
ip link set lo up
`)
	for _, m := range insmods {
		fmt.Fprintf(&b, "insmod %s || echo %s %s\n", m, markModFail, m)
	}
	for _, e := range vmEnv(k, o) {
		fmt.Fprintf(&b, "export %s\n", shellQuote(e))
	}
	fmt.Fprintf(&b, "echo %s $(uname -r) cpus=$(nproc) btf=$(test -e /sys/kernel/btf/vmlinux && echo yes || echo no)\n", markBoot)
	fmt.Fprintf(&b, `rc=0
run_pkg() {
	echo %s "$1"
	cd "$2" || { echo %s "$1" 127; rc=1; return; }
	"$3" -test.v -test.timeout=%s %s 2>&1
	r=$?
	cd /
	echo %s "$1" $r
	[ $r = 0 ] || rc=1
}
`, markPkgBegin, markPkgEnd, o.testTimeout, o.testArgs(), markPkgEnd)
	for _, r := range runs {
		b.WriteString(r + "\n")
	}
	fmt.Fprintf(&b, `echo %s-BEGIN
dmesg
echo %s-END
echo %s $rc
sync
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
`, markDmesg, markDmesg, markExit)
	return b.String()
}
