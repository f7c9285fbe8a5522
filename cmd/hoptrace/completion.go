package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/resolver"
)

const completionUsage = `Usage: hoptrace completion bash|zsh|fish

Prints a shell completion script for hoptrace: subcommands, their flags, the
values of -o and --color, container names after -C (asked from Docker) and
interface names after -i and --at; file names elsewhere. The script calls
'hoptrace __complete' for the candidates, so they are always those of the
hoptrace on PATH.

  bash:  source <(hoptrace completion bash)
         hoptrace completion bash > /etc/bash_completion.d/hoptrace
  zsh:   hoptrace completion zsh > "${fpath[1]}/_hoptrace"   (then compinit)
  fish:  hoptrace completion fish > ~/.config/fish/completions/hoptrace.fish
`

func runCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("completion", completionUsage, stdout, stderr)
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("completion: name one shell: bash, zsh or fish")
	}
	script, ok := completionScripts[fs.Arg(0)]
	if !ok {
		return usagef("completion: %q is not a shell hoptrace completes (bash, zsh or fish)", fs.Arg(0))
	}
	_, err := io.WriteString(stdout, script)
	return err
}

// completionScripts hand the words typed so far to 'hoptrace __complete'
// and offer what it prints, one candidate a line; when it prints nothing,
// file names. bash replaces only what follows the last '=' or ':' of the
// word (COMP_WORDBREAKS), so its candidates are cut the same way.
var completionScripts = map[string]string{
	"bash": `# bash completion for hoptrace: source <(hoptrace completion bash)
_hoptrace() {
    local line=${COMP_LINE:0:COMP_POINT} words cur
    read -r -a words <<< "$line"
    if [[ -z $line || $line == *[[:space:]] ]]; then words+=(""); fi
    cur=${words[${#words[@]}-1]}
    local IFS=$'\n' out
    out=$("${words[0]}" __complete "${words[@]:1}" 2>/dev/null) || return 0
    [[ -z $out ]] && return 0
    COMPREPLY=($(compgen -W "$out" -- "$cur"))
    local pre=${cur%"${cur##*[=:]}"}
    if [[ -n $pre ]]; then COMPREPLY=("${COMPREPLY[@]#"$pre"}"); fi
}
complete -o default -F _hoptrace hoptrace
`,
	"zsh": `#compdef hoptrace
# zsh completion for hoptrace: hoptrace completion zsh > "${fpath[1]}/_hoptrace"
_hoptrace() {
    local -a cands
    cands=("${(@f)$("${words[1]}" __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    cands=(${cands:#})
    if (( ${#cands} )); then
        compadd -- "${cands[@]}"
    else
        _files
    fi
}
if [[ "${funcstack[1]}" == _hoptrace ]]; then
    _hoptrace "$@"
else
    compdef _hoptrace hoptrace
fi
`,
	"fish": `# fish completion for hoptrace: hoptrace completion fish > ~/.config/fish/completions/hoptrace.fish
function __hoptrace_complete
    set -l cur (commandline -ct)
    set -l words (commandline -opc) "$cur"
    set -l out ($words[1] __complete $words[2..-1] 2>/dev/null)
    if test (count $out) -eq 0
        __fish_complete_path "$cur"
    else
        printf '%s\n' $out
    end
end
complete -c hoptrace -f -a '(__hoptrace_complete)'
`,
}

// completeContainers lists running containers' names; a variable so tests
// need no Docker. Docker unreachable: none.
var completeContainers = func(ctx context.Context, host string) []string {
	d, err := resolver.NewDocker(host)
	if err != nil {
		return nil
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cs, err := d.Containers(ctx)
	if err != nil {
		return nil
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

// completeInterfaces lists the host's interfaces; a variable for tests.
var completeInterfaces = func() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return names
}

// runComplete is the hidden 'hoptrace __complete WORD...': the words after
// "hoptrace" up to the cursor, the last one being completed (maybe empty).
// It prints the candidates that start with it, one a line; nothing means
// file names.
func runComplete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for _, c := range complete(ctx, args) {
		fmt.Fprintln(stdout, c)
	}
	return nil
}

// complete returns the candidates for the last of words.
func complete(ctx context.Context, words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur := words[len(words)-1]
	if len(words) == 1 {
		var names []string
		for _, c := range commands() {
			names = append(names, c.name)
		}
		return withPrefix(names, cur)
	}
	name, prev := words[0], words[len(words)-2]
	switch name {
	case "help":
		if len(words) == 2 {
			return complete(ctx, []string{cur})
		}
		return nil
	case "completion":
		if len(words) == 2 {
			return withPrefix([]string{"bash", "fish", "zsh"}, cur)
		}
		return nil
	}
	flags := commandFlags(ctx, name)
	if flags == nil {
		return nil
	}
	// --flag=VALUE
	if strings.HasPrefix(cur, "--") && strings.Contains(cur, "=") {
		flag, val, _ := strings.Cut(cur, "=")
		var out []string
		for _, v := range flagValues(ctx, flag, words) {
			out = append(out, flag+"="+v)
		}
		return withPrefix(out, flag+"="+val)
	}
	// The value of the flag before.
	if f, ok := flags[prev]; ok && f.takesValue && !strings.Contains(prev, "=") {
		return withPrefix(flagValues(ctx, f.long, words), cur)
	}
	if strings.HasPrefix(cur, "-") {
		var out []string
		for n := range flags {
			if strings.HasPrefix(n, "--") || !strings.HasPrefix(cur, "--") {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return withPrefix(out, cur)
	}
	return nil // an argument: file names (or a filter expression)
}

// flagValues are the values offered for a flag ("--container").
func flagValues(ctx context.Context, flag string, words []string) []string {
	switch flag {
	case "--output":
		return []string{"json", "text"}
	case "--color":
		return []string{"always", "auto", "never"}
	case "--container":
		return completeContainers(ctx, dockerHostOf(words))
	case "--iface", "--at":
		names := completeInterfaces()
		// Offline, interfaces are also named after containers (web:eth0).
		if slices.Contains([]string{"replay", "export", "latency"}, words[0]) || flag == "--at" {
			for _, c := range completeContainers(ctx, dockerHostOf(words)) {
				names = append(names, c+":eth0")
			}
		}
		return names
	}
	return nil
}

// dockerHostOf is the --docker-host typed so far, if any.
func dockerHostOf(words []string) string {
	for i, w := range words {
		if v, ok := strings.CutPrefix(w, "--docker-host="); ok {
			return v
		}
		if w == "--docker-host" && i+1 < len(words)-1 {
			return words[i+1]
		}
	}
	return ""
}

func withPrefix(cands []string, prefix string) []string {
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// flagInfo is one flag of a command as its help lists it.
type flagInfo struct {
	long       string // "--container"
	takesValue bool
}

// flagLineRE reads pflag's PrintDefaults lines: "  -C, --container
// stringArray   text" or "      --no-color   text".
var flagLineRE = regexp.MustCompile(`^\s+(?:-(\w), )?--([\w-]+)(?: (\w+))?\s{2,}`)

// commandFlags are a command's flags by every name ("-C", "--container"),
// read from its --help, so they never drift from the flag sets; nil for a
// command without flags or none at all.
func commandFlags(ctx context.Context, name string) map[string]flagInfo {
	var c *command
	for _, x := range commands() {
		if x.name == name {
			c = &x
		}
	}
	if c == nil {
		return nil
	}
	var help bytes.Buffer
	_ = c.run(ctx, []string{"--help"}, &help, io.Discard)
	_, defs, ok := strings.Cut(help.String(), "\nFlags:\n")
	if !ok {
		return nil
	}
	out := map[string]flagInfo{}
	for _, l := range strings.Split(defs, "\n") {
		m := flagLineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		f := flagInfo{long: "--" + m[2], takesValue: m[3] != ""}
		out[f.long] = f
		if m[1] != "" {
			out["-"+m[1]] = f
		}
	}
	return out
}
