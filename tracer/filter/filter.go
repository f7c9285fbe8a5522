// Package filter parses hoptrace's tcpdump-style packet filter expressions
// and compiles them into a small, fixed-size program the BPF hook evaluates
// (see tracer.Options.Filter). It is pure Go: no kernel, no cgo.
//
// The language is a subset of tcpdump's (pcap-filter(7)):
//
//	host ADDR, src host ADDR, dst host ADDR     IPv4 or IPv6 address (ARP: sender/target)
//	net CIDR, src net CIDR, dst net CIDR        10.0.0.0/8, fd00::/8, or a single address
//	port N, src port N, dst port N              TCP or UDP port
//	portrange N-M, src portrange, dst portrange TCP or UDP ports N to M
//	tcp, udp, icmp, icmp6, arp, ip, ip6         protocols; before a primitive they qualify it
//	                                            ("tcp port 80" is "tcp and port 80")
//	and, &&, or, ||, not, !, ( )                not binds tightest, then and, then or
//
// Names are not resolved (no DNS): addresses and port numbers only.
//
// Compile turns an expression into disjunctive normal form: at most
// MaxClauses clauses (ORed) of at most MaxPreds predicates (ANDed) each,
// every predicate a field compared with a masked value or a range, possibly
// negated. Program.Match evaluates a program on a decoded packet the way
// the kernel does.
package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// Limits of a compiled program, equal to FILTER_MAX_CLAUSES and
// FILTER_MAX_PREDS in bpf/hoptrace.c.
const (
	MaxClauses = 16
	MaxPreds   = 8
)

// maxDepth bounds nesting of parentheses and nots.
const maxDepth = 64

// ErrTooComplex is wrapped by the errors for expressions beyond MaxClauses
// or MaxPreds. Syntax errors are *SyntaxError.
var ErrTooComplex = errors.New("filter too complex")

// Field is what a predicate looks at. The values equal enum filter_field
// in bpf/hoptrace.c.
type Field uint8

const (
	FieldSrcAddr   Field = 1 // source address (ARP: sender protocol address)
	FieldDstAddr   Field = 2 // destination address (ARP: target protocol address)
	FieldAnyAddr   Field = 3 // either address
	FieldSrcPort   Field = 4
	FieldDstPort   Field = 5
	FieldAnyPort   Field = 6
	FieldProto     Field = 7 // IP protocol / IPv6 next header
	FieldEtherType Field = 8
)

var fieldNames = map[Field]string{
	FieldSrcAddr: "src addr", FieldDstAddr: "dst addr", FieldAnyAddr: "addr",
	FieldSrcPort: "src port", FieldDstPort: "dst port", FieldAnyPort: "port",
	FieldProto: "proto", FieldEtherType: "ethertype",
}

func (f Field) String() string {
	if n, ok := fieldNames[f]; ok {
		return n
	}
	return "field(" + strconv.Itoa(int(f)) + ")"
}

// Pred is one comparison. It holds when the packet has one of Layers (0:
// any packet) and its Field is within [Lo, Hi] (ports, protocol,
// ethertype) or, for addresses, (address & Mask) == Addr, where addresses
// are 16 bytes with IPv4 in the first 4. Not inverts the result, so "not
// port 80" holds for packets without ports, as in tcpdump.
type Pred struct {
	Field  Field
	Not    bool
	Layers event.Layer
	Lo, Hi uint16
	Addr   [16]byte
	Mask   [16]byte
}

// Program is a compiled filter: it matches when any clause matches, and a
// clause matches when all its predicates hold. A nil *Program matches
// everything.
type Program struct {
	Expr    string // the expression, words joined by single spaces
	Clauses [][]Pred
}

func (p *Program) String() string {
	if p == nil {
		return ""
	}
	return p.Expr
}

// Compile parses expr and compiles it. An empty expression gives a nil
// program (no filter).
func Compile(expr string) (*Program, error) {
	n, words, err := parse(expr)
	if err != nil || n == nil {
		return nil, err
	}
	n = nnf(n, false)
	if c := countClauses(n); c > MaxClauses {
		return nil, fmt.Errorf("%w: %s clauses when written as ORs of ANDs, at most %d", ErrTooComplex, countString(c), MaxClauses)
	}
	if w := widestClause(n); w > MaxPreds {
		return nil, fmt.Errorf("%w: %d conditions ANDed in one clause, at most %d", ErrTooComplex, w, MaxPreds)
	}
	return &Program{Expr: strings.Join(words, " "), Clauses: dnf(n)}, nil
}

// StartsExpression reports whether word can begin a filter expression
// (a keyword or "not", or it starts with "(" or "!"); of an argument
// holding a whole quoted expression, the first word counts.
func StartsExpression(word string) bool {
	if f := strings.Fields(word); len(f) > 0 {
		word = f[0] // a quoted expression: 'tcp port 80'
	}
	if strings.HasPrefix(word, "(") || strings.HasPrefix(word, "!") {
		return true
	}
	switch word {
	case "(", "!", "not", "host", "net", "port", "portrange", "src", "dst":
		return true
	}
	_, ok := protos[word]
	return ok
}

// Match evaluates the program on a decoded packet as the BPF hook does.
func (p *Program) Match(pk *event.Packet) bool {
	if p == nil {
		return true
	}
	for _, c := range p.Clauses {
		ok := true
		for i := range c {
			if !c[i].match(pk) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func addr16(a netip.Addr) (b [16]byte) {
	if a.Is4() {
		v := a.As4()
		copy(b[:], v[:])
		return b
	}
	if a.Is6() {
		return a.As16()
	}
	return b
}

func (pr *Pred) match(pk *event.Packet) bool {
	r := false
	if pr.Layers == 0 || pk.Layers&pr.Layers != 0 {
		in := func(v uint16) bool { return v >= pr.Lo && v <= pr.Hi }
		addr := func(a netip.Addr) bool {
			b := addr16(a)
			for i := range b {
				if b[i]&pr.Mask[i] != pr.Addr[i] {
					return false
				}
			}
			return true
		}
		switch pr.Field {
		case FieldSrcAddr:
			r = addr(pk.Src)
		case FieldDstAddr:
			r = addr(pk.Dst)
		case FieldAnyAddr:
			r = addr(pk.Src) || addr(pk.Dst)
		case FieldSrcPort:
			r = in(pk.SrcPort)
		case FieldDstPort:
			r = in(pk.DstPort)
		case FieldAnyPort:
			r = in(pk.SrcPort) || in(pk.DstPort)
		case FieldProto:
			r = in(uint16(pk.Proto))
		case FieldEtherType:
			r = in(pk.EtherType)
		}
	}
	return r != pr.Not
}

// ---- syntax tree and normal forms ----

type opKind uint8

const (
	opPred opKind = iota
	opAnd
	opOr
	opNot
)

type node struct {
	op   opKind
	l, r *node // and, or; not uses l
	pred Pred
}

// nnf pushes negations down to the predicates.
func nnf(n *node, neg bool) *node {
	switch n.op {
	case opNot:
		return nnf(n.l, !neg)
	case opAnd, opOr:
		op := n.op
		if neg {
			op = opAnd + opOr - op
		}
		return &node{op: op, l: nnf(n.l, neg), r: nnf(n.r, neg)}
	}
	p := n.pred
	p.Not = p.Not != neg
	return &node{op: opPred, pred: p}
}

const countCap = 1 << 30

// countClauses is the number of clauses of n's DNF (saturating).
func countClauses(n *node) int {
	switch n.op {
	case opOr:
		return min(countClauses(n.l)+countClauses(n.r), countCap)
	case opAnd:
		a, b := countClauses(n.l), countClauses(n.r)
		if a > 0 && b > countCap/a {
			return countCap
		}
		return a * b
	}
	return 1
}

func countString(c int) string {
	if c >= countCap {
		return "over " + strconv.Itoa(countCap)
	}
	return strconv.Itoa(c)
}

// widestClause is the most predicates in one clause of n's DNF.
func widestClause(n *node) int {
	switch n.op {
	case opOr:
		return max(widestClause(n.l), widestClause(n.r))
	case opAnd:
		return widestClause(n.l) + widestClause(n.r)
	}
	return 1
}

// dnf distributes and over or; n is in negation normal form and small
// enough (checked by the counts).
func dnf(n *node) [][]Pred {
	switch n.op {
	case opOr:
		return append(dnf(n.l), dnf(n.r)...)
	case opAnd:
		var out [][]Pred
		for _, a := range dnf(n.l) {
			for _, b := range dnf(n.r) {
				out = append(out, append(append([]Pred{}, a...), b...))
			}
		}
		return out
	}
	return [][]Pred{{n.pred}}
}
