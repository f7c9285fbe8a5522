package testenv

import (
	"net/netip"
	"strings"
	"testing"
)

func TestTopologyPing(t *testing.T) {
	topo := NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	if got := a.Ping(t, b.IP, 2, 0x4242); got != 2 {
		t.Fatalf("ping %s -> %s: %d/2 replies", a.Name, b.Name, got)
	}
	l := b.ListenTCP(t, 0)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c := a.DialTCP(t, netip.MustParseAddrPort(l.Addr().String()))
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("tcp read: %q %v", buf, err)
	}
	if a.NetnsIno == 0 || a.NetnsIno == topo.HostNetnsIno {
		t.Fatalf("netns inode %d (host %d)", a.NetnsIno, topo.HostNetnsIno)
	}
}

func TestDockerContainers(t *testing.T) {
	RequireDocker(t)
	web := RunContainer(t, UniqueName("ht-web"), nil, "httpd", "-f", "-p", "8080", "-h", "/www")
	client := RunContainer(t, UniqueName("ht-client"), nil, "sleep", "600")
	if !web.IP().IsValid() || web.PID == 0 {
		t.Fatalf("web: %+v", web)
	}
	out, err := Exec(client.Name, "ping", "-c", "1", "-W", "2", web.IP().String())
	if err != nil || !strings.Contains(out, "1 packets received") {
		t.Fatalf("ping web from client: %v %s", err, out)
	}
}
