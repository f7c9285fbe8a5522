package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

const testenvPkg = "vmtests/testenv"

// testPkg is one package whose test binary runs in the VM.
type testPkg struct {
	Rel    string // path relative to the module root: "tracer", "vmtests/testenv"
	Dir    string // absolute source directory on the host
	Binary string // the static test binary, once built
}

// privilegedRE finds the calls that make a test privileged and kernel
// dependent: a netns topology, a root gate, entering a namespace.
var privilegedRE = regexp.MustCompile(`\btestenv\.(NewTopology|RequireRoot|Do)\(`)

// discoverPackages lists the packages with privileged tests: testenv itself
// and every package whose tests build a netns topology or require root
// through testenv. Packages that use testenv only for host tools (tshark)
// or Docker are not kernel tests and stay on the host. Docker tests inside
// the chosen packages skip in the VM (HOPTRACE_NO_DOCKER=1).
func discoverPackages(ctx context.Context, root string) ([]testPkg, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-f",
		`{{.ImportPath}}|{{.Dir}}|{{.Module.Path}}|{{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}`, "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var pkgs []testPkg
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(l, "|", 4)
		if len(f) != 4 {
			continue
		}
		imp, dir, mod, files := f[0], f[1], f[2], strings.Fields(f[3])
		if len(files) == 0 {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(imp, mod), "/")
		privileged := rel == testenvPkg
		for _, tf := range files {
			b, err := os.ReadFile(filepath.Join(dir, tf))
			if err != nil {
				return nil, err
			}
			if privilegedRE.Match(b) {
				privileged = true
			}
		}
		if privileged {
			pkgs = append(pkgs, testPkg{Rel: rel, Dir: dir})
		}
	}
	return pkgs, nil
}

// selectPackages resolves -pkgs ("./tracer,./resolver") against the module.
func selectPackages(root, list string) ([]testPkg, error) {
	var pkgs []testPkg
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		rel := filepath.ToSlash(filepath.Clean(strings.TrimPrefix(p, "./")))
		dir := filepath.Join(root, filepath.FromSlash(rel))
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("package %s: no directory %s", p, dir)
		}
		pkgs = append(pkgs, testPkg{Rel: rel, Dir: dir})
	}
	return pkgs, nil
}

// buildTests compiles each package's tests into a static binary, one at a
// time (the machine is shared). Packages without tests are dropped; one
// that does not build is reported in failed and the others still run.
func buildTests(ctx context.Context, root, outDir string, pkgs []testPkg, logf func(string, ...any)) (built []testPkg, failed []string, err error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, nil, err
	}
	for _, p := range pkgs {
		bin := filepath.Join(outDir, strings.ReplaceAll(p.Rel, "/", "_")+".test")
		_ = os.Remove(bin)
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-trimpath", "-o", bin, "./"+p.Rel)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			logf("build tests of ./%s: %v\n%s", p.Rel, err, strings.TrimSpace(string(out)))
			failed = append(failed, "./"+p.Rel)
			continue
		}
		if _, err := os.Stat(bin); err != nil {
			logf("./%s has no tests, not run", p.Rel)
			continue
		}
		p.Binary = bin
		built = append(built, p)
	}
	return built, failed, nil
}

// hoptraceInVM is where the VM has the static hoptrace binary; HOPTRACE_BIN
// names it for end-to-end tests that run the binary (there is no go in the VM).
const hoptraceInVM = "/usr/local/bin/hoptrace"

// buildHoptrace builds the static binary the end-to-end tests run, when
// ./cmd/hoptrace is among the tested packages.
func buildHoptrace(ctx context.Context, root, outDir string, pkgs []testPkg) (string, error) {
	want := false
	for _, p := range pkgs {
		if p.Rel == "cmd/hoptrace" {
			want = true
		}
	}
	if !want {
		return "", nil
	}
	bin := filepath.Join(outDir, "hoptrace")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/hoptrace")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ./cmd/hoptrace: %w\n%s", err, out)
	}
	return bin, nil
}
