package tracer

import (
	"encoding/binary"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/hoptrace/hoptrace/tracer/filter"
)

// The filter as code. bpf/hoptrace.c has filter_match, a loop that
// interprets the predicates setFilter writes into constants: general, and
// about 20 ns a hook for "udp port 9", which is most of what a trace that
// records nothing costs above the floor. inlineFilter replaces its body, in
// every program that calls it, with instructions for this filter alone: a
// few loads and compares, no loops, nothing the filter does not use.

// filterFunc is the subprogram whose body is replaced.
const filterFunc = "filter_match"

// Offsets in struct pkt, the argument (r1) of filter_match.
var (
	pktLayers    = int16(unsafe.Offsetof(hoptracePkt{}.Layers))
	pktEthertype = int16(unsafe.Offsetof(hoptracePkt{}.Ethertype))
	pktProto     = int16(unsafe.Offsetof(hoptracePkt{}.Proto))
	pktSrc       = int16(unsafe.Offsetof(hoptracePkt{}.Src))
	pktDst       = int16(unsafe.Offsetof(hoptracePkt{}.Dst))
	pktSport     = int16(unsafe.Offsetof(hoptracePkt{}.Sport))
	pktDport     = int16(unsafe.Offsetof(hoptracePkt{}.Dport))
)

// rangeFields are the fields compared as one number in [Lo, Hi]: where
// they are in struct pkt, and their size.
var rangeFields = map[filter.Field]struct {
	off  int16
	size asm.Size
}{
	filter.FieldSrcPort:   {pktSport, asm.Half},
	filter.FieldDstPort:   {pktDport, asm.Half},
	filter.FieldProto:     {pktProto, asm.Byte},
	filter.FieldEtherType: {pktEthertype, asm.Half},
}

// filterInstructions compiles f to the body of filter_match(const struct
// pkt *p): r0 = 1 when any clause holds, else 0. Predicates are evaluated
// as filter.Pred.match does, in order, a clause left at its first false
// one. Jumps have raw offsets (no symbols), so the body can be spliced into
// any program.
func filterInstructions(f *filter.Program) asm.Instructions {
	var c code
	nomatch, matched := c.newLabel(), c.newLabel()
	for ci, clause := range f.Clauses {
		next := nomatch // the clause fails: try the next one
		if ci < len(f.Clauses)-1 {
			next = c.newLabel()
		}
		for i := range clause {
			p := &clause[i]
			// yes, no: the comparison's own outcome; Not swaps what they
			// mean for the clause.
			yes, no := c.newLabel(), c.newLabel()
			if p.Layers != 0 {
				c.emit(asm.LoadMem(asm.R2, asm.R1, pktLayers, asm.Half))
				c.emit(asm.And.Imm(asm.R2, int32(p.Layers)))
				c.jump(asm.JEq.Imm(asm.R2, 0, ""), no)
			}
			switch f, ok := rangeFields[p.Field]; {
			case ok:
				c.emit(asm.LoadMem(asm.R2, asm.R1, f.off, f.size))
				c.inRange(p.Lo, p.Hi, no)
			case p.Field == filter.FieldAnyPort:
				dport := c.newLabel()
				c.emit(asm.LoadMem(asm.R2, asm.R1, pktSport, asm.Half))
				c.inRange(p.Lo, p.Hi, dport)
				c.jump(asm.Ja.Label(""), yes)
				c.place(dport)
				c.emit(asm.LoadMem(asm.R2, asm.R1, pktDport, asm.Half))
				c.inRange(p.Lo, p.Hi, no)
			case p.Field == filter.FieldSrcAddr:
				c.addrIs(p, pktSrc, no)
			case p.Field == filter.FieldDstAddr:
				c.addrIs(p, pktDst, no)
			case p.Field == filter.FieldAnyAddr:
				dst := c.newLabel()
				c.addrIs(p, pktSrc, dst)
				c.jump(asm.Ja.Label(""), yes)
				c.place(dst)
				c.addrIs(p, pktDst, no)
			default:
				c.jump(asm.Ja.Label(""), no) // unknown to the hook: never holds
			}
			c.place(yes)
			if p.Not {
				c.jump(asm.Ja.Label(""), next) // holds: "not" fails the clause
				c.place(no)                    // fails: "not" holds
			} else {
				held := c.newLabel()
				c.jump(asm.Ja.Label(""), held)
				c.place(no)
				c.jump(asm.Ja.Label(""), next)
				c.place(held)
			}
		}
		c.jump(asm.Ja.Label(""), matched) // every predicate held
		if next != nomatch {
			c.place(next)
		}
	}
	c.place(nomatch)
	c.emit(asm.Mov.Imm(asm.R0, 0))
	c.emit(asm.Return())
	c.place(matched)
	c.emit(asm.Mov.Imm(asm.R0, 1))
	c.emit(asm.Return())
	return c.resolve()
}

// code is a straight-line instruction list with forward labels.
type code struct {
	insns  asm.Instructions
	target []int // a jump's label, or -1
	at     []int // where each label is placed
}

func (c *code) newLabel() int {
	c.at = append(c.at, -1)
	return len(c.at) - 1
}

func (c *code) place(l int) { c.at[l] = len(c.insns) }

func (c *code) emit(ins asm.Instruction) {
	c.insns = append(c.insns, ins)
	c.target = append(c.target, -1)
}

// jump adds a jump (made with an empty label) to l; resolve sets its
// offset.
func (c *code) jump(ins asm.Instruction, l int) {
	c.insns = append(c.insns, ins)
	c.target = append(c.target, l)
}

// inRange jumps to no unless lo <= r2 <= hi (unsigned), else falls through.
func (c *code) inRange(lo, hi uint16, no int) {
	if lo > 0 {
		c.jump(asm.JLT.Imm(asm.R2, int32(lo), ""), no)
	}
	if hi < 0xffff {
		c.jump(asm.JGT.Imm(asm.R2, int32(hi), ""), no)
	}
}

// addrIs jumps to no unless the 16-byte address at off matches p, else
// falls through. Words compare in memory order, as setFilter writes them.
func (c *code) addrIs(p *filter.Pred, off int16, no int) {
	for w := range 4 {
		mask := binary.NativeEndian.Uint32(p.Mask[4*w:])
		val := binary.NativeEndian.Uint32(p.Addr[4*w:])
		if mask == 0 {
			continue
		}
		c.emit(asm.LoadMem(asm.R2, asm.R1, off+int16(4*w), asm.Word))
		if mask != 0xffffffff {
			c.emit(asm.And.Imm32(asm.R2, int32(mask)))
		}
		c.jump(asm.JNE.Imm32(asm.R2, int32(val), ""), no)
	}
}

// resolve sets each jump's offset to its label. Every instruction here is
// one slot wide.
func (c *code) resolve() asm.Instructions {
	out := make(asm.Instructions, len(c.insns))
	for i, ins := range c.insns {
		if l := c.target[i]; l >= 0 {
			ins.Offset = int16(c.at[l] - (i + 1))
		}
		out[i] = ins
	}
	return out
}

// inlineFilter puts f's code in place of filter_match's body in every
// program of spec that has the subprogram.
func inlineFilter(spec *ebpf.CollectionSpec, f *filter.Program) error {
	if f == nil {
		return nil
	}
	body := filterInstructions(f)
	for _, p := range spec.Programs {
		start := -1
		for i, ins := range p.Instructions {
			if ins.Symbol() == filterFunc {
				start = i
				break
			}
		}
		if start < 0 {
			continue
		}
		end := start + 1
		for end < len(p.Instructions) && p.Instructions[end].Symbol() == "" {
			end++
		}
		code := append(asm.Instructions(nil), body...)
		// The first instruction keeps the subprogram's metadata: its
		// symbol (what callers reference), its BTF function and line.
		code[0] = code[0].WithMetadata(p.Instructions[start].Metadata)
		insns := append(asm.Instructions(nil), p.Instructions[:start]...)
		insns = append(insns, code...)
		insns = append(insns, p.Instructions[end:]...)
		p.Instructions = insns
	}
	return nil
}
