package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/hoptrace/hoptrace/resolver"
)

const linksUsage = `Usage: hoptrace links [flags]

Shows each bridge (docker0, br-xxxx) with its ports: host veth (ifindex) <->
peer ifindex <-> container name, ID, eth0 MAC and IP; containers without a
veth (--network host or none); and network namespaces Docker does not own.
Needs root (it reads every network namespace), no BPF.

Examples:
  hoptrace links                 the topology now
  hoptrace links -o json         as JSON
  hoptrace links --watch         again at every change
`

// runLinks prints the bridge topology, once or (--watch) at every change.
func runLinks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("links", linksUsage, stdout, stderr)
	output := fs.StringP("output", "o", "text", "output format: text or json")
	watch := fs.BoolP("watch", "w", false, "keep printing the topology as containers come and go")
	dockerHost := fs.String("docker-host", "", "Docker daemon address (default $DOCKER_HOST, else unix:///var/run/docker.sock)")
	noDocker := fs.Bool("no-docker", false, "do not ask Docker; name namespaces only")
	if err := parseFlags(fs, help, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("links: unexpected argument %q", fs.Arg(0))
	}
	if *output != "text" && *output != "json" {
		return usagef("links: -o must be text or json, not %q", *output)
	}

	if err := checkPrivileges("links", privileges{docker: !*noDocker}); err != nil {
		return err
	}
	opts := resolver.Options{DockerHost: *dockerHost}
	if *noDocker {
		opts.Docker = resolver.NoDocker{}
	}
	if *watch {
		// In watch mode Docker outages and returns are worth a line.
		opts.Logger = logger(stderr, false, "")
	}
	r, err := resolver.New(opts)
	if err != nil {
		return fmt.Errorf("links: %w", err)
	}
	defer r.Close()
	if err := r.Start(ctx); err != nil {
		return fmt.Errorf("links: %w", err)
	}

	print := func(l resolver.Links) error {
		if *output == "json" {
			enc := json.NewEncoder(stdout)
			if !*watch {
				enc.SetIndent("", "  ")
			}
			return enc.Encode(linksObject{Type: "links", Schema: linksSchema, Links: l})
		}
		if *watch {
			fmt.Fprintf(stdout, "--- %s\n", l.Time.Format("15:04:05.000"))
		}
		return l.WriteText(stdout)
	}
	if !*watch {
		l := resolver.LinksOf(r.Snapshot())
		if note := l.DockerNote(); note != "" && !*noDocker {
			fmt.Fprintf(stderr, "hoptrace: note: %s\n", note)
		}
		return print(l)
	}
	// Docker outages are logged once each by the resolver.
	for s := range r.Subscribe(ctx) {
		if err := print(resolver.LinksOf(s)); err != nil {
			return fmt.Errorf("links: write: %w", err)
		}
	}
	return nil
}

// linksSchema is the "schema" of links -o json (docs/links-json.md): it
// grows when a field changes meaning or goes; added fields keep it.
const linksSchema = 1

// linksObject is one links -o json object.
type linksObject struct {
	Type   string `json:"type"` // "links"
	Schema int    `json:"schema"`
	resolver.Links
}
