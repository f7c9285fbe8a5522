package resolver

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// containerPort returns the host veth (bridge port) whose peer is in the
// container's namespace, if the resolver knows it.
func containerPort(s *topology.Snapshot, name string) (topology.Endpoint, bool) {
	for _, e := range s.Endpoints {
		if e.Role == topology.RoleHostVeth && e.Container != nil && e.Container.Name == name {
			return e, true
		}
	}
	return topology.Endpoint{}, false
}

// runDetached starts a container and returns its ID once `docker run -d`
// returned, that is once Docker says it started (testenv.RunContainer also
// waits for addresses, which host and none networks never get).
func runDetached(t *testing.T, name string, dockerArgs []string, cmd ...string) string {
	t.Helper()
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	args := append(append([]string{"run", "-d", "--name", name}, dockerArgs...), testenv.Image)
	return strings.TrimSpace(testenv.Command(t, "docker", append(args, cmd...)...))
}

// waitFor waits until cond holds for a snapshot, or the timeout.
func waitFor(t *testing.T, r *Resolver, timeout time.Duration, cond func(*topology.Snapshot) bool) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	snaps := r.Subscribe(ctx)
	for {
		if cond(r.Snapshot()) {
			return time.Since(start), true
		}
		select {
		case <-snaps:
		case <-ctx.Done():
			return time.Since(start), cond(r.Snapshot())
		}
	}
}

func TestDockerContainerComesAndGoes(t *testing.T) {
	testenv.RequireDocker(t)
	r := startResolver(t, Options{})
	if s := r.Snapshot(); !s.DockerAvailable {
		t.Fatalf("docker not available to the resolver: %s", s.DockerError)
	}

	name := testenv.UniqueName("ht-res-live")
	id := runDetached(t, name, nil, "sleep", "600")
	took, ok := waitFor(t, r, 5*time.Second, func(s *topology.Snapshot) bool {
		p, ok := containerPort(s, name)
		return ok && p.Bridge == "docker0" && p.Container.ID == id
	})
	if !ok {
		t.Fatalf("container %s not resolved after %v", name, took)
	}
	t.Logf("new container resolved %v after docker run returned", took)
	if took > time.Second {
		t.Errorf("new container took %v to appear, want within 1s", took)
	}
	port, _ := containerPort(r.Snapshot(), name)
	in, ok := r.Peer(port.Key())
	if !ok || in.Label() != name+":eth0" || in.Role != topology.RoleContainer {
		t.Errorf("container side: %+v %v", in, ok)
	}
	found := false
	for _, i := range r.Interfaces(Selection{ContainerSide: true}) {
		if i.Key == in.Key() && i.NetnsPath != "" && i.ContainerName == name {
			found = true
		}
	}
	if !found {
		t.Errorf("container side of %s not among the interfaces to trace", name)
	}

	testenv.Command(t, "docker", "stop", "-t", "0", name)
	took, ok = waitFor(t, r, 5*time.Second, func(s *topology.Snapshot) bool {
		_, there := containerPort(s, name)
		_, err := topology.MatchContainer(s.Containers, name)
		known := err == nil
		_, port := topology.NewIndex(s).Lookup(port.Key())
		return !there && !known && !port
	})
	if !ok {
		t.Fatalf("stopped container %s still there after %v", name, took)
	}
	t.Logf("stopped container gone %v after docker stop returned", took)
}

func TestDockerHostAndNoneNetworks(t *testing.T) {
	testenv.RequireDocker(t)
	hostC := testenv.UniqueName("ht-res-host")
	noneC := testenv.UniqueName("ht-res-none")
	runDetached(t, hostC, []string{"--network", "host"}, "sleep", "600")
	runDetached(t, noneC, []string{"--network", "none"}, "sleep", "600")
	r := startResolver(t, Options{})
	l := LinksOf(r.Snapshot())
	modes := map[string]string{}
	for _, c := range l.NoVeth {
		modes[c.Name] = c.NetworkMode
	}
	if modes[hostC] != "host" || modes[noneC] != "none" {
		t.Errorf("containers without veth: %+v", l.NoVeth)
	}
}
