package filter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// SyntaxError is a parse error at a word of the expression (1-based;
// parentheses, "!", "&&" and "||" count as words).
type SyntaxError struct {
	Word int
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Word == 0 {
		return "filter: " + e.Msg
	}
	return fmt.Sprintf("filter: %s at word %d", e.Msg, e.Word)
}

// tokenize splits expr into words: runs of other characters, and "(", ")",
// "!", "&&", "||" on their own.
func tokenize(expr string) ([]string, error) {
	var words []string
	cur := strings.Builder{}
	flush := func() {
		if cur.Len() > 0 {
			words = append(words, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			flush()
		case c == '(' || c == ')' || c == '!':
			flush()
			words = append(words, string(c))
		case c == '&' || c == '|':
			flush()
			if i+1 < len(expr) && expr[i+1] == c {
				words = append(words, string([]byte{c, c}))
				i++
				continue
			}
			return nil, &SyntaxError{Word: len(words) + 1, Msg: fmt.Sprintf("'%c' is not an operator (use '%c%c' or '%s')", c, c, c, map[byte]string{'&': "and", '|': "or"}[c])}
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return words, nil
}

type parser struct {
	words []string
	pos   int
	depth int
}

func (p *parser) peek() string {
	if p.pos < len(p.words) {
		return p.words[p.pos]
	}
	return ""
}

// errf reports an error at the current word, or at the last one when the
// expression ended too early.
func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{Word: min(p.pos+1, len(p.words)), Msg: fmt.Sprintf(format, args...)}
}

// what describes the current word for an error message.
func (p *parser) what() string {
	if p.pos >= len(p.words) {
		return "the end"
	}
	return "'" + p.words[p.pos] + "'"
}

// parse returns the tree of expr (nil for an empty expression) and its words.
func parse(expr string) (*node, []string, error) {
	words, err := tokenize(expr)
	if err != nil {
		return nil, nil, err
	}
	if len(words) == 0 {
		return nil, nil, nil
	}
	p := &parser{words: words}
	n, err := p.or()
	if err != nil {
		return nil, nil, err
	}
	if p.pos < len(words) {
		if words[p.pos] == ")" {
			return nil, nil, p.errf("unmatched ')'")
		}
		return nil, nil, p.errf("expected 'and' or 'or', got %s", p.what())
	}
	return n, words, nil
}

func (p *parser) or() (*node, error) {
	n, err := p.and()
	if err != nil {
		return nil, err
	}
	for w := p.peek(); w == "or" || w == "||"; w = p.peek() {
		p.pos++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		n = &node{op: opOr, l: n, r: r}
	}
	return n, nil
}

func (p *parser) and() (*node, error) {
	n, err := p.unary()
	if err != nil {
		return nil, err
	}
	for w := p.peek(); w == "and" || w == "&&"; w = p.peek() {
		p.pos++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		n = &node{op: opAnd, l: n, r: r}
	}
	return n, nil
}

func (p *parser) unary() (*node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errf("nested too deeply (at most %d levels)", maxDepth)
	}
	switch w := p.peek(); w {
	case "not", "!":
		p.pos++
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &node{op: opNot, l: x}, nil
	case "(":
		open := p.pos
		p.pos++
		x, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			if p.pos >= len(p.words) {
				return nil, &SyntaxError{Word: open + 1, Msg: "unclosed '('"}
			}
			return nil, p.errf("expected ')', got %s", p.what())
		}
		p.pos++
		return x, nil
	}
	return p.primitive()
}

// protos are the protocol keywords as predicates.
var protos = map[string]Pred{
	"tcp":   {Field: FieldProto, Layers: event.LayerIPv4 | event.LayerIPv6, Lo: uint16(event.ProtoTCP), Hi: uint16(event.ProtoTCP)},
	"udp":   {Field: FieldProto, Layers: event.LayerIPv4 | event.LayerIPv6, Lo: uint16(event.ProtoUDP), Hi: uint16(event.ProtoUDP)},
	"icmp":  {Field: FieldProto, Layers: event.LayerIPv4, Lo: uint16(event.ProtoICMP), Hi: uint16(event.ProtoICMP)},
	"icmp6": {Field: FieldProto, Layers: event.LayerIPv6, Lo: uint16(event.ProtoICMPv6), Hi: uint16(event.ProtoICMPv6)},
	"arp":   {Field: FieldEtherType, Lo: event.EtherTypeARP, Hi: event.EtherTypeARP},
	"ip":    {Field: FieldEtherType, Lo: event.EtherTypeIPv4, Hi: event.EtherTypeIPv4},
	"ip6":   {Field: FieldEtherType, Lo: event.EtherTypeIPv6, Hi: event.EtherTypeIPv6},
}

func isKind(w string) bool {
	switch w {
	case "host", "net", "port", "portrange", "src", "dst":
		return true
	}
	return false
}

// primitive: [proto] [src|dst] (host ADDR | net CIDR | port N | portrange N-M), or proto.
func (p *parser) primitive() (*node, error) {
	w := p.peek()
	if pr, ok := protos[w]; ok {
		p.pos++
		proto := &node{op: opPred, pred: pr}
		if !isKind(p.peek()) {
			return proto, nil
		}
		x, err := p.qualified()
		if err != nil {
			return nil, err
		}
		return &node{op: opAnd, l: proto, r: x}, nil
	}
	if isKind(w) {
		return p.qualified()
	}
	switch w {
	case "":
		if p.pos > 0 {
			return nil, p.errf("expected a primitive (host, net, port, portrange, tcp, udp, ...) after '%s'", p.words[p.pos-1])
		}
		return nil, p.errf("expected a primitive")
	case "and", "&&", "or", "||", ")":
		return nil, p.errf("expected a primitive (host, net, port, portrange, tcp, udp, ...) before '%s'", w)
	}
	if _, err := netip.ParseAddr(w); err == nil {
		return nil, p.errf("unexpected address '%s' (write 'host %s')", w, w)
	}
	return nil, p.errf("unknown word '%s' (expected host, net, port, portrange, src, dst, tcp, udp, icmp, icmp6, arp, ip, ip6, not, and, or)", w)
}

// qualified: [src|dst] kind value.
func (p *parser) qualified() (*node, error) {
	dir := ""
	if w := p.peek(); w == "src" || w == "dst" {
		dir = w
		p.pos++
	}
	kind := p.peek()
	switch kind {
	case "host", "net", "port", "portrange":
	default:
		if dir != "" {
			return nil, p.errf("expected host, net, port or portrange after '%s', got %s", dir, p.what())
		}
		return nil, p.errf("expected host, net, port or portrange, got %s", p.what())
	}
	p.pos++
	val := p.peek()
	if val == "" || val == "(" || val == ")" || val == "!" || val == "&&" || val == "||" {
		return nil, p.errf("expected %s after '%s', got %s", valueName(kind), kind, p.what())
	}
	var pr Pred
	switch kind {
	case "host", "net":
		a, bits, err := parseNet(kind, val)
		if err != nil {
			return nil, p.errf("%s", err.Error())
		}
		pr.Field = map[string]Field{"": FieldAnyAddr, "src": FieldSrcAddr, "dst": FieldDstAddr}[dir]
		pr.Layers = event.LayerIPv6
		if a.Is4() {
			pr.Layers = event.LayerIPv4 | event.LayerARP
		}
		pr.Addr = addr16(a)
		for i := 0; i < bits; i++ {
			pr.Mask[i/8] |= 0x80 >> (i % 8)
		}
	case "port":
		n, ok := parsePort(val)
		if !ok {
			return nil, p.errf("expected a port number after 'port', got '%s'", val)
		}
		pr.Lo, pr.Hi = n, n
	case "portrange":
		lo, hi, found := strings.Cut(val, "-")
		a, ok1 := parsePort(lo)
		b, ok2 := parsePort(hi)
		if !found || !ok1 || !ok2 {
			return nil, p.errf("expected a port range like 1024-2047 after 'portrange', got '%s'", val)
		}
		if a > b {
			a, b = b, a
		}
		pr.Lo, pr.Hi = a, b
	}
	if kind == "port" || kind == "portrange" {
		pr.Field = map[string]Field{"": FieldAnyPort, "src": FieldSrcPort, "dst": FieldDstPort}[dir]
		pr.Layers = event.LayerTCP | event.LayerUDP
	}
	p.pos++
	return &node{op: opPred, pred: pr}, nil
}

func valueName(kind string) string {
	switch kind {
	case "host":
		return "an IP address"
	case "net":
		return "a network like 10.0.0.0/8"
	case "port":
		return "a port number"
	}
	return "a port range like 1024-2047"
}

func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// parseNet reads an address (host, or net with full length) or a CIDR (net).
func parseNet(kind, s string) (netip.Addr, int, error) {
	if kind == "net" && strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil || pfx.Addr().Zone() != "" {
			return netip.Addr{}, 0, fmt.Errorf("expected a network like 10.0.0.0/8 after 'net', got '%s'", s)
		}
		if pfx.Masked() != pfx {
			return netip.Addr{}, 0, fmt.Errorf("'%s' has host bits set (did you mean %s?)", s, pfx.Masked())
		}
		return pfx.Addr(), pfx.Bits(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		if kind == "host" {
			return netip.Addr{}, 0, fmt.Errorf("expected an IP address after 'host', got '%s' (names are not resolved)", s)
		}
		return netip.Addr{}, 0, fmt.Errorf("expected a network like 10.0.0.0/8 after 'net', got '%s'", s)
	}
	return a, a.BitLen(), nil
}
