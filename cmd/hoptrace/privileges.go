package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// What hoptrace needs, found by running it with one capability at a time
// removed (README, "Privileges", says the same):
//
//   - CAP_SYS_ADMIN to enter other network namespaces (setns: reading a
//     container's interfaces, attaching inside it, sweeping filters there).
//     Since 5.8 it also grants everything CAP_BPF and CAP_PERFMON do (load
//     the programs, read kernel pointers, the kfree_skb tracepoint), and
//     CAP_BPF + CAP_PERFMON cannot enter namespaces, so those two are never
//     asked for.
//   - CAP_NET_ADMIN for clsact qdiscs and cls_bpf filters (legacy attach on
//     kernels before 6.6, --legacy, cleanup). TCX links need only the above,
//     but whether TCX works is only known at the first attach, so every
//     capture asks for it.
//   - As a user other than root, CAP_DAC_READ_SEARCH: Docker's namespaces
//     are under /var/run/docker, which only root may search (and
//     /proc/PID/ns/net of another user's process needs CAP_SYS_PTRACE).
//     Not with --no-docker.
//   - On kernels before 5.11, which charge BPF maps to RLIMIT_MEMLOCK,
//     CAP_SYS_RESOURCE to lift the limit, unless it is unlimited already.
//
// Reading kernel BTF (/sys/kernel/btf/vmlinux) needs nothing.

// capability is one the check may ask for.
type capability struct {
	bit  int
	name string
}

var (
	capSysAdmin      = capability{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}
	capNetAdmin      = capability{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}
	capDacReadSearch = capability{unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"}
	capSysResource   = capability{unix.CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"}
)

// errNotPermitted: the process lacks capabilities a command needs.
var errNotPermitted = errors.New("not permitted")

// privileges says what a command needs beyond the base capabilities.
type privileges struct {
	netAdmin bool // changes TC qdiscs and filters (every capture, cleanup)
	bpf      bool // loads BPF programs (captures)
	docker   bool // reads Docker's namespaces (not with --no-docker)
}

// procCreds is the part of the process the check looks at; a variable so
// tests can pose as any process.
var procCreds = func() (euid int, effective uint64, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, 0, fmt.Errorf("capget: %w", err)
	}
	return os.Geteuid(), uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// memlockLimited reports a kernel that charges BPF maps to a limited
// RLIMIT_MEMLOCK (before 5.11); a variable for tests.
var memlockLimited = func() bool {
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	if major > 5 || (major == 5 && minor >= 11) {
		return false
	}
	var lim unix.Rlimit
	return unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) != nil || lim.Cur != unix.RLIM_INFINITY
}

// need lists the capabilities p needs in a process with this euid.
func (p privileges) need(euid int) []capability {
	need := []capability{capSysAdmin}
	if p.netAdmin {
		need = append(need, capNetAdmin)
	}
	if p.docker && euid != 0 {
		need = append(need, capDacReadSearch)
	}
	if p.bpf && memlockLimited() {
		need = append(need, capSysResource)
	}
	return need
}

// checkPrivileges fails, before anything is loaded or attached, with one
// line naming what the command needs and every capability missing. When
// the capabilities cannot be read it passes: the kernel will say.
func checkPrivileges(cmd string, p privileges) error {
	all, missing, err := p.missing()
	if err != nil || len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w: run as root, or with %s (missing %s)", cmd, errNotPermitted, andList(all), strings.Join(missing, ", "))
}

// missing lists the capabilities p needs in this process and those of them
// it lacks; an error when they cannot be read.
func (p privileges) missing() (all, missing []string, err error) {
	euid, eff, err := procCreds()
	if err != nil {
		return nil, nil, err
	}
	for _, c := range p.need(euid) {
		all = append(all, c.name)
		if eff&(1<<uint(c.bit)) == 0 {
			missing = append(missing, c.name)
		}
	}
	return all, missing, nil
}

// andList joins names as "A", "A and B", "A, B and C".
func andList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}
