package tracer

// Sweeping stale legacy filters: those named after a hoptrace process that
// no longer runs (a SIGKILL leaves them; TCX links vanish with the process).

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/tracer/nsio"
)

// SweepStale removes legacy filters left by hoptrace processes that are no
// longer running (a hoptrace killed before it could detach), in the
// caller's netns and the named and Docker netns it can see, and the clsact
// qdiscs such a process created once nothing else is on them. Filters of
// running hoptrace processes are left alone.
func SweepStale() (removed int, err error) {
	seen := map[uint32]bool{}
	paths := []string{""}
	for _, dir := range []string{"/run/netns", "/var/run/docker/netns"} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			paths = append(paths, dir+"/"+e.Name())
		}
	}
	var errs []error
	for _, p := range paths {
		ns, err := openNetns(p)
		if err != nil {
			continue // a netns that vanished meanwhile
		}
		// Docker leaves plain files behind in its netns directory once a
		// sandbox is gone: only a file on nsfs is a namespace.
		var fs unix.Statfs_t
		if unix.Fstatfs(int(ns), &fs) != nil || fs.Type != unix.NSFS_MAGIC {
			ns.Close()
			continue
		}
		ino, err := handleInode(ns)
		if err != nil || seen[ino] {
			ns.Close()
			continue
		}
		seen[ino] = true
		n, err := sweepNetns(ns)
		ns.Close()
		removed += n
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep netns %q: %w", p, err))
		}
	}
	return removed, errors.Join(errs...)
}

func sweepNetns(ns netns.NsHandle) (int, error) {
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, fmt.Errorf("open netlink: %w", err)
	}
	defer nl.Close()
	links, err := nsio.RetryDump(nl.LinkList)
	if err != nil {
		return 0, fmt.Errorf("list links: %w", err)
	}
	var errs []error
	removed := 0
	for _, lnk := range links {
		ownQdisc := false
		stale := func(name string) bool {
			pid, start, q, ok := parseFilterName(name)
			if !ok || processAlive(pid, start) {
				return false
			}
			ownQdisc = ownQdisc || q
			return true
		}
		// First pass finds whether a stale filter says the qdisc was ours.
		n, err := removeFilters(nl, lnk, stale, false)
		removed += n
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ownQdisc {
			if _, err := removeFilters(nl, lnk, func(string) bool { return false }, true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// selfTag identifies this process in filter names: its pid and its start
// time (clock ticks since boot), so a recycled pid is not taken for us.
var selfTag = func() string {
	pid := os.Getpid()
	if st := processStart(pid); st != 0 {
		return fmt.Sprintf("%d.%d", pid, st)
	}
	return strconv.Itoa(pid)
}()

// parseFilterName splits "hoptrace-<pid>[.<start>]-<dir>[-q]".
func parseFilterName(name string) (pid int, start uint64, ownQdisc, ok bool) {
	rest, ok := strings.CutPrefix(name, FilterPrefix)
	if !ok {
		return 0, 0, false, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) < 2 {
		return 0, 0, false, false
	}
	pidStr, startStr, hasStart := strings.Cut(parts[0], ".")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, 0, false, false
	}
	if hasStart {
		if start, err = strconv.ParseUint(startStr, 10, 64); err != nil {
			return 0, 0, false, false
		}
	}
	return pid, start, len(parts) > 2 && parts[2] == "q", true
}

// processAlive reports whether the process that made a filter still runs:
// the pid exists and, when the name carries one, with the same start time.
func processAlive(pid int, start uint64) bool {
	err := unix.Kill(pid, 0)
	if err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	if start == 0 {
		return true
	}
	st := processStart(pid)
	return st == 0 || st == start
}

// processStart is field 22 of /proc/<pid>/stat, 0 when unreadable.
func processStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// fields after its closing parenthesis, which is followed by field 3.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
