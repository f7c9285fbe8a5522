package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestLddLibs compares the ELF reading with ldd on a host binary.
func TestLddLibs(t *testing.T) {
	bin, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("no ip binary on this host")
	}
	got, err := lddLibs(bin)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Skip("ldd: ", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(f[0], "linux-vdso") {
			continue
		}
		want := f[0]
		if len(f) >= 3 && f[1] == "=>" {
			want = f[2]
		}
		found := false
		for _, g := range got {
			a, _ := os.Stat(g)
			b, _ := os.Stat(want)
			if a != nil && b != nil && os.SameFile(a, b) {
				found = true
			}
		}
		if !found {
			t.Errorf("ldd lists %s, lddLibs does not: %v", want, got)
		}
	}
}
