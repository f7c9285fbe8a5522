package tracer

// Network namespace helpers: open one, its inode, and running a function
// inside one on a locked thread that is thrown away if switching back fails.

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"

	"github.com/hoptrace/hoptrace/tracer/nsio"
)

func openNetns(path string) (netns.NsHandle, error) {
	var (
		ns  netns.NsHandle
		err error
	)
	if path == "" {
		ns, err = netns.GetFromPath("/proc/thread-self/ns/net")
	} else {
		ns, err = netns.GetFromPath(path)
	}
	if err != nil {
		return -1, fmt.Errorf("open netns %q: %w", path, err)
	}
	return ns, nil
}

func handleInode(ns netns.NsHandle) (uint32, error) { return nsio.FdIno(int(ns)) }

// inNetns runs fn on a locked thread switched to ns. If switching back
// fails the thread stays locked, so the runtime discards it with the
// goroutine instead of reusing a thread in the wrong netns.
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if orig.Equal(ns) {
			runtime.UnlockOSThread()
			errc <- fn()
			return
		}
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
