package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

func TestCheckPrivileges(t *testing.T) {
	all := ^uint64(0)
	bit := func(cs ...capability) uint64 {
		var m uint64
		for _, c := range cs {
			m |= 1 << uint(c.bit)
		}
		return m
	}
	capture := privileges{netAdmin: true, bpf: true, docker: true}
	for _, c := range []struct {
		name    string
		euid    int
		eff     uint64
		memlock bool
		p       privileges
		want    string // "" for no error
	}{
		{"root", 0, all, false, capture, ""},
		{"root without CAP_NET_ADMIN", 0, all &^ bit(capNetAdmin), false, capture,
			"trace: not permitted: run as root, or with CAP_SYS_ADMIN and CAP_NET_ADMIN (missing CAP_NET_ADMIN)"},
		{"nobody", 65534, 0, false, capture,
			"trace: not permitted: run as root, or with CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_DAC_READ_SEARCH (missing CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_DAC_READ_SEARCH)"},
		{"nobody without Docker", 65534, bit(capSysAdmin, capNetAdmin), false, privileges{netAdmin: true, bpf: true}, ""},
		{"old kernel, limited memlock", 0, all &^ bit(capSysResource), true, capture,
			"trace: not permitted: run as root, or with CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_SYS_RESOURCE (missing CAP_SYS_RESOURCE)"},
		{"links as nobody", 65534, 0, false, privileges{},
			"trace: not permitted: run as root, or with CAP_SYS_ADMIN (missing CAP_SYS_ADMIN)"},
		// CAP_BPF and CAP_PERFMON alone cannot enter namespaces.
		{"CAP_BPF and CAP_PERFMON", 0, 1<<unix.CAP_BPF | 1<<unix.CAP_PERFMON | bit(capNetAdmin), false, capture,
			"trace: not permitted: run as root, or with CAP_SYS_ADMIN and CAP_NET_ADMIN (missing CAP_SYS_ADMIN)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			oldCreds, oldMemlock := procCreds, memlockLimited
			t.Cleanup(func() { procCreds, memlockLimited = oldCreds, oldMemlock })
			procCreds = func() (int, uint64, error) { return c.euid, c.eff, nil }
			memlockLimited = func() bool { return c.memlock }
			err := checkPrivileges("trace", c.p)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("%v, want no error", err)
			case c.want != "" && (err == nil || err.Error() != c.want || !errors.Is(err, errNotPermitted)):
				t.Errorf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}

// TestNotPermittedOneLine runs every subcommand that needs privileges as
// nobody, with no capabilities and then with CAP_SYS_ADMIN only: each fails
// before touching anything with one line naming the missing capabilities.
func TestNotPermittedOneLine(t *testing.T) {
	testenv.RequireRoot(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hoptrace")
	testenv.Command(t, "cp", hoptraceBinary(t), bin)
	rec := filepath.Join(dir, "x.hop")
	cmds := map[string][]string{
		"trace":   {"trace", "--duration", "1s"},
		"record":  {"record", "-w", rec, "--duration", "1s"},
		"latency": {"latency", "--duration", "1s"},
		"cleanup": {"cleanup"},
		"links":   {"links"},
	}
	for _, caps := range []string{"", "+sys_admin"} {
		for name, args := range cmds {
			t.Run(name+"/"+strings.TrimPrefix(caps, "+"), func(t *testing.T) {
				pargs := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}
				if caps == "" {
					pargs = append(pargs, "--inh-caps=-all")
				} else {
					pargs = append(pargs, "--inh-caps="+caps, "--ambient-caps="+caps)
				}
				cmd := exec.Command(setpriv, append(append(pargs, bin), args...)...)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				err := cmd.Run()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != exitError {
					t.Fatalf("as nobody: %v, want exit %d; stderr: %s", err, exitError, errb.String())
				}
				want := []string{"hoptrace: " + name + ": not permitted: run as root, or with CAP_SYS_ADMIN"}
				switch {
				case name == "links" && caps == "":
					want = append(want, "(missing CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH)")
				case name == "links":
					want = append(want, "(missing CAP_DAC_READ_SEARCH)")
				case caps == "":
					want = append(want, "CAP_NET_ADMIN and CAP_DAC_READ_SEARCH", "(missing CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_DAC_READ_SEARCH)")
				default:
					want = append(want, "(missing CAP_NET_ADMIN, CAP_DAC_READ_SEARCH)")
				}
				msg := errb.String()
				for _, w := range want {
					if !strings.Contains(msg, w) {
						t.Errorf("stderr lacks %q:\n%s", w, msg)
					}
				}
				if strings.Count(msg, "\n") != 1 || out.Len() != 0 {
					t.Errorf("want one line on stderr and nothing on stdout; stdout %q, stderr %q", out.String(), msg)
				}
				if _, err := os.Stat(rec); err == nil {
					t.Errorf("record created %s before the check", rec)
				}
			})
		}
	}
}
