package testenv

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Topology is a Linux bridge in the host namespace with N "containers": each a
// named network namespace joined to the bridge by a veth pair, like Docker's
// bridge network. Addresses come from a random 10.x.y.0/24.
type Topology struct {
	Bridge       string
	BridgeIndex  int
	Subnet       netip.Prefix
	Hosts        []*NSHost
	HostNetnsIno uint32
}

// NSHost is one namespace "container" of a Topology.
type NSHost struct {
	Name     string // netns name under /run/netns
	Path     string // /run/netns/<name>
	NetnsIno uint32
	// The container side of the veth, inside the namespace.
	Iface      string // always "eth0"
	IfaceIndex int
	MAC        net.HardwareAddr
	IP         netip.Addr
	// The host side of the veth, a bridge port in the host namespace.
	HostVeth      string
	HostVethIndex int
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NetnsInode returns the inode number identifying a network namespace file.
func NetnsInode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", path, err)
	}
	return uint32(st.Ino), nil
}

// NewTopology builds a bridge and n namespaces joined to it, all removed when
// the test ends. It needs root.
func NewTopology(t testing.TB, n int) *Topology {
	t.Helper()
	RequireRoot(t)
	id := randHex(3)
	var sb [2]byte
	_, _ = rand.Read(sb[:])
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200 + sb[0]%50, sb[1], 0}), 24)
	topo := &Topology{Bridge: "htbr" + id, Subnet: subnet}
	ino, err := NetnsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	topo.HostNetnsIno = ino

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: topo.Bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("create bridge %s: %v", topo.Bridge, err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatalf("bring up bridge: %v", err)
	}
	brLink, err := netlink.LinkByName(topo.Bridge)
	if err != nil {
		t.Fatalf("find bridge: %v", err)
	}
	topo.BridgeIndex = brLink.Attrs().Index
	// Give the bridge the .254 address so host <-> namespace traffic works.
	brAddr := netip.PrefixFrom(hostAddr(subnet, 254), 24)
	if err := netlink.AddrAdd(brLink, &netlink.Addr{IPNet: prefixToIPNet(brAddr)}); err != nil {
		t.Fatalf("address bridge: %v", err)
	}
	topo.allowForwarding(t)

	for i := 0; i < n; i++ {
		topo.Hosts = append(topo.Hosts, topo.addHost(t, id, i))
	}
	return topo
}

// BridgeIP is the bridge's own address (the "host" side of the subnet).
func (topo *Topology) BridgeIP() netip.Addr { return hostAddr(topo.Subnet, 254) }

func hostAddr(p netip.Prefix, last byte) netip.Addr {
	a := p.Addr().As4()
	a[3] = last
	return netip.AddrFrom4(a)
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (topo *Topology) addHost(t testing.TB, id string, i int) *NSHost {
	t.Helper()
	h := &NSHost{
		Name:     fmt.Sprintf("htns%s-%d", id, i),
		Iface:    "eth0",
		HostVeth: fmt.Sprintf("htv%s%d", id, i),
		IP:       hostAddr(topo.Subnet, byte(i+1)),
	}
	h.Path = "/run/netns/" + h.Name
	if err := newNamedNetns(h.Name); err != nil {
		t.Fatalf("create netns %s: %v", h.Name, err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(h.Name) })
	ino, err := NetnsInode(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	h.NetnsIno = ino

	peerName := "htp" + id + fmt.Sprint(i)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: h.HostVeth, MasterIndex: topo.BridgeIndex}, PeerName: peerName}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("create veth %s: %v", h.HostVeth, err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	hostLink, err := netlink.LinkByName(h.HostVeth)
	if err != nil {
		t.Fatal(err)
	}
	h.HostVethIndex = hostLink.Attrs().Index
	if err := netlink.LinkSetUp(hostLink); err != nil {
		t.Fatal(err)
	}
	peer, err := netlink.LinkByName(peerName)
	if err != nil {
		t.Fatal(err)
	}
	nsh, err := netns.GetFromPath(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	if err := netlink.LinkSetNsFd(peer, int(nsh)); err != nil {
		t.Fatalf("move %s into %s: %v", peerName, h.Name, err)
	}
	nl, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	in, err := nl.LinkByName(peerName)
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetName(in, h.Iface); err != nil {
		t.Fatal(err)
	}
	if err := nl.AddrAdd(in, &netlink.Addr{IPNet: prefixToIPNet(netip.PrefixFrom(h.IP, 24))}); err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(in); err != nil {
		t.Fatal(err)
	}
	if lo, err := nl.LinkByName("lo"); err == nil {
		_ = nl.LinkSetUp(lo)
	}
	h.IfaceIndex = in.Attrs().Index
	h.MAC = in.Attrs().HardwareAddr
	// Route everything else via the bridge address, as Docker does.
	gw := topo.BridgeIP()
	_ = nl.RouteAdd(&netlink.Route{LinkIndex: h.IfaceIndex, Gw: gw.AsSlice()})
	return h
}

// newNamedNetns creates /run/netns/<name> without changing the namespace of
// any thread other than a throwaway locked one.
func newNamedNetns(name string) error {
	return onLockedThread(func() error {
		ns, err := netns.NewNamed(name) // creates it and moves this thread in
		if err == nil {
			ns.Close()
		}
		return err
	}, nil)
}

// Do runs fn with the calling goroutine's thread in the namespace of path.
// Sockets opened inside fn stay in that namespace after fn returns.
func Do(path string, fn func() error) error {
	return onLockedThread(func() error {
		target, err := netns.GetFromPath(path)
		if err != nil {
			return err
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter netns %s: %w", path, err)
		}
		return nil
	}, fn)
}

// onLockedThread runs enter and then fn (if enter succeeded) on a locked
// thread of a new goroutine, then moves the thread back to its original
// namespace. If that fails the thread stays locked, so the runtime discards
// it with the goroutine instead of reusing a thread in the wrong namespace.
func onLockedThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ferr := enter()
		if ferr == nil && fn != nil {
			ferr = fn()
		}
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Do runs fn inside the host's namespace.
func (h *NSHost) Do(fn func() error) error { return Do(h.Path, fn) }

// Exec runs a command inside the namespace and returns its combined output.
// The child inherits the namespace of the forking thread.
func (h *NSHost) Exec(name string, args ...string) (string, error) {
	var out []byte
	err := h.Do(func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	return string(out), err
}

// ListenTCP opens a TCP listener inside the namespace.
func (h *NSHost) ListenTCP(t testing.TB, port int) *net.TCPListener {
	t.Helper()
	var l *net.TCPListener
	err := h.Do(func() error {
		var err error
		l, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: h.IP.AsSlice(), Port: port})
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", h.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// DialTCP connects from inside the namespace.
func (h *NSHost) DialTCP(t testing.TB, to netip.AddrPort) *net.TCPConn {
	t.Helper()
	var c *net.TCPConn
	err := h.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		conn, err := d.Dial("tcp4", to.String())
		if err != nil {
			return err
		}
		c = conn.(*net.TCPConn)
		return nil
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", to, h.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// UDPConn opens a UDP socket inside the namespace bound to port (0: any).
func (h *NSHost) UDPConn(t testing.TB, port int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := h.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: h.IP.AsSlice(), Port: port})
		return err
	})
	if err != nil {
		t.Fatalf("udp socket in %s: %v", h.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Ping sends count ICMP echo requests to dst from inside the namespace and
// returns how many replies came back. id is the ICMP identifier used.
func (h *NSHost) Ping(t testing.TB, dst netip.Addr, count int, id uint16) int {
	t.Helper()
	var conn net.PacketConn
	err := h.Do(func() error {
		var err error
		conn, err = net.ListenPacket("ip4:icmp", h.IP.String())
		return err
	})
	if err != nil {
		t.Fatalf("icmp socket in %s: %v", h.Name, err)
	}
	defer conn.Close()
	replies := 0
	buf := make([]byte, 1500)
	for seq := 1; seq <= count; seq++ {
		msg := EchoRequest(id, uint16(seq), []byte("hoptrace-test"))
		if _, err := conn.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			t.Fatalf("ping %s: %v", dst, err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			_ = conn.SetReadDeadline(deadline)
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == uint16(seq) {
				replies++
				break
			}
		}
	}
	return replies
}

// EchoRequest builds an ICMPv4 echo request message.
func EchoRequest(id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = 8
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[2:], ^uint16(sum))
	return b
}

// allowForwarding makes bridged traffic on the test bridge pass the host's
// FORWARD chains: with br_netfilter loaded (Docker loads it) bridged frames
// traverse iptables and ip6tables, and Docker sets the FORWARD policy to DROP.
func (topo *Topology) allowForwarding(t testing.TB) {
	t.Helper()
	topo.acceptForward(t, "iptables", "bridge-nf-call-iptables", true)
	// IPv6 is optional for most tests: a missing ip6tables only matters to
	// the IPv6 ones, which then fail on their own.
	topo.acceptForward(t, "ip6tables", "bridge-nf-call-ip6tables", false)
}

func (topo *Topology) acceptForward(t testing.TB, tool, sysctl string, required bool) {
	t.Helper()
	if _, err := os.Stat("/proc/sys/net/bridge/" + sysctl); err != nil {
		return // br_netfilter not loaded: bridged traffic skips the chain
	}
	ipt, err := exec.LookPath(tool)
	if err != nil {
		return
	}
	for _, rule := range [][]string{
		{"FORWARD", "-i", topo.Bridge, "-j", "ACCEPT"},
		{"FORWARD", "-o", topo.Bridge, "-j", "ACCEPT"},
	} {
		args := append([]string{"-w", "-I"}, rule...)
		if out, err := exec.Command(ipt, args...).CombinedOutput(); err != nil {
			if required {
				t.Fatalf("%s %v: %v: %s", tool, args, err, out)
			}
			t.Logf("%s %v: %v: %s (continuing)", tool, args, err, out)
			continue
		}
		r := rule
		t.Cleanup(func() { _ = exec.Command(ipt, append([]string{"-w", "-D"}, r...)...).Run() })
	}
}
