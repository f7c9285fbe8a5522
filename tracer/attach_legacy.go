package tracer

// Legacy attach: a clsact qdisc with named direct-action cls_bpf filters,
// for kernels without TCX. Filters outlive the process, so they carry our
// name (FilterPrefix) and only ours are ever removed.

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/tracer/nsio"
)

func (a *attachment) attachLegacy(nl *netlink.Handle, lnk netlink.Link, p hopProgs) error {
	qdiscs, err := nl.QdiscList(lnk)
	if err != nil {
		return fmt.Errorf("list qdiscs: %w", err)
	}
	have := false
	for _, q := range qdiscs {
		if q.Type() == "clsact" {
			have = true
		}
	}
	if !have {
		err := nl.QdiscAdd(clsact(a.ifindex))
		switch {
		case err == nil:
			a.ownQdisc = true
		case errors.Is(err, unix.EEXIST): // someone else was quicker: not ours
		default:
			return fmt.Errorf("add clsact qdisc: %w", err)
		}
	}
	for _, d := range directions {
		prog := p.inLegacy
		if d.parent == netlink.HANDLE_MIN_EGRESS {
			prog = p.egLegacy
		}
		name := fmt.Sprintf("%s%s-%s", FilterPrefix, selfTag, d.name)
		if a.ownQdisc {
			name += "-q"
		}
		prio, err := freePrio(nl, lnk, d.parent)
		if err != nil {
			return err
		}
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: a.ifindex, Parent: d.parent, Priority: prio,
				Protocol: unix.ETH_P_ALL,
			},
			Fd: prog.FD(), Name: name, DirectAction: true,
		}
		if err := nl.FilterAdd(f); err != nil {
			return fmt.Errorf("add %s filter: %w", d.name, err)
		}
		a.filters = append(a.filters, name)
	}
	return nil
}

func clsact(ifindex int) *netlink.Clsact {
	return &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT,
	}}
}

// freePrio picks the lowest unused filter priority, so our filter runs
// before foreign ones where it can (it passes every packet on).
func freePrio(nl *netlink.Handle, lnk netlink.Link, parent uint32) (uint16, error) {
	fs, err := listFilters(nl, lnk, parent)
	if err != nil {
		return 0, err
	}
	used := map[uint16]bool{}
	for _, f := range fs {
		used[f.Attrs().Priority] = true
	}
	for p := uint16(1); p < 0xffff; p++ {
		if !used[p] {
			return p, nil
		}
	}
	return 0, errors.New("no free filter priority")
}

func listFilters(nl *netlink.Handle, lnk netlink.Link, parent uint32) ([]netlink.Filter, error) {
	fs, err := nsio.RetryDump(func() ([]netlink.Filter, error) { return nl.FilterList(lnk, parent) })
	if err != nil {
		return nil, fmt.Errorf("list filters: %w", err)
	}
	return fs, nil
}

func (a *attachment) detachLegacy() error {
	nl, err := netlink.NewHandleAt(a.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer nl.Close()
	lnk, err := nl.LinkByIndex(a.ifindex)
	if err != nil {
		if gone(err) {
			return nil
		}
		return fmt.Errorf("find interface %d: %w", a.ifindex, err)
	}
	mine := map[string]bool{}
	for _, f := range a.filters {
		mine[f] = true
	}
	_, err = removeFilters(nl, lnk, func(name string) bool { return mine[name] }, a.ownQdisc)
	a.filters = nil
	return err
}

// removeFilters deletes the bpf filters on lnk whose names match, then the
// clsact qdisc when delQdisc is set and no filter is left on it.
func removeFilters(nl *netlink.Handle, lnk netlink.Link, match func(string) bool, delQdisc bool) (int, error) {
	var errs []error
	removed, left := 0, 0
	for _, d := range directions {
		fs, err := listFilters(nl, lnk, d.parent)
		if err != nil {
			if gone(err) {
				return removed, nil
			}
			errs = append(errs, err)
			left++
			continue
		}
		for _, f := range fs {
			bf, ok := f.(*netlink.BpfFilter)
			if !ok || !match(bf.Name) {
				left++
				continue
			}
			if err := nl.FilterDel(f); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("delete filter %s: %w", bf.Name, err))
				left++
				continue
			}
			removed++
		}
	}
	if delQdisc && left == 0 {
		if err := nl.QdiscDel(clsact(lnk.Attrs().Index)); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete clsact qdisc: %w", err))
		}
	}
	return removed, errors.Join(errs...)
}
