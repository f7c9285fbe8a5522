package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// readNewc parses a newc archive back into name -> (mode, data).
func readNewc(t *testing.T, b []byte) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		off = align(off + 110 + namesize)
		data := string(b[off : off+size])
		off = align(off + size)
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = [2]string{strconv.FormatInt(int64(mode), 8), data}
	}
}

func TestInitramfs(t *testing.T) {
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := newInitramfs()
	fs.addFile("/usr/bin/hello", src, 0o755)
	fs.addData("init", []byte("#!/bin/sh\n"), 0o755)
	fs.addSymlink("bin/sh", "busybox")
	fs.addCharDev("dev/console", 5, 1)
	var buf bytes.Buffer
	if err := fs.write(&buf); err != nil {
		t.Fatal(err)
	}
	got := readNewc(t, buf.Bytes())
	want := map[string][2]string{
		"usr":           {"40755", ""},
		"usr/bin":       {"40755", ""},
		"usr/bin/hello": {"100755", "hello"},
		"init":          {"100755", "#!/bin/sh\n"},
		"bin":           {"40755", ""},
		"bin/sh":        {"120777", "busybox"},
		"dev":           {"40755", ""},
		"dev/console":   {"20600", ""},
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: %q, want %q", n, got[n], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v", got)
	}
}
