package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/resolver"
	"github.com/hoptrace/hoptrace/tracer"
)

// fakeHost is a host for the check's probes.
type fakeHost struct {
	noBTF   bool
	missing []string
	loadErr error
	feat    tracer.Features
	docker  error
}

func (h fakeHost) probes() checkProbes {
	return checkProbes{
		kernel: func() string { return "6.1.0-test (x86_64)" },
		btf: func() error {
			if h.noBTF {
				return os.ErrNotExist
			}
			return nil
		},
		caps: func() ([]string, []string, error) {
			return []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN"}, h.missing, nil
		},
		load:   func() (tracer.Features, error) { return h.feat, h.loadErr },
		docker: func(context.Context) (string, error) { return "unix:///var/run/docker.sock", h.docker },
	}
}

// TestCheckLines: one line per finding, saying what works and what
// degrades; fatal ones are what tracing cannot do without.
func TestCheckLines(t *testing.T) {
	full := tracer.Features{TCX: true, SkbKey: true, Drops: true}
	for _, tc := range []struct {
		name  string
		host  fakeHost
		want  []string // substrings of the output, in order
		fatal []string
	}{
		{"everything", fakeHost{feat: full}, []string{
			"kernel        yes  6.1.0-test", "BTF           yes", "capabilities  yes  has CAP_SYS_ADMIN and CAP_NET_ADMIN",
			"BPF programs  yes", "ring buffer   yes", "TCX           yes", "skb key       yes", "drop reasons  yes", "Docker        yes  answers at unix:///var/run/docker.sock",
		}, nil},
		{"old kernel", fakeHost{feat: tracer.Features{}, docker: resolver.ErrNoDocker}, []string{
			"TCX           no   no (kernel < 6.6): clsact", "'hoptrace cleanup'", "skb key       no   no (kernel < 6.3): the hops of a packet are joined by content",
			"drop reasons  no   no (kernel < 5.17): drops are not reported", "Docker        off  not asked",
		}, nil},
		{"no Docker", fakeHost{feat: full, docker: errors.New("ping docker: connection refused")}, []string{
			"Docker        no   not reachable at unix:///var/run/docker.sock (ping docker: connection refused): namespaces are named",
		}, nil},
		{"not root", fakeHost{missing: []string{"CAP_NET_ADMIN"}, loadErr: fmt.Errorf("load: %w", tracer.ErrPermission)}, []string{
			"capabilities  no   missing CAP_NET_ADMIN: run as root", "BPF programs  no   not permitted to load them: run 'hoptrace check' as root",
		}, []string{"capabilities", "BPF programs"}},
		{"no BTF", fakeHost{noBTF: true, loadErr: fmt.Errorf("load kernel btf: %w", tracer.ErrNoBTF)}, []string{
			"BTF           no   no /sys/kernel/btf/vmlinux", "BPF programs  no   cannot load without BTF",
		}, []string{"BTF", "BPF programs"}},
		{"verifier", fakeHost{loadErr: errors.New("load program: invalid argument\nverifier log line 1\nline 2")}, []string{
			"BPF programs  no   do not load: load program: invalid argument\n",
		}, []string{"BPF programs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := runProbes(context.Background(), tc.host.probes())
			var out bytes.Buffer
			if err := writeCheck(&out, lines); err != nil {
				t.Fatal(err)
			}
			s := out.String()
			rest := s
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, s)
				}
				rest = rest[i+len(w):]
			}
			var fatal []string
			for _, l := range lines {
				if l.fatal {
					fatal = append(fatal, l.what)
				}
			}
			if strings.Join(fatal, ",") != strings.Join(tc.fatal, ",") {
				t.Errorf("fatal %v, want %v", fatal, tc.fatal)
			}
			if n := strings.Count(s, "\n"); n != len(lines) {
				t.Errorf("%d lines for %d findings:\n%s", n, len(lines), s)
			}
		})
	}
}

// TestCheckHost runs the check on this host (root: it loads the programs).
func TestCheckHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF programs")
	}
	out, stderr, err := runCmd(t, "check", "--no-docker")
	if err != nil {
		t.Fatalf("check: %v\n%s%s", err, out, stderr)
	}
	for _, w := range []string{"BTF           yes", "BPF programs  yes", "ring buffer   yes", "TCX ", "skb key ", "drop reasons ", "Docker        off"} {
		if !strings.Contains(out, w) {
			t.Errorf("check lacks %q:\n%s", w, out)
		}
	}
	if stderr != "" {
		t.Errorf("stderr %q", stderr)
	}
	// Without the capabilities it says so and fails.
	old := procCreds
	t.Cleanup(func() { procCreds = old })
	procCreds = func() (int, uint64, error) { return 65534, 0, nil }
	out, _, err = runCmd(t, "check", "--no-docker")
	if err == nil || !strings.Contains(out, "capabilities  no   missing CAP_SYS_ADMIN") {
		t.Errorf("check without capabilities: %v\n%s", err, out)
	}
}
