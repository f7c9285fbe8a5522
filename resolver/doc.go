// Package resolver names what the tracer sees: it maps (netns inode,
// ifindex) to bridges, veth ports and containers, and tells the tracer which
// interfaces to attach to, kept current as containers come and go.
//
// Sources: netlink in the host namespace and in every other network
// namespace it finds (Docker containers via /proc/<pid>/ns/net or their
// sandbox key, /run/netns, /var/run/docker/netns, and namespaces held only by
// a process), read with netlink.NewHandleAt so no shared thread changes
// namespace; and Docker (github.com/moby/moby/client, API version
// negotiated): an event stream subscribed before the list, re-subscribed
// with backoff when the daemon goes away. A veth's peer is found through
// IFLA_LINK (peer ifindex) and IFLA_LINK_NETNSID mapped to a namespace with
// RTM_GETNSID, or else by the pair pointing at each other. Without Docker
// (NoDocker, no socket, daemon down) it still works and names namespaces
// from /run/netns, Docker sandboxes, or a process inside ("sleep[4242]");
// the snapshot says so (DockerAvailable, DockerError).
//
// Use:
//
//	r, err := resolver.New(resolver.Options{DockerHost: ""}) // $DOCKER_HOST or the default socket
//	if err := r.Start(ctx); err != nil { ... }              // first full read; errors.Is(err, resolver.ErrNotPermitted)
//	defer r.Close()
//
//	// Naming hops: r is a topology.Namer (an atomic load and a map lookup).
//	ep, ok := r.Lookup(topology.Key{NetnsIno: ino, Ifindex: idx})
//	peer, ok := r.Peer(key)                                 // the other end of a veth
//
//	// Recordings: the whole picture now, and every change after.
//	snap := r.Snapshot()
//	for snap := range r.Subscribe(ctx) { ... }              // latest wins for slow readers
//
//	// Names that may still change (a container Docker has not told about
//	// yet): ask again, and wait for the ticket (journey.NameWait does).
//	if r.Naming(key) != topology.NameFinal { t := r.Refresh(); ...; r.Refreshed(t) }
//
//	// Attaching: bridges, their veth ports, and with ContainerSide the
//	// peer inside each container (Interface.NetnsPath opens its netns);
//	// DiffInterfaces says what changed between two snapshots' lists.
//	ifaces := resolver.InterfacesOf(snap, resolver.Selection{ContainerSide: true})
//
// A new container shows up within a moment: its Docker start event and the
// host link update of its veth both trigger a rescan (coalesced over 30ms);
// a periodic rescan covers anything missed. Snapshots are published only
// when the topology changed and are never modified afterwards.
//
// LinksOf turns a snapshot into the `hoptrace links` view.
package resolver
