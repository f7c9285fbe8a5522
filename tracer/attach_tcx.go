package tracer

// TCX: the hook programs as bpf_mprog links (kernel 6.6 and later).

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

func (a *attachment) attachTCX(p hopProgs) error {
	for _, d := range directions {
		prog := p.inTCX
		if d.tcx == ebpf.AttachTCXEgress {
			prog = p.egTCX
		}
		if prog == nil {
			return link.ErrNotSupported
		}
		var l link.Link
		// TCX resolves the ifindex in the caller's netns.
		err := inNetns(a.ns, func() error {
			var err error
			// At the head, so a foreign program that drops cannot hide a
			// packet from us; we return TCX_NEXT, so it still sees all.
			l, err = link.AttachTCX(link.TCXOptions{
				Interface: a.ifindex, Program: prog, Attach: d.tcx, Anchor: link.Head(),
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("tcx %s: %w", d.name, err)
		}
		a.links = append(a.links, l)
	}
	return nil
}
