package main

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// TestTraceEqualDatagramsTwoClients: two containers send a listener in a
// third UDP datagrams that are equal but for their source address (same
// length, IP ID, ports and payload), interleaved 1 ms apart. Each journey
// must hold the hops of one client only: equal content must never join two
// packets.
func TestTraceEqualDatagramsTwoClients(t *testing.T) {
	testenv.RequireDocker(t)
	srv := testenv.RunContainer(t, testenv.UniqueName("ht-udpsrv"), nil, "sleep", "600")
	c1 := testenv.RunContainer(t, testenv.UniqueName("ht-c1"), nil, "sleep", "600")
	c2 := testenv.RunContainer(t, testenv.UniqueName("ht-c2"), nil, "sleep", "600")
	const port = 7777
	// A socket bound in the server's namespace receives them.
	var rx int
	if err := testenv.Do(srv.NetnsPath(), func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		rx = fd
		return syscall.Bind(fd, &syscall.SockaddrInet4{Port: port})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(rx) })
	send1, send2 := rawUDPSender(t, c1), rawUDPSender(t, c2)

	run := startHoptrace(t, "trace", "-o", "json", "-C", srv.Name, "udp", "port", "7777")
	const n = 150
	for i := 0; i < n; i++ {
		send1(srv.IP(), port)
		time.Sleep(time.Millisecond)
		send2(srv.IP(), port)
		time.Sleep(time.Millisecond)
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	js, sum := run.jsonOut(t)
	mixed, whole := 0, map[string]int{}
	for _, j := range js {
		if j.Packet == nil || j.Packet.DstPort != port {
			continue
		}
		var from []string
		for _, h := range j.Hops {
			for _, c := range []string{c1.Name, c2.Name} {
				if strings.HasPrefix(h.Label, c+":") || h.Container == c {
					from = append(from, c)
				}
			}
		}
		if len(from) == 0 {
			continue
		}
		for _, c := range from[1:] {
			if c != from[0] {
				mixed++
				if mixed <= 3 {
					t.Errorf("journey %d (%s) holds hops of both clients: %v", j.ID, j.Summary, labels(&j))
				}
				break
			}
		}
		if len(j.Hops) == 4 && j.Verdict == "delivered" && j.Packet.Src == containerIP(c1, c2, from[0]) {
			whole[from[0]]++
		}
	}
	if mixed > 0 {
		t.Errorf("%d journeys mixed the two clients' packets", mixed)
	}
	// Nearly every datagram is one whole journey (a hook attached late may
	// miss the first few), and nothing was lost.
	for _, c := range []string{c1.Name, c2.Name} {
		if whole[c] < n*9/10 {
			t.Errorf("%s: %d whole journeys (4 hops, delivered, its own source), want at least %d of %d", c, whole[c], n*9/10, n)
		}
	}
	if sum == nil || sum.Lost != 0 {
		t.Errorf("summary %+v, want nothing lost", sum)
	}
}

func containerIP(c1, c2 testenv.Container, name string) string {
	if name == c1.Name {
		return c1.IP().String()
	}
	return c2.IP().String()
}

// rawUDPSender returns a function that sends, from inside container c, an
// IPv4 UDP datagram whose every header field but the source address is
// fixed: IP ID 0x4242, source port 5555, 32 bytes of payload.
func rawUDPSender(t *testing.T, c testenv.Container) func(dst netip.Addr, port int) {
	t.Helper()
	var fd int
	if err := testenv.Do(c.NetnsPath(), func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Fatalf("raw socket in %s: %v", c.Name, err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	src := c.IP().As4()
	return func(dst netip.Addr, port int) {
		payload := []byte(strings.Repeat("hoptrace", 4))
		pkt := make([]byte, 20+8+len(payload))
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		binary.BigEndian.PutUint16(pkt[4:], 0x4242) // the same IP ID for both
		pkt[8] = 64
		pkt[9] = syscall.IPPROTO_UDP
		copy(pkt[12:16], src[:])
		d := dst.As4()
		copy(pkt[16:20], d[:])
		binary.BigEndian.PutUint16(pkt[10:], ipChecksum(pkt[:20]))
		binary.BigEndian.PutUint16(pkt[20:], 5555)
		binary.BigEndian.PutUint16(pkt[22:], uint16(port))
		binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
		copy(pkt[28:], payload) // UDP checksum 0: none, valid for IPv4
		if err := syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: d}); err != nil {
			t.Errorf("send from %s: %v", c.Name, err)
		}
	}
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
