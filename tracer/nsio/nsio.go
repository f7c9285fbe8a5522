// Package nsio holds the few helpers the tracer and the resolver both need
// to read network namespaces through netlink: a namespace's inode (how
// hoptrace names a namespace everywhere) and the retry of a netlink dump the
// kernel interrupted. Said once, here.
package nsio

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FdIno is the inode of the namespace open at fd.
func FdIno(fd int) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat netns: %w", err)
	}
	return uint32(st.Ino), nil
}

// PathIno is the inode of the namespace at path (/proc/PID/ns/net, a bind
// mount under /run/netns); the error is the stat's own, unwrapped, so
// callers can tell a vanished namespace (ENOENT) from a denied one.
func PathIno(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}

// dumpTries bounds the retries of an interrupted dump.
const dumpTries = 5

// RetryDump runs a netlink dump again when the kernel interrupted it
// because the table changed while it was read (netlink.ErrDumpInterrupted).
func RetryDump[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpTries {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
