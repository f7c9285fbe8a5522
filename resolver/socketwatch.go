package resolver

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchSocket reports when the Docker daemon's unix socket is created (a
// restarted daemon makes it anew). It returns nil, a channel that never
// fires, for a daemon that is not on a unix socket or when inotify is not
// available: the backoff timer then does the work alone.
func watchSocket(ctx context.Context, host string, log *slog.Logger) <-chan struct{} {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok || path == "" {
		return nil
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		log.Debug("watch docker socket", "err", err)
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ATTRIB); err != nil {
		unix.Close(fd)
		log.Debug("watch docker socket", "dir", dir, "err", err)
		return nil
	}
	// A non-blocking fd gives a pollable File: Close unblocks the Read.
	f := os.NewFile(uintptr(fd), "inotify")
	ch := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			if socketEvent(buf[:n], base) {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch
}

// socketEvent reports whether a read of inotify events names base.
func socketEvent(b []byte, base string) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return false
		}
		name := strings.TrimRight(string(b[unix.SizeofInotifyEvent:end]), "\x00")
		if name == base {
			return true
		}
		b = b[end:]
	}
	return false
}
