package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

const consoleSample = `[    1.0] some kernel line
HOPTRACE-VM-BOOTED 6.12.117+deb12-cloud-amd64 cpus=2 btf=yes
HOPTRACE-VM-PKG-BEGIN tracer
=== RUN   TestPingAndTCP
=== RUN   TestPingAndTCP/tcx
    tracer_test.go:171: features: tcx=yes skb-key=yes drops=yes
--- PASS: TestPingAndTCP/tcx (3.80s)
=== RUN   TestPingAndTCP/legacy
    tracer_test.go:171: features: tcx=yes skb-key=no drops=yes
    tracer_test.go:180: boom
--- FAIL: TestPingAndTCP/legacy (3.50s)
--- FAIL: TestPingAndTCP (7.31s)
=== RUN   TestDocker
    docker_test.go:58: HOPTRACE_NO_DOCKER=1: no Docker here
--- SKIP: TestDocker (0.01s)
=== RUN   TestOld
--- SKIP: TestOld (0.00s)
    old_test.go:3: reason printed after the result
FAIL
HOPTRACE-VM-PKG-END tracer 1
HOPTRACE-VM-PKG-BEGIN resolver
=== RUN   TestHang
panic: test timed out after 7m30s
HOPTRACE-VM-DMESG-BEGIN
--- PASS: NotATest (0.00s)
HOPTRACE-VM-DMESG-END
HOPTRACE-VM-EXIT 1
`

func parseSample(t *testing.T, release, sample string) *kernelResult {
	t.Helper()
	r := &kernelResult{K: &kernel{Short: "x", Release: release}}
	p := newParser(r, time.Now())
	for _, l := range strings.Split(sample, "\n") {
		p.line(strings.TrimSuffix(l, "\r"))
	}
	return r
}

func TestParseConsole(t *testing.T) {
	r := parseSample(t, "6.12.117+deb12-cloud-amd64", consoleSample)
	if !r.Booted || r.ExitRC != 1 {
		t.Fatalf("booted %v exit %d", r.Booted, r.ExitRC)
	}
	var got []string
	for _, tr := range r.Tests {
		got = append(got, fmt.Sprintf("%s %s %s %q", tr.Status, tr.Pkg, tr.Name, tr.Reason()))
	}
	want := []string{
		`PASS tracer TestPingAndTCP/tcx "tracer_test.go:171: features: tcx=yes skb-key=yes drops=yes"`,
		`FAIL tracer TestPingAndTCP/legacy "tracer_test.go:180: boom"`,
		`FAIL tracer TestPingAndTCP ""`,
		`SKIP tracer TestDocker "docker_test.go:58: HOPTRACE_NO_DOCKER=1: no Docker here"`,
		`SKIP tracer TestOld "old_test.go:3: reason printed after the result"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(r.Pkgs) != 2 || r.Pkgs[0].RC != 1 || !r.Pkgs[0].Ended || r.Pkgs[1].Ended {
		t.Errorf("packages: %+v %+v", r.Pkgs[0], r.Pkgs[1])
	}
	if len(r.Dmesg) != 1 {
		t.Errorf("dmesg: %q", r.Dmesg)
	}
	why := strings.Join(r.failures(), "\n")
	for _, w := range []string{"tracer: test binary exited 1", "resolver: test binary did not finish", "TestPingAndTCP/legacy failed"} {
		if !strings.Contains(why, w) {
			t.Errorf("failures lack %q:\n%s", w, why)
		}
	}
	if s := r.featureSummary(); s != "tcx=yes skb-key=yes drops=yes: TCX, skb key, drop reasons" {
		t.Errorf("feature summary %q", s)
	}
	var buf bytes.Buffer
	r.report(&buf)
	if !strings.Contains(buf.String(), "FAILED") {
		t.Errorf("report does not say FAILED:\n%s", buf.String())
	}
}

func TestFeatureExpectations(t *testing.T) {
	for _, tc := range []struct {
		release, sample string
		problems        []string
	}{
		{"6.1.0-56-cloud-amd64", "    x.go:1: features: tcx=no skb-key=no drops=yes", nil},
		{"6.12.117+deb12-cloud-amd64", "    x.go:1: features: tcx=no skb-key=no drops=yes",
			[]string{"tcx=no but kernel 6.12 should give tcx=yes", "skb-key=no but kernel 6.12 should give skb-key=yes"}},
		{"6.1.0-56-cloud-amd64", "    x.go:1: features: tcx=yes skb-key=no drops=yes",
			[]string{"tcx=yes but kernel 6.1 should give tcx=no"}},
		{"6.12.117+deb12-cloud-amd64", "=== RUN   TestX\n    x.go:1: no TCX\n--- SKIP: TestX (0.00s)",
			[]string{"TestX skipped"}},
		{"6.1.0-56-cloud-amd64", "=== RUN   TestX\n    x.go:1: no TCX\n--- SKIP: TestX (0.00s)", nil},
	} {
		r := parseSample(t, tc.release, "HOPTRACE-VM-PKG-BEGIN tracer\n"+tc.sample+"\nHOPTRACE-VM-PKG-END tracer 0")
		got := r.featureProblems()
		if len(got) != len(tc.problems) {
			t.Errorf("%s %q: problems %q, want %q", tc.release, tc.sample, got, tc.problems)
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], tc.problems[i]) {
				t.Errorf("%s: problem %q, want it to contain %q", tc.release, got[i], tc.problems[i])
			}
		}
	}
}

func TestResolveNames(t *testing.T) {
	if s := seriesOf("linux-image-6.12.117+deb12-cloud-amd64"); s != "6.12" {
		t.Errorf("series %q", s)
	}
	if s := seriesOf("linux-image-6.1.0-56-cloud-amd64"); s != "6.1" {
		t.Errorf("series %q", s)
	}
	if !versionLess("linux-image-6.1.0-9-cloud-amd64", "linux-image-6.1.0-56-cloud-amd64") {
		t.Error("6.1.0-9 should sort before 6.1.0-56")
	}
	if v := kernelVersion("6.12.117+deb12-cloud-amd64"); v != [2]int{6, 12} {
		t.Errorf("version %v", v)
	}
}

// TestDiscoverPackages runs go list on this module: the VM's own check and
// testenv are always chosen.
func TestDiscoverPackages(t *testing.T) {
	root, err := moduleRoot(t.Context())
	if err != nil {
		t.Skip(err)
	}
	pkgs, err := discoverPackages(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, p := range pkgs {
		got[p.Rel] = true
	}
	for _, want := range []string{"vmtests/testenv", "vmtests/vmcheck"} {
		if !got[want] {
			t.Errorf("%s not discovered: %v", want, got)
		}
	}
	if got["cmd/vmtest"] {
		t.Error("cmd/vmtest has no privileged tests but was chosen")
	}
}
