package tracer

import "github.com/cilium/ebpf"

// ownsProgram reports whether a kernel program ID is one of this tracer's
// programs (tests tell ours from another hoptrace's on the same host).
func (t *Tracer) ownsProgram(id ebpf.ProgramID) bool {
	colls := []*ebpf.Collection{t.coll}
	for _, c := range t.hopColls {
		colls = append(colls, c)
	}
	for _, c := range colls {
		for _, p := range c.Programs {
			if info, err := p.Info(); err == nil {
				if pid, ok := info.ID(); ok && pid == id {
					return true
				}
			}
		}
	}
	return false
}
