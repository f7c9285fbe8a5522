package metrics

import "github.com/hoptrace/hoptrace/resolver/topology"

// namer names hooks for labels from one snapshot.
type namer struct{ ix *topology.Index }

// iface is the label of an interface: "web:eth0" inside a container,
// "web:veth" for the host end of a container's veth (its vethXXXX name
// changes with every start), the bridge's name for a bridge, else the
// resolver's label. ok is false when the snapshot does not know it: the
// interface is gone, and so are its series.
func (n namer) iface(k topology.Key) (label string, e topology.Endpoint, ok bool) {
	e, ok = n.ix.Lookup(k)
	if !ok {
		return "", e, false
	}
	return ifaceLabel(e), e, true
}

// ifaceLabel is the label of a known interface (see namer.iface).
func ifaceLabel(e topology.Endpoint) string {
	switch {
	case e.Role == topology.RoleContainer && e.Container != nil:
		return e.Container.Name + ":" + e.Name
	case e.Role == topology.RoleHostVeth && e.Container != nil:
		return e.Container.Name + ":veth"
	}
	return e.Label()
}

// hookLabel is an interface label with a direction.
func hookLabel(iface string, egress bool) string {
	if egress {
		return iface + ":egress"
	}
	return iface + ":ingress"
}

// endLabel names one end of a path (see namer.end).
func endLabel(e topology.Endpoint) string {
	if e.Container != nil {
		return e.Container.Name
	}
	return ifaceLabel(e)
}

// hook is the label of a hook: its interface's label and the direction.
func (n namer) hook(h Hook) (string, topology.Endpoint, bool) {
	label, e, ok := n.iface(h.Key)
	if !ok {
		return "", e, false
	}
	return hookLabel(label, h.Egress), e, true
}

// end names one end of a path: the container of the interface, or the
// interface's label for the host and bridges.
func (n namer) end(h Hook) (string, topology.Endpoint, bool) {
	_, e, ok := n.iface(h.Key)
	if !ok {
		return "", e, false
	}
	return endLabel(e), e, true
}

// network is the Docker network (or, without Docker's name for it, the
// bridge) a path runs over: that of its destination, else of its source.
func network(src, dst topology.Endpoint) string {
	for _, e := range []topology.Endpoint{dst, src} {
		if e.Network != "" {
			return e.Network
		}
	}
	for _, e := range []topology.Endpoint{dst, src} {
		if e.Container != nil {
			for _, cn := range e.Container.Networks {
				if cn.Network != "" && (e.Bridge == "" || cn.Bridge == e.Bridge) {
					return cn.Network
				}
			}
		}
		if e.Bridge != "" {
			return e.Bridge
		}
	}
	return ""
}
