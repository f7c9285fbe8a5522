package filter

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/event"
)

func udp(src, dst string, sport, dport uint16) *event.Packet {
	p := &event.Packet{Layers: event.LayerEth | event.LayerUDP, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		Proto: event.ProtoUDP, SrcPort: sport, DstPort: dport}
	if p.Src.Is4() {
		p.Layers |= event.LayerIPv4
		p.EtherType = event.EtherTypeIPv4
	} else {
		p.Layers |= event.LayerIPv6
		p.EtherType = event.EtherTypeIPv6
	}
	return p
}

func tcp(src, dst string, sport, dport uint16) *event.Packet {
	p := udp(src, dst, sport, dport)
	p.Layers = p.Layers&^event.LayerUDP | event.LayerTCP
	p.Proto = event.ProtoTCP
	return p
}

func icmp(src, dst string) *event.Packet {
	return &event.Packet{Layers: event.LayerEth | event.LayerIPv4 | event.LayerICMP, EtherType: event.EtherTypeIPv4,
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: event.ProtoICMP, ICMPType: 8}
}

func icmp6(src, dst string) *event.Packet {
	return &event.Packet{Layers: event.LayerEth | event.LayerIPv6 | event.LayerICMPv6, EtherType: event.EtherTypeIPv6,
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: event.ProtoICMPv6, ICMPType: 128}
}

func arp(sender, target string) *event.Packet {
	return &event.Packet{Layers: event.LayerEth | event.LayerARP, EtherType: event.EtherTypeARP,
		Src: netip.MustParseAddr(sender), Dst: netip.MustParseAddr(target), ARPOp: 1}
}

func TestMatch(t *testing.T) {
	var (
		u5001   = udp("10.0.0.1", "10.0.0.2", 40000, 5001)
		u5002   = udp("10.0.0.1", "10.0.0.2", 40000, 5002)
		t80     = tcp("10.0.0.3", "192.168.1.9", 80, 51000)
		t8080v6 = tcp("fd00::1", "fd00::2", 33000, 8080)
		ping    = icmp("10.0.0.1", "10.0.0.2")
		ping6   = icmp6("fd00::1", "fd00::2")
		who     = arp("10.0.0.1", "10.0.0.2")
		frag    = &event.Packet{Layers: event.LayerEth | event.LayerIPv4 | event.LayerFragment, EtherType: event.EtherTypeIPv4,
			Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: event.ProtoUDP}
	)
	all := map[string]*event.Packet{"u5001": u5001, "u5002": u5002, "t80": t80, "t8080v6": t8080v6,
		"ping": ping, "ping6": ping6, "arp": who, "frag": frag}
	for _, tc := range []struct {
		expr string
		want string // names of the packets that match, space separated
	}{
		{"udp and dst port 5001", "u5001"},
		{"udp && dst port 5001", "u5001"},
		{"udp", "u5001 u5002 frag"},
		{"tcp", "t80 t8080v6"},
		{"icmp", "ping"},
		{"icmp6", "ping6"},
		{"arp", "arp"},
		{"ip", "u5001 u5002 t80 ping frag"},
		{"ip6", "t8080v6 ping6"},
		{"not icmp", "u5001 u5002 t80 t8080v6 ping6 arp frag"},
		{"! icmp and ! arp", "u5001 u5002 t80 t8080v6 ping6 frag"},
		{"!(icmp or arp)", "u5001 u5002 t80 t8080v6 ping6 frag"},
		{"port 80", "t80"},
		{"src port 80", "t80"},
		{"dst port 80", ""},
		{"not port 80", "u5001 u5002 t8080v6 ping ping6 arp frag"},
		{"portrange 5000-5001", "u5001"},
		{"portrange 5002-5001", "u5001 u5002"},
		{"dst portrange 8000-9000", "t8080v6"},
		{"tcp port 8080", "t8080v6"},
		{"udp port 80", ""},
		{"host 10.0.0.2", "u5001 u5002 ping arp frag"},
		{"src host 10.0.0.2", ""},
		{"dst host 10.0.0.2", "u5001 u5002 ping arp frag"},
		{"host fd00::2", "t8080v6 ping6"},
		{"src host fd00::1", "t8080v6 ping6"},
		{"net 10.0.0.0/24", "u5001 u5002 t80 ping arp frag"},
		{"dst net 192.168.0.0/16", "t80"},
		{"net fd00::/8", "t8080v6 ping6"},
		{"net 10.0.0.2", "u5001 u5002 ping arp frag"},
		{"arp host 10.0.0.1", "arp"},
		{"ip host 10.0.0.1", "u5001 u5002 ping frag"},
		{"host 10.0.0.1 and (port 5001 or icmp)", "u5001 ping"},
		{"host 10.0.0.1 and port 5001 or icmp", "u5001 ping"},
		{"icmp or host 10.0.0.3 and port 80", "t80 ping"},
		{"not not udp", "u5001 u5002 frag"},
		{"not (udp and not dst port 5002)", "u5002 t80 t8080v6 ping ping6 arp"},
		{"(tcp or udp) and (src net 10.0.0.0/8 or src net fd00::/16) and not port 5002", "u5001 t80 t8080v6 frag"},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			p, err := Compile(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, name := range strings.Fields("u5001 u5002 t80 t8080v6 ping ping6 arp frag") {
				if p.Match(all[name]) {
					got = append(got, name)
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("matches %q, want %q (clauses %+v)", g, tc.want, p.Clauses)
			}
		})
	}
}

func TestCompileShape(t *testing.T) {
	for _, tc := range []struct {
		expr    string
		clauses int
		preds   []int
	}{
		{"udp and dst port 5001", 1, []int{2}},
		{"tcp port 8080", 1, []int{2}},
		{"host 10.0.0.1", 1, []int{1}},
		{"(host 10.0.0.1 or host 10.0.0.2) and (port 1 or port 2)", 4, []int{2, 2, 2, 2}},
		{"not (tcp and port 80)", 2, []int{1, 1}},
	} {
		p, err := Compile(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if len(p.Clauses) != tc.clauses {
			t.Errorf("%s: %d clauses, want %d", tc.expr, len(p.Clauses), tc.clauses)
			continue
		}
		for i, c := range p.Clauses {
			if len(c) != tc.preds[i] {
				t.Errorf("%s: clause %d has %d predicates, want %d", tc.expr, i, len(c), tc.preds[i])
			}
		}
	}
	if p, err := Compile("  \t"); p != nil || err != nil {
		t.Errorf("empty expression: %v, %v", p, err)
	}
	if p, _ := Compile("udp   and\tport 1"); p.Expr != "udp and port 1" {
		t.Errorf("Expr %q", p.Expr)
	}
	var none *Program
	if !none.Match(&event.Packet{}) {
		t.Error("nil program must match everything")
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"udp and port http", "filter: expected a port number after 'port', got 'http' at word 4"},
		{"tcp and port", "filter: expected a port number after 'port', got the end at word 3"},
		{"port 65536", "filter: expected a port number after 'port', got '65536' at word 2"},
		{"portrange 10", "filter: expected a port range like 1024-2047 after 'portrange', got '10' at word 2"},
		{"host example.com", "filter: expected an IP address after 'host', got 'example.com' (names are not resolved) at word 2"},
		{"net 10.0.0.1/8", "filter: '10.0.0.1/8' has host bits set (did you mean 10.0.0.0/8?) at word 2"},
		{"net 10.0.0.0/33", "filter: expected a network like 10.0.0.0/8 after 'net', got '10.0.0.0/33' at word 2"},
		{"10.0.0.1", "filter: unexpected address '10.0.0.1' (write 'host 10.0.0.1') at word 1"},
		{"udp or", "filter: expected a primitive (host, net, port, portrange, tcp, udp, ...) after 'or' at word 2"},
		{"and udp", "filter: expected a primitive (host, net, port, portrange, tcp, udp, ...) before 'and' at word 1"},
		{"(udp", "filter: unclosed '(' at word 1"},
		{"udp)", "filter: unmatched ')' at word 2"},
		{"udp tcp", "filter: expected 'and' or 'or', got 'tcp' at word 2"},
		{"src 10.0.0.1", "filter: expected host, net, port or portrange after 'src', got '10.0.0.1' at word 2"},
		{"udp & tcp", "filter: '&' is not an operator (use '&&' or 'and') at word 2"},
		{"bogus", "filter: unknown word 'bogus' (expected host, net, port, portrange, src, dst, tcp, udp, icmp, icmp6, arp, ip, ip6, not, and, or) at word 1"},
		{"()", "filter: expected a primitive (host, net, port, portrange, tcp, udp, ...) before ')' at word 2"},
		{"host fe80::1%eth0", "filter: expected an IP address after 'host', got 'fe80::1%eth0' (names are not resolved) at word 2"},
	} {
		_, err := Compile(tc.expr)
		var se *SyntaxError
		if !errors.As(err, &se) || err.Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", tc.expr, err, tc.want)
		}
	}
}

func TestTooComplex(t *testing.T) {
	// 5 ORs of 2 -> 32 clauses.
	expr := strings.Repeat("(port 1 or port 2) and ", 4) + "(port 1 or port 2)"
	_, err := Compile(expr)
	if !errors.Is(err, ErrTooComplex) || err.Error() != "filter too complex: 32 clauses when written as ORs of ANDs, at most 16" {
		t.Errorf("got %v", err)
	}
	_, err = Compile(strings.Repeat("port 1 and ", MaxPreds) + "port 2")
	if !errors.Is(err, ErrTooComplex) || !strings.Contains(err.Error(), "9 conditions ANDed in one clause, at most 8") {
		t.Errorf("got %v", err)
	}
	// Exponential blow-up is counted, not built.
	_, err = Compile(strings.Repeat("(port 1 or port 2) and ", 60) + "udp")
	if !errors.Is(err, ErrTooComplex) {
		t.Errorf("got %v", err)
	}
	_, err = Compile(strings.Repeat("(", 100) + "udp" + strings.Repeat(")", 100))
	if err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("got %v", err)
	}
	if _, err := Compile(strings.Repeat("port 1 or ", MaxClauses-1) + "port 2"); err != nil {
		t.Errorf("%d clauses: %v", MaxClauses, err)
	}
}

func TestStartsExpression(t *testing.T) {
	for w, want := range map[string]bool{"tcp": true, "(": true, "not": true, "!": true, "host": true, "x.hop": false, "-": false, "(tcp": true, "!arp": true, "tcp port 80": true, " host 10.0.0.1": true} {
		if StartsExpression(w) != want {
			t.Errorf("StartsExpression(%q) != %v", w, want)
		}
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{"udp and dst port 5001", "not (host 10.0.0.1 or net fd00::/8) && portrange 1-2",
		"!(tcp||udp)", "((((", "port", "src net 10.0.0.0/8 or ip6 and icmp6", "a & b", ")"} {
		f.Add(s)
	}
	pk := udp("10.0.0.1", "10.0.0.2", 1, 2)
	f.Fuzz(func(t *testing.T, expr string) {
		p, err := Compile(expr)
		if err != nil {
			if p != nil {
				t.Fatal("program and error")
			}
			if s := err.Error(); strings.Contains(s, "\n") || !strings.HasPrefix(s, "filter") {
				t.Fatalf("error %q is not one line starting with filter", s)
			}
			return
		}
		if p == nil {
			return
		}
		if len(p.Clauses) > MaxClauses {
			t.Fatalf("%d clauses", len(p.Clauses))
		}
		for _, c := range p.Clauses {
			if len(c) == 0 || len(c) > MaxPreds {
				t.Fatalf("clause of %d predicates", len(c))
			}
		}
		p.Match(pk)
		// The normalised expression compiles to the same program.
		q, err := Compile(p.Expr)
		if err != nil || len(q.Clauses) != len(p.Clauses) {
			t.Fatalf("recompiling %q: %v", p.Expr, err)
		}
	})
}
