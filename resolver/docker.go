package resolver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// ErrNoDocker is what the null Docker source returns.
var ErrNoDocker = errors.New("docker disabled")

// Docker is the resolver's view of a Docker daemon. NoDocker is the null
// object; NewDocker talks to a real daemon.
type Docker interface {
	// Ping checks that the daemon answers and negotiates the API version
	// (again: a restarted daemon may be another version).
	Ping(ctx context.Context) error
	// Events subscribes to container and network events. The subscription
	// is in place when it returns, so a list made afterwards misses
	// nothing. The error channel delivers one error when the stream ends.
	Events(ctx context.Context) (<-chan DockerEvent, <-chan error)
	// Containers lists the running containers, inspected.
	Containers(ctx context.Context) ([]topology.Container, error)
	// Container inspects one container; running is false if it is not.
	Container(ctx context.Context, id string) (c topology.Container, running bool, err error)
	// Networks lists the networks.
	Networks(ctx context.Context) ([]Network, error)
	// Host names the daemon's address, for messages.
	Host() string
	Close() error
}

// DockerEvent is one event the resolver acts on.
type DockerEvent struct {
	Type   string // "container" or "network"
	Action string // start, die, destroy, connect, disconnect, create, ...
	// ContainerID is the container concerned (for network events, the
	// container connected or disconnected).
	ContainerID string
}

// NoDocker is the Docker source used when Docker is off: every call fails
// with ErrNoDocker, and the resolver names namespaces only.
type NoDocker struct{}

func (NoDocker) Events(ctx context.Context) (<-chan DockerEvent, <-chan error) {
	errc := make(chan error, 1)
	errc <- ErrNoDocker
	return nil, errc
}
func (NoDocker) Ping(context.Context) error                               { return ErrNoDocker }
func (NoDocker) Containers(context.Context) ([]topology.Container, error) { return nil, ErrNoDocker }
func (NoDocker) Container(context.Context, string) (topology.Container, bool, error) {
	return topology.Container{}, false, ErrNoDocker
}
func (NoDocker) Networks(context.Context) ([]Network, error) { return nil, ErrNoDocker }
func (NoDocker) Host() string                                { return "" }
func (NoDocker) Close() error                                { return nil }

// mobyDocker is a Docker source backed by github.com/moby/moby/client.
type mobyDocker struct {
	c    *client.Client
	host string
}

// NewDocker returns a Docker source for host ("unix:///var/run/docker.sock";
// empty: $DOCKER_HOST, else the default socket). It does not connect yet.
// The API version is negotiated on the first request (the client accepts
// daemons down to API 1.40; Debian's docker.io 20.10 speaks 1.41).
func NewDocker(host string) (Docker, error) {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	} else if h := os.Getenv("DOCKER_HOST"); h != "" {
		host = h
	} else {
		host = client.DefaultDockerHost
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("create docker client for %s: %w", host, err)
	}
	return &mobyDocker{c: c, host: host}, nil
}

func (d *mobyDocker) Host() string { return d.host }

func (d *mobyDocker) Ping(ctx context.Context) error {
	if _, err := d.c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true, ForceNegotiate: true}); err != nil {
		return fmt.Errorf("ping docker: %w", err)
	}
	return nil
}
func (d *mobyDocker) Close() error { return d.c.Close() }

func (d *mobyDocker) Events(ctx context.Context) (<-chan DockerEvent, <-chan error) {
	f := make(client.Filters).Add("type", string(events.ContainerEventType), string(events.NetworkEventType))
	res := d.c.Events(ctx, client.EventsListOptions{Filters: f})
	out := make(chan DockerEvent, 64)
	errc := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case m := <-res.Messages:
				ev := DockerEvent{Type: string(m.Type), Action: string(m.Action), ContainerID: m.Actor.ID}
				if m.Type == events.NetworkEventType {
					ev.ContainerID = m.Actor.Attributes["container"]
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
			case err := <-res.Err:
				if err == nil {
					err = errors.New("event stream closed")
				}
				errc <- fmt.Errorf("read docker events: %w", err)
				return
			}
		}
	}()
	return out, errc
}

func (d *mobyDocker) Containers(ctx context.Context) ([]topology.Container, error) {
	l, err := d.c.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []topology.Container
	for _, s := range l.Items {
		c, running, err := d.Container(ctx, s.ID)
		if err != nil {
			if isGone(err) {
				continue
			}
			return nil, err
		}
		if running {
			out = append(out, c)
		}
	}
	return out, nil
}

// isGone reports a container removed between list and inspect.
func isGone(err error) bool { return cerrdefs.IsNotFound(err) }

func (d *mobyDocker) Container(ctx context.Context, id string) (topology.Container, bool, error) {
	r, err := d.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return topology.Container{}, false, fmt.Errorf("inspect container %.12s: %w", id, err)
	}
	return fromInspect(r.Container)
}

// fromInspect converts Docker's inspect answer.
func fromInspect(in container.InspectResponse) (topology.Container, bool, error) {
	c := topology.Container{ID: in.ID, Name: strings.TrimPrefix(in.Name, "/")}
	if in.Config != nil {
		c.Image = in.Config.Image
	}
	if in.HostConfig != nil {
		c.NetworkMode = string(in.HostConfig.NetworkMode)
	}
	running := in.State != nil && in.State.Running
	if in.State != nil {
		c.PID = in.State.Pid
	}
	if ns := in.NetworkSettings; ns != nil {
		c.SandboxKey = ns.SandboxKey
		for name, ep := range ns.Networks {
			if ep == nil {
				continue
			}
			c.Networks = append(c.Networks, topology.ContainerNetwork{
				Network:    name,
				NetworkID:  ep.NetworkID,
				IP:         ep.IPAddress,
				IPv6:       ep.GlobalIPv6Address,
				MAC:        ep.MacAddress.String(),
				EndpointID: ep.EndpointID,
			})
		}
		sortNetworks(c.Networks)
	}
	return c, running, nil
}

func sortNetworks(ns []topology.ContainerNetwork) {
	for i := 1; i < len(ns); i++ {
		for j := i; j > 0 && ns[j].Network < ns[j-1].Network; j-- {
			ns[j], ns[j-1] = ns[j-1], ns[j]
		}
	}
}

func (d *mobyDocker) Networks(ctx context.Context) ([]Network, error) {
	l, err := d.c.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	out := make([]Network, 0, len(l.Items))
	for _, n := range l.Items {
		nw := Network{ID: n.ID, Name: n.Name, Driver: n.Driver, Bridge: bridgeName(n.Driver, n.ID, n.Options)}
		if n.Driver == "macvlan" || n.Driver == "ipvlan" {
			nw.Parent = n.Options["parent"]
		}
		if n.Driver == topology.DriverOverlay {
			// The peer list (verbose only) names the nodes at the other
			// ends of its tunnels. Without it the addresses still show.
			if r, err := d.c.NetworkInspect(ctx, n.ID, client.NetworkInspectOptions{Verbose: true}); err == nil {
				for _, p := range r.Network.Peers {
					if p.IP.IsValid() {
						nw.Nodes = append(nw.Nodes, topology.Node{Name: p.Name, Addr: p.IP.Unmap()})
					}
				}
			}
		}
		out = append(out, nw)
	}
	return out, nil
}
