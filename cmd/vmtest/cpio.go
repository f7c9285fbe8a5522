package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// newc cpio, the format the kernel unpacks as an initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst). Written here
// so the runner needs no cpio binary.

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// cpioEntry is one file of the archive: a directory, a regular file copied
// from the host (src) or given inline (data), or a symlink (target).
type cpioEntry struct {
	name   string    // path inside the archive, without leading slash
	mode   uint32    // permission bits
	kind   uint32    // modeDir, modeFile or modeSymlink
	src    string    // host file to copy, for files
	data   []byte    // inline content, for files without src
	target string    // for symlinks
	rdev   [2]uint32 // major, minor, for device nodes
}

// initramfs collects entries and writes them as one newc archive, parents
// before children.
type initramfs struct {
	entries map[string]cpioEntry
}

func newInitramfs() *initramfs { return &initramfs{entries: map[string]cpioEntry{}} }

func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

func (fs *initramfs) mkdirAll(dir string) {
	dir = clean(dir)
	for d := dir; d != "" && d != "."; d = path.Dir(d) {
		if _, ok := fs.entries[d]; ok {
			continue
		}
		fs.entries[d] = cpioEntry{name: d, mode: 0o755, kind: modeDir}
	}
}

// addFile copies the host file src into the archive as name.
func (fs *initramfs) addFile(name, src string, mode uint32) {
	name = clean(name)
	fs.mkdirAll(path.Dir(name))
	fs.entries[name] = cpioEntry{name: name, mode: mode, kind: modeFile, src: src}
}

// addData adds a file with inline content.
func (fs *initramfs) addData(name string, data []byte, mode uint32) {
	name = clean(name)
	fs.mkdirAll(path.Dir(name))
	fs.entries[name] = cpioEntry{name: name, mode: mode, kind: modeFile, data: data}
}

func (fs *initramfs) addSymlink(name, target string) {
	name = clean(name)
	fs.mkdirAll(path.Dir(name))
	fs.entries[name] = cpioEntry{name: name, mode: 0o777, kind: modeSymlink, target: target}
}

// addCharDev adds a character device node, e.g. dev/console (5, 1).
func (fs *initramfs) addCharDev(name string, major, minor uint32) {
	name = clean(name)
	fs.mkdirAll(path.Dir(name))
	fs.entries[name] = cpioEntry{name: name, mode: 0o600, kind: modeCharDev, rdev: [2]uint32{major, minor}}
}

func (fs *initramfs) has(name string) bool {
	_, ok := fs.entries[clean(name)]
	return ok
}

// writeFile writes the archive to the host file out.
func (fs *initramfs) writeFile(out string) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close initramfs: %w", cerr)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := fs.write(w); err != nil {
		return err
	}
	return w.Flush()
}

func (fs *initramfs) write(w io.Writer) error {
	names := make([]string, 0, len(fs.entries))
	for n := range fs.entries {
		names = append(names, n)
	}
	// Lexical order puts "a" before "a/b": parents come first.
	sort.Strings(names)
	cw := &cpioWriter{w: w, ino: 1}
	for _, n := range names {
		if err := cw.entry(fs.entries[n]); err != nil {
			return err
		}
	}
	return cw.trailer()
}

type cpioWriter struct {
	w   io.Writer
	ino uint32
	off int64
}

func (cw *cpioWriter) raw(b []byte) error {
	n, err := cw.w.Write(b)
	cw.off += int64(n)
	return err
}

func (cw *cpioWriter) pad() error {
	if r := cw.off % 4; r != 0 {
		return cw.raw(make([]byte, 4-r))
	}
	return nil
}

func (cw *cpioWriter) header(name string, mode uint32, nlink uint32, size int64, rdev ...uint32) error {
	cw.ino++
	var rmaj, rmin uint32
	if len(rdev) == 2 {
		rmaj, rmin = rdev[0], rdev[1]
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		cw.ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, rmaj, rmin, len(name)+1, 0)
	if err := cw.raw([]byte(hdr)); err != nil {
		return err
	}
	if err := cw.raw(append([]byte(name), 0)); err != nil {
		return err
	}
	return cw.pad()
}

func (cw *cpioWriter) entry(e cpioEntry) error {
	switch e.kind {
	case modeDir:
		return cw.header(e.name, modeDir|e.mode, 2, 0)
	case modeCharDev:
		return cw.header(e.name, modeCharDev|e.mode, 1, 0, e.rdev[0], e.rdev[1])
	case modeSymlink:
		if err := cw.header(e.name, modeSymlink|e.mode, 1, int64(len(e.target))); err != nil {
			return err
		}
		if err := cw.raw([]byte(e.target)); err != nil {
			return err
		}
		return cw.pad()
	}
	if e.src == "" {
		if err := cw.header(e.name, modeFile|e.mode, 1, int64(len(e.data))); err != nil {
			return err
		}
		if err := cw.raw(e.data); err != nil {
			return err
		}
		return cw.pad()
	}
	f, err := os.Open(e.src)
	if err != nil {
		return fmt.Errorf("add %s to initramfs: %w", e.name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("add %s to initramfs: %w", e.name, err)
	}
	if st.Size() >= 1<<32 {
		return fmt.Errorf("add %s to initramfs: %d bytes is too big for newc", e.name, st.Size())
	}
	if err := cw.header(e.name, modeFile|e.mode, 1, st.Size()); err != nil {
		return err
	}
	n, err := io.Copy(cw.w, f)
	cw.off += n
	if err != nil {
		return fmt.Errorf("add %s to initramfs: %w", e.name, err)
	}
	if n != st.Size() {
		return fmt.Errorf("add %s to initramfs: file changed size while copying", e.name)
	}
	return cw.pad()
}

func (cw *cpioWriter) trailer() error {
	if err := cw.header("TRAILER!!!", 0, 1, 0); err != nil {
		return err
	}
	return nil
}
