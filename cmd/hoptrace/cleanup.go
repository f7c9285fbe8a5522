package main

import (
	"context"
	"fmt"
	"io"

	"github.com/hoptrace/hoptrace/tracer"
)

const cleanupUsage = `Usage: hoptrace cleanup

Removes legacy TC filters (named hoptrace-<pid>-...) left behind by a hoptrace
that was killed before it could detach (SIGKILL, a crash), on kernels without
TCX. It looks in the host namespace, /run/netns and Docker's namespaces, and
removes a clsact qdisc only if that hoptrace created it and nothing else is on
it. Filters of hoptrace processes still running, and anything not hoptrace's,
are never touched. TCX hooks (kernel >= 6.6) vanish with the process and need
no cleanup. Needs root.
`

func runCleanup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("cleanup", cleanupUsage, stdout, stderr)
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("cleanup: unexpected argument %q", fs.Arg(0))
	}
	// It enters every namespace (Docker's too) and deletes filters.
	if err := checkPrivileges("cleanup", privileges{netAdmin: true, docker: true}); err != nil {
		return err
	}
	n, err := tracer.SweepStale()
	fmt.Fprintf(stdout, "removed %d stale hoptrace filter(s)\n", n)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}
