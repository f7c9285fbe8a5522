package main

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// testResult is one test (or subtest) as `go test -v` reported it.
type testResult struct {
	Pkg    string
	Name   string
	Status string // PASS, FAIL, SKIP
	Dur    string
	Output []string // its log lines
}

// Reason is the last line the test logged (t.Skip's message for a skip).
func (r testResult) Reason() string {
	for i := len(r.Output) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(r.Output[i]); s != "" {
			return s
		}
	}
	return ""
}

type pkgResult struct {
	Rel    string
	RC     int
	Ended  bool
	Output []string // lines not attributed to a test (panics, build-time output)
}

// kernelResult is everything one VM run showed.
type kernelResult struct {
	K         *kernel
	Accel     string
	Booted    bool
	BootInfo  string
	BootAfter time.Duration
	ExitRC    int // -1: no exit line
	Tests     []testResult
	Pkgs      []*pkgResult
	Features  []string
	// WantFeatures: the whole tracer suite ran, so its features lines must
	// be there (else the kernel path checks would pass vacuously).
	WantFeatures bool
	ModFailed    []string
	Dmesg        []string
	Elapsed      time.Duration
	Err          error
	Log          string
}

var (
	runRE    = regexp.MustCompile(`^\s*=== (RUN|CONT|NAME|PAUSE)\s+(\S+)`)
	resultRE = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+s)\)`)
)

// parser turns console lines into a kernelResult.
type parser struct {
	r       *kernelResult
	start   time.Time
	pkg     *pkgResult
	cur     string // test whose output follows
	last    string // test whose result line came last
	out     map[string][]string
	inDmesg bool
	seenFt  map[string]bool
}

func newParser(r *kernelResult, start time.Time) *parser {
	r.ExitRC = -1
	return &parser{r: r, start: start, out: map[string][]string{}, seenFt: map[string]bool{}}
}

func (p *parser) line(l string) {
	if p.inDmesg {
		if strings.HasPrefix(l, markDmesg+"-END") {
			p.inDmesg = false
		} else {
			p.r.Dmesg = append(p.r.Dmesg, l)
		}
		return
	}
	switch {
	case strings.HasPrefix(l, markBoot):
		p.r.Booted = true
		p.r.BootInfo = strings.TrimSpace(strings.TrimPrefix(l, markBoot))
		p.r.BootAfter = time.Since(p.start)
		return
	case strings.HasPrefix(l, markModFail):
		p.r.ModFailed = append(p.r.ModFailed, strings.TrimSpace(strings.TrimPrefix(l, markModFail)))
		return
	case strings.HasPrefix(l, markPkgBegin+" "):
		p.pkg = &pkgResult{Rel: strings.TrimSpace(strings.TrimPrefix(l, markPkgBegin)), RC: -1}
		p.r.Pkgs = append(p.r.Pkgs, p.pkg)
		p.cur, p.last = "", ""
		p.out = map[string][]string{}
		return
	case strings.HasPrefix(l, markPkgEnd+" "):
		f := strings.Fields(l)
		if p.pkg != nil && len(f) == 3 {
			p.pkg.RC, _ = strconv.Atoi(f[2])
			p.pkg.Ended = true
		}
		p.pkg = nil
		return
	case strings.HasPrefix(l, markDmesg+"-BEGIN"):
		p.inDmesg = true
		return
	case strings.HasPrefix(l, markExit+" "):
		p.r.ExitRC, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, markExit)))
		return
	}
	if p.pkg == nil {
		return
	}
	if m := runRE.FindStringSubmatch(l); m != nil {
		if m[1] != "PAUSE" {
			p.cur = m[2]
		}
		return
	}
	if m := resultRE.FindStringSubmatch(l); m != nil {
		name := m[2]
		p.r.Tests = append(p.r.Tests, testResult{Pkg: p.pkg.Rel, Name: name, Status: m[1], Dur: m[3], Output: p.out[name]})
		p.last, p.cur = name, ""
		return
	}
	if m := featuresRE.FindStringSubmatch(l); m != nil && !p.seenFt[m[1]] {
		p.seenFt[m[1]] = true
		p.r.Features = append(p.r.Features, strings.TrimSpace(l))
	}
	if strings.HasPrefix(l, "    ") {
		// A test's log line: streamed before its result (go test -v), or
		// after it for a result printed at the end of a parent test.
		switch {
		case p.cur != "":
			p.out[p.cur] = append(p.out[p.cur], l)
		case p.last != "":
			for i := len(p.r.Tests) - 1; i >= 0; i-- {
				if p.r.Tests[i].Name == p.last && p.r.Tests[i].Pkg == p.pkg.Rel {
					p.r.Tests[i].Output = append(p.r.Tests[i].Output, l)
					break
				}
			}
		}
		return
	}
	p.pkg.Output = append(p.pkg.Output, l)
}

// failed says whether the kernel's run counts as a failure, and why.
func (r *kernelResult) failures() []string {
	var why []string
	if r.Err != nil {
		why = append(why, r.Err.Error())
	}
	if !r.Booted {
		why = append(why, "the VM never reached the test runner")
	}
	for _, m := range r.ModFailed {
		why = append(why, "insmod failed: "+m)
	}
	for _, p := range r.Pkgs {
		switch {
		case !p.Ended:
			why = append(why, p.Rel+": test binary did not finish")
		case p.RC != 0:
			why = append(why, fmt.Sprintf("%s: test binary exited %d", p.Rel, p.RC))
		}
	}
	for _, t := range r.Tests {
		if t.Status == "FAIL" {
			why = append(why, t.Pkg+": "+t.Name+" failed")
		}
	}
	if r.Booted && r.ExitRC == -1 && r.Err == nil {
		why = append(why, "no exit line from the VM")
	}
	if best, _ := observedFeatures(r.Features); r.WantFeatures && len(best) == 0 && r.Booted {
		why = append(why, "the tracer tests ran but logged no 'features:' line: cannot tell which kernel path ran")
	}
	return append(why, r.featureProblems()...)
}

func (r *kernelResult) counts() (pass, fail, skip int) {
	for _, t := range r.Tests {
		switch t.Status {
		case "PASS":
			pass++
		case "FAIL":
			fail++
		case "SKIP":
			skip++
		}
	}
	return
}

// report prints one kernel's results: every test with its status, skip
// reasons, the features the tests logged, and the output of failures.
func (r *kernelResult) report(w io.Writer) {
	pass, fail, skip := r.counts()
	fmt.Fprintf(w, "\n== kernel %s: %s (%s), %s, booted in %.1fs, total %.1fs: %d passed, %d failed, %d skipped\n",
		r.K.Short, r.K.Release, r.K.Package, r.Accel, r.BootAfter.Seconds(), r.Elapsed.Seconds(), pass, fail, skip)
	if r.BootInfo != "" {
		fmt.Fprintf(w, "   vm: %s\n", r.BootInfo)
	}
	for _, t := range r.Tests {
		indent := strings.Repeat("  ", strings.Count(t.Name, "/"))
		switch t.Status {
		case "SKIP":
			fmt.Fprintf(w, "   SKIP %s%s %s (%s): %s\n", indent, t.Pkg, t.Name, t.Dur, t.Reason())
		default:
			fmt.Fprintf(w, "   %s %s%s %s (%s)\n", t.Status, indent, t.Pkg, t.Name, t.Dur)
		}
	}
	_, distinct := observedFeatures(r.Features)
	fmt.Fprintf(w, "   kernel features: %s\n", r.featureSummary())
	if len(distinct) > 1 {
		fmt.Fprintf(w, "   tracer loads seen (tests force fallbacks): %s\n", strings.Join(distinct, " | "))
	}
	r.failureOutput(w, 40)
	if why := r.failures(); len(why) > 0 {
		fmt.Fprintf(w, "   FAILED: %s\n", strings.Join(why, "; "))
		fmt.Fprintf(w, "   console log: %s\n", r.Log)
	}
}

// failureOutput prints the last lines of each failed test's output and
// of each package that failed outside its tests.
func (r *kernelResult) failureOutput(w io.Writer, lines int) {
	for _, t := range r.Tests {
		if t.Status != "FAIL" || strings.Contains(t.Name, "/") && len(t.Output) == 0 {
			continue
		}
		fmt.Fprintf(w, "   --- output of failed %s %s:\n", t.Pkg, t.Name)
		for _, l := range tail(t.Output, lines) {
			fmt.Fprintf(w, "     %s\n", l)
		}
	}
	for _, p := range r.Pkgs {
		if p.Ended && p.RC == 0 {
			continue
		}
		fmt.Fprintf(w, "   --- %s output outside tests (exit %d):\n", p.Rel, p.RC)
		for _, l := range tail(p.Output, lines) {
			fmt.Fprintf(w, "     %s\n", l)
		}
	}
}

func tail(l []string, n int) []string {
	if len(l) > n {
		return l[len(l)-n:]
	}
	return l
}
