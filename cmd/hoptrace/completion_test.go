package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeCompletion stands in for Docker and the host's interfaces.
func fakeCompletion(t *testing.T) {
	t.Helper()
	oldC, oldI := completeContainers, completeInterfaces
	t.Cleanup(func() { completeContainers, completeInterfaces = oldC, oldI })
	completeContainers = func(_ context.Context, host string) []string {
		if host == "tcp://other:2375" {
			return []string{"remote"}
		}
		return []string{"web", "client", "worker"}
	}
	completeInterfaces = func() []string { return []string{"lo", "eth0", "docker0", "veth3c4d"} }
}

func TestComplete(t *testing.T) {
	fakeCompletion(t)
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{""}, nil}, // every command, checked below
		{[]string{"tr"}, []string{"trace"}},
		{[]string{"re"}, []string{"record", "replay"}},
		{[]string{"help", "ex"}, []string{"export"}},
		{[]string{"completion", ""}, []string{"bash", "fish", "zsh"}},
		{[]string{"completion", "z"}, []string{"zsh"}},
		{[]string{"trace", "--co"}, []string{"--color", "--container", "--count"}},
		{[]string{"trace", "-o", ""}, []string{"json", "text"}},
		{[]string{"trace", "--output", "j"}, []string{"json"}},
		{[]string{"trace", "--color=a"}, []string{"--color=always", "--color=auto"}},
		{[]string{"trace", "--color", "n"}, []string{"never"}},
		{[]string{"trace", "-C", ""}, []string{"web", "client", "worker"}},
		{[]string{"trace", "--container", "w"}, []string{"web", "worker"}},
		{[]string{"trace", "--docker-host", "tcp://other:2375", "-C", ""}, []string{"remote"}},
		{[]string{"trace", "--docker-host=tcp://other:2375", "-C", ""}, []string{"remote"}},
		{[]string{"trace", "-i", "e"}, []string{"eth0"}},
		{[]string{"record", "-i", ""}, []string{"lo", "eth0", "docker0", "veth3c4d"}},
		{[]string{"replay", "-i", "w"}, []string{"web:eth0", "worker:eth0"}},
		{[]string{"export", "--at", "c"}, []string{"client:eth0"}},
		{[]string{"record", "-w", ""}, nil},    // a file
		{[]string{"replay", "x.hop", ""}, nil}, // a file
		{[]string{"trace", "-c", ""}, nil},     // a number
		{[]string{"nosuch", "-"}, nil},         // no such command
		{[]string{"trace", "-v", "-o", "t"}, []string{"text"}},
	} {
		got := complete(context.Background(), tc.words)
		if tc.words[0] == "" {
			for _, c := range commands() {
				if !slices.Contains(got, c.name) {
					t.Errorf("command %s not offered: %v", c.name, got)
				}
			}
			if slices.Contains(got, "__complete") {
				t.Errorf("the hidden helper is offered: %v", got)
			}
			continue
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%q: %v, want %v", tc.words, got, tc.want)
		}
	}
}

// TestCompleteFlags: every flag a command has is offered, short and long,
// as its --help lists them.
func TestCompleteFlags(t *testing.T) {
	fakeCompletion(t)
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"trace", []string{"-C", "--container", "-i", "--iface", "-o", "--output", "--color", "--no-color", "-n", "-l", "-c", "--duration", "--ready-file"}},
		{"record", []string{"-w", "--write", "-s", "--snaplen", "--print", "--rotate-size"}},
		{"replay", []string{"-r", "--read", "-f", "--filter", "-C", "-i", "-o"}},
		{"latency", []string{"-r", "--read", "-o"}},
		{"export", []string{"-w", "--pcapng", "--at", "-r"}},
		{"links", []string{"-o", "--watch", "--docker-host"}},
		{"check", []string{"--docker-host", "--no-docker"}},
	} {
		got := complete(context.Background(), []string{tc.cmd, "-"})
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%s -: %s not offered (%v)", tc.cmd, w, got)
			}
		}
		long := complete(context.Background(), []string{tc.cmd, "--"})
		for _, f := range long {
			if !strings.HasPrefix(f, "--") {
				t.Errorf("%s --: short flag %s offered", tc.cmd, f)
			}
		}
	}
	flags := commandFlags(context.Background(), "trace")
	if f := flags["-C"]; f.long != "--container" || !f.takesValue {
		t.Errorf("-C: %+v", f)
	}
	if f := flags["--no-color"]; f.takesValue {
		t.Errorf("--no-color takes no value: %+v", f)
	}
}

func TestCompletionCommand(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, _, err := runCmd(t, "completion", sh)
		if err != nil || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: %v\n%s", sh, err, out)
		}
	}
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		if _, _, err := runCmd(t, args...); !errors.As(err, new(usageError)) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestCompletionShells runs each script in its shell against the built
// binary on PATH. (zsh's completion system is driven by hand: compadd and
// _files stand in.)
func TestCompletionShells(t *testing.T) {
	bin := hoptraceBinary(t)
	dir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(dir, "hoptrace")); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	shell := func(t *testing.T, name, script string) string {
		t.Helper()
		path, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("%s is not installed", name)
		}
		cmd := exec.Command(path, "-c", script)
		cmd.Env, cmd.Dir = env, dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		return string(out)
	}
	const want = "[trace]\n[always]\n[json text]\n[]\n"
	t.Run("bash", func(t *testing.T) {
		out := shell(t, "bash", `source <(hoptrace completion bash)
for l in "hoptrace tr" "hoptrace trace --color=al" "hoptrace trace -o " "hoptrace record -w "; do
    COMP_LINE=$l; COMP_POINT=${#l}; COMPREPLY=(); _hoptrace; echo "[${COMPREPLY[*]}]"
done`)
		if out != want {
			t.Errorf("bash: %q, want %q", out, want)
		}
	})
	t.Run("zsh", func(t *testing.T) {
		out := shell(t, "zsh", `compdef() { :; }
compadd() { shift; print -r -- "[$*]"; }
_files() { print -r -- "[]"; }
source <(hoptrace completion zsh)
words=(hoptrace tr); CURRENT=2; _hoptrace
words=(hoptrace trace --color=al); CURRENT=3; _hoptrace
words=(hoptrace trace -o ""); CURRENT=4; _hoptrace
words=(hoptrace record -w ""); CURRENT=4; _hoptrace`)
		if want := "[trace]\n[--color=always]\n[json text]\n[]\n"; out != want {
			t.Errorf("zsh: %q, want %q", out, want)
		}
	})
	t.Run("fish", func(t *testing.T) {
		out := shell(t, "fish", `hoptrace completion fish | source
for l in "hoptrace tr" "hoptrace trace --color=al" "hoptrace trace -o " "hoptrace record -w nonexistent-"
    set -l c (complete -C $l | string replace -r '\t.*' '')
    echo "[$c]"
end`)
		if want := "[trace]\n[--color=always]\n[json text]\n[]\n"; out != want {
			t.Errorf("fish: %q, want %q", out, want)
		}
	})
}
