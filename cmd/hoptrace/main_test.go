package main

import (
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestHelpCommand: 'hoptrace help CMD' is 'hoptrace CMD --help'; 'help'
// alone lists the commands.
func TestHelpCommand(t *testing.T) {
	for _, c := range commands() {
		want, _, werr := runCmd(t, c.name, "--help")
		got, _, err := runCmd(t, "help", c.name)
		if c.name == "help" || c.name == "version" {
			continue // no flags of their own
		}
		if !errors.Is(err, errHelp) || !errors.Is(werr, errHelp) || got != want || !strings.Contains(got, "Usage: hoptrace "+c.name) {
			t.Errorf("help %s: %v, %.80q; want %s --help's text", c.name, err, got, c.name)
		}
	}
	all, _, err := runCmd(t, "help")
	if err != nil || !strings.Contains(all, "Commands:") || !strings.Contains(all, "hoptrace help <command>") {
		t.Errorf("help: %v\n%s", err, all)
	}
	if _, _, err := runCmd(t, "help", "nope"); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("help nope: %v, want a usage error naming it", err)
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		bi   debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
		}}, "dev-0123456789ab+dirty (2026-01-02T03:04:05Z)"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"},
		}}, "dev-abc"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	} {
		if got := versionFromBuildInfo(&tc.bi); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.bi, got, tc.want)
		}
	}
	out, _, err := runCmd(t, "version")
	if err != nil || !strings.HasPrefix(out, "hoptrace ") {
		t.Errorf("version: %v %q", err, out)
	}
}

// The collector runs less often, and the runtime with one P, unless GOGC,
// GOMEMLIMIT or GOMAXPROCS says otherwise.
func TestTuneRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	tuneRuntime(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d, want %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != memoryLimit {
		t.Errorf("memory limit %d, want %d", got, memoryLimit)
	}
	if got := runtime.GOMAXPROCS(3); got != maxProcs {
		t.Errorf("GOMAXPROCS %d, want %d", got, maxProcs)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	tuneRuntime(func(k string) string {
		return map[string]string{"GOGC": "50", "GOMEMLIMIT": "64MiB", "GOMAXPROCS": "3"}[k]
	})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set: GC percent %d, want it left at 100", got)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set: memory limit %d, want it left alone", got)
	}
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("with GOMAXPROCS set: %d, want it left at 3", got)
	}
}
