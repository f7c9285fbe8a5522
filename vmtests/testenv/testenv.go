// Package testenv gives hoptrace's tests the parts they run against: a
// throwaway bridge topology of network namespaces joined by veth pairs, and
// real Docker containers. Everything a test creates is removed in t.Cleanup.
//
// Privileged helpers skip when not root, and fail instead under CI=true, so a
// green CI means the privileged tests really ran.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// InCI reports whether tests run in CI, where privileged tests must not skip.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// AbsentEnv names the variable in which a test environment that cannot
// have some features declares them, comma-separated ("docker"): the VMs of
// cmd/vmtest have no Docker. Only what is declared there may skip under CI.
const AbsentEnv = "HOPTRACE_ABSENT"

// Lacks skips a test that needs a feature this machine lacks. Under CI it
// fails instead, unless $HOPTRACE_ABSENT declares the feature absent: a
// green CI must not hide a test that silently did not run.
func Lacks(t testing.TB, feature, reason string) {
	t.Helper()
	if InCI() && !declaredAbsent(feature) {
		t.Fatalf("CI=true but cannot run (%s is not declared absent in $%s): %s", feature, AbsentEnv, reason)
	}
	t.Skip(reason)
}

func declaredAbsent(feature string) bool {
	for _, f := range strings.Split(os.Getenv(AbsentEnv), ",") {
		if strings.TrimSpace(f) == feature {
			return true
		}
	}
	return false
}

// SkipOrFail skips the test with the reason, or fails it under CI.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true but cannot run: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails under CI) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root (BPF, netns, veth); run with sudo")
	}
}

// RequireCommand skips (or fails under CI) unless the command is on PATH.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, name+" is not installed (run vmtests/testbed.sh)")
	}
	return p
}

// Command runs a command and fails the test with its output if it fails.
func Command(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
