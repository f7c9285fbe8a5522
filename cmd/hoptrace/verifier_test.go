package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
)

// TestExplainVerifier: a verifier rejection is one line naming the program
// and the verifier's last words; the full log goes to --verifier-log.
func TestExplainVerifier(t *testing.T) {
	var log []string
	for i := range 300 {
		log = append(log, fmt.Sprintf("%d: (b7) r%d = 0", i, i%10))
	}
	log = append(log, "R1 invalid mem access 'scalar'")
	ve := &ebpf.VerifierError{Cause: syscall.EACCES, Log: log}
	// As tracer.Load reports it: the whole log after the first line.
	err := fmt.Errorf("load bpf programs: verifier rejected: %w\n%+v",
		fmt.Errorf("program hop_ingress: %w", ve), ve)

	for _, path := range []string{"", filepath.Join(t.TempDir(), "verifier.log")} {
		got := explainVerifier(err, path)
		msg := got.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, "hop_ingress") || !strings.Contains(msg, "invalid mem access") {
			t.Errorf("not one line naming the program and the cause: %q", msg)
		}
		var ve2 *ebpf.VerifierError
		if !errors.As(got, &ve2) || !errors.Is(got, syscall.EACCES) {
			t.Errorf("%q does not wrap the verifier error", msg)
		}
		if path == "" {
			if !strings.Contains(msg, "--verifier-log") {
				t.Errorf("no hint at --verifier-log: %q", msg)
			}
			continue
		}
		b, rerr := os.ReadFile(path)
		if rerr != nil || !strings.Contains(string(b), "150: (b7) r0 = 0") || !strings.Contains(msg, path) {
			t.Errorf("log file %v, %d bytes; message %q", rerr, len(b), msg)
		}
	}
	if other := errors.New("x"); explainVerifier(other, "") != other {
		t.Error("other errors are changed")
	}
}

// TestLoggerVerifierOneLine: a warning with such an error is one line too.
func TestLoggerVerifierOneLine(t *testing.T) {
	ve := &ebpf.VerifierError{Cause: syscall.EACCES, Log: []string{"0: (b7) r0 = 0", "R1 invalid mem access 'scalar'"}}
	err := fmt.Errorf("load bpf programs: verifier rejected: %w\n%+v", ve, ve)
	var b strings.Builder
	logger(&b, false, "").Warn("cannot attach", "iface", "eth0", "err", err, "n", 3)
	if got := b.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "invalid mem access") || !strings.Contains(got, " n=3") {
		t.Errorf("%q", got)
	}
}
