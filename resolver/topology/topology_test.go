package topology

import (
	"errors"
	"testing"
)

func TestNaming(t *testing.T) {
	const host, ctr, proc, sbox, named, overlay = 1, 2, 3, 4, 5, 6
	web := &Container{ID: "abc", Name: "web"}
	s := &Snapshot{
		HostNetnsIno: host,
		Namespaces: []Netns{
			{Ino: host, Source: NetnsHost},
			{Ino: ctr, Source: NetnsContainer, Name: "web"},
			{Ino: proc, Source: NetnsProcess, Name: "sleep[42]"},
			{Ino: sbox, Source: NetnsSandbox, Name: "sleep[43]", Path: "/var/run/docker/netns/0123456789ab"},
			{Ino: named, Source: NetnsNamed, Name: "blue", Path: "/run/netns/blue"},
			{Ino: overlay, Source: NetnsSandbox, Name: "1-abcdef0123", Path: "/var/run/docker/netns/1-abcdef0123"},
		},
		Endpoints: []Endpoint{
			{NetnsIno: host, Ifindex: 1, Name: "docker0", Role: RoleBridge},
			{NetnsIno: host, Ifindex: 10, Name: "vethweb", Role: RoleHostVeth, PeerNetnsIno: ctr, PeerIfindex: 2, Container: web},
			{NetnsIno: host, Ifindex: 11, Name: "vethproc", Role: RoleHostVeth, PeerNetnsIno: proc, PeerIfindex: 2},
			{NetnsIno: host, Ifindex: 12, Name: "vethsbox", Role: RoleHostVeth, PeerNetnsIno: sbox, PeerIfindex: 2},
			{NetnsIno: host, Ifindex: 13, Name: "vethnew", Role: RoleHostVeth},
			{NetnsIno: host, Ifindex: 14, Name: "vethblue", Role: RoleHostVeth, PeerNetnsIno: named, PeerIfindex: 2},
			{NetnsIno: ctr, Ifindex: 2, Name: "eth0", Role: RoleContainer, Container: web},
			{NetnsIno: proc, Ifindex: 2, Name: "eth0", Role: RoleNetns},
			{NetnsIno: sbox, Ifindex: 2, Name: "eth0", Role: RoleNetns},
			{NetnsIno: named, Ifindex: 2, Name: "veth0", Role: RoleNetns},
			{NetnsIno: overlay, Ifindex: 2, Name: "br0", Role: RoleNetns},
		},
	}
	ix := NewIndex(s)
	for _, c := range []struct {
		k    Key
		want Naming
	}{
		{Key{host, 1}, NameFinal},        // a bridge
		{Key{host, 10}, NameFinal},       // a container's veth
		{Key{ctr, 2}, NameFinal},         // a container's eth0
		{Key{host, 11}, NameProvisional}, // facing a process's namespace
		{Key{proc, 2}, NameProvisional},
		{Key{host, 12}, NamePending}, // facing a container sandbox Docker has not listed
		{Key{sbox, 2}, NamePending},
		{Key{host, 13}, NameProvisional}, // a port whose peer is not placed yet
		{Key{host, 14}, NameFinal},       // facing an ip-netns namespace
		{Key{named, 2}, NameFinal},
		{Key{overlay, 2}, NameFinal},     // Docker's own sandbox, no container's
		{Key{host, 99}, NameProvisional}, // unknown
	} {
		if got := ix.Naming(c.k); got != c.want {
			t.Errorf("Naming(%+v) = %d, want %d", c.k, got, c.want)
		}
	}
}

func TestMatchContainer(t *testing.T) {
	cs := []Container{
		{ID: "abc123000000", Name: "web"},
		{ID: "abc456000000", Name: "api"},
		{ID: "fff000000000", Name: "abc123"}, // a name that is another's ID prefix
	}
	for _, c := range []struct {
		word, want string
		err        error
	}{
		{"web", "web", nil},
		{"/web", "web", nil},
		{"abc123", "abc123", nil},      // exact name over ID prefix
		{"abc456000000", "api", nil},   // exact ID
		{"abc4", "api", nil},           // unique prefix
		{"fff", "abc123", nil},         // unique prefix
		{"ab", "", ErrNoSuchContainer}, // too short to be a prefix
		{"nosuch", "", ErrNoSuchContainer},
	} {
		got, err := MatchContainer(cs, c.word)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%q: err %v, want %v", c.word, err, c.err)
			}
			continue
		}
		if err != nil || got.Name != c.want {
			t.Errorf("%q: %q, %v; want %q", c.word, got.Name, err, c.want)
		}
	}
	_, err := MatchContainer(cs, "abc")
	var amb *AmbiguousError
	if !errors.As(err, &amb) || len(amb.Candidates) != 2 {
		t.Fatalf("abc: %v, want ambiguous between web and api", err)
	}
	if got := err.Error(); got != `container "abc" is ambiguous: it starts the IDs of web (abc123000000), api (abc456000000); give a name or a longer ID` {
		t.Errorf("message %q", got)
	}
}

// Label and AppendLabel agree, for every kind of endpoint.
func TestLabel(t *testing.T) {
	web := &Container{Name: "web"}
	for _, c := range []struct {
		e    Endpoint
		want string
	}{
		{Endpoint{Name: "eth0", Role: RoleContainer, Container: web}, "web:eth0"},
		{Endpoint{Name: "eth0", Role: RoleContainer, Container: &Container{}}, ":eth0"},
		{Endpoint{Name: "eth0", Role: RoleContainer}, "eth0"},
		{Endpoint{Name: "veth0", Driver: DriverOverlay, Network: "ov1"}, "ov1:veth0"},
		{Endpoint{Name: "veth0", NetnsName: "ns1"}, "ns1:veth0"},
		{Endpoint{Name: "veth1a2b", NetnsName: "ns1", Role: RoleHostVeth, Container: web}, "veth1a2b"},
		{Endpoint{Name: "docker0", Role: RoleBridge}, "docker0"},
	} {
		if got := c.e.Label(); got != c.want {
			t.Errorf("Label of %+v = %q, want %q", c.e, got, c.want)
		}
		if got := string(c.e.AppendLabel([]byte("x "))); got != "x "+c.want {
			t.Errorf("AppendLabel of %+v = %q, want %q", c.e, got, "x "+c.want)
		}
	}
}
