package main

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// kernel is one Debian kernel package, fetched and unpacked in the cache.
type kernel struct {
	Short   string // what the user asked for: "6.1", "6.12" or a package name
	Package string // linux-image-6.1.0-56-cloud-amd64
	Release string // uname -r: 6.1.0-56-cloud-amd64
	Root    string // dpkg -x directory
	Vmlinuz string
}

// Modules the VM loads, by name; their dependencies come along. What each is for:
//   - veth, bridge (+stp, llc): the netns topology, like Docker's bridge network
//   - sch_ingress (clsact), cls_bpf: the legacy TC attach path (TCX is built in)
//   - br_netfilter: bridged frames traverse iptables, as on a Docker host
//   - nf_tables, nft_compat, x_tables, ip_tables, iptable_filter, xt_*, nft_*:
//     what iptables-nft and nft need to drop packets in the drop tests
//   - vxlan: the tunnels of TestVXLANUnderlay, like an overlay network's
//   - xfrm_user: vishvananda/netlink's netlink.NewHandleAt opens a
//     NETLINK_XFRM socket too, and fails with EPROTONOSUPPORT without it
var wantModules = []string{
	"veth", "bridge", "stp", "llc",
	"sch_ingress", "cls_bpf",
	"br_netfilter",
	"nfnetlink", "nf_tables", "nft_compat", "x_tables", "ip_tables", "iptable_filter",
	"xt_tcpudp", "xt_conntrack", "xt_comment", "xt_physdev", "xt_addrtype", "xt_multiport",
	"nf_conntrack", "nft_ct", "nf_reject_ipv4", "nft_reject", "nft_reject_inet", "nft_reject_ipv4", "ipt_REJECT",
	"nf_nat", "nft_chain_nat", "iptable_nat", "xt_MASQUERADE", "nft_masq",
	"xfrm_user", "vxlan",
}

// kernelAliases maps the short names the Makefile uses to Debian's meta
// packages, whose single dependency is the newest image of that series.
var kernelAliases = map[string][]string{
	"6.1":  {"linux-image-6.1-cloud-amd64", "linux-image-cloud-amd64"},
	"6.12": {"linux-image-6.12-cloud-amd64"},
}

var imageRE = regexp.MustCompile(`^linux-image-[0-9][^ ]*-cloud-amd64$`)

// resolvePackage turns "6.1" into the concrete image package apt would install
// now, e.g. linux-image-6.1.0-56-cloud-amd64. A full package name is kept.
func resolvePackage(ctx context.Context, short string) (string, error) {
	if strings.HasPrefix(short, "linux-image-") {
		return short, nil
	}
	for _, meta := range kernelAliases[short] {
		out, err := exec.CommandContext(ctx, "apt-cache", "depends", meta).Output()
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			dep, ok := strings.CutPrefix(strings.TrimSpace(l), "Depends: ")
			if ok && imageRE.MatchString(dep) && seriesOf(dep) == short {
				return dep, nil
			}
		}
	}
	// No meta package: take the newest image of the series apt knows.
	out, err := exec.CommandContext(ctx, "apt-cache", "search", "--names-only", "^linux-image-"+regexp.QuoteMeta(short)+"[.-].*-cloud-amd64$").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache search kernel %s: %w", short, err)
	}
	var cands []string
	for _, l := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(l, " ")
		if imageRE.MatchString(name) && seriesOf(name) == short {
			cands = append(cands, name)
		}
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("no Debian linux-image-%s*-cloud-amd64 package known to apt (run apt-get update, or pass a package name to -kernel)", short)
	}
	sort.Slice(cands, func(i, j int) bool { return versionLess(cands[i], cands[j]) })
	return cands[len(cands)-1], nil
}

// seriesOf returns "6.1" for linux-image-6.1.0-56-cloud-amd64.
func seriesOf(pkg string) string {
	v := strings.TrimPrefix(pkg, "linux-image-")
	f := strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == '-' || r == '+' })
	if len(f) < 2 {
		return ""
	}
	return f[0] + "." + f[1]
}

// versionLess compares the numbers in two package names in order.
func versionLess(a, b string) bool {
	na, nb := numbers(a), numbers(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	return len(na) < len(nb)
}

var numRE = regexp.MustCompile(`[0-9]+`)

func numbers(s string) []int {
	var out []int
	for _, m := range numRE.FindAllString(s, -1) {
		n, _ := strconv.Atoi(m)
		out = append(out, n)
	}
	return out
}

// fetchKernel downloads (once) and unpacks (once) the image package into cache.
func fetchKernel(ctx context.Context, short, cache string, logf func(string, ...any)) (*kernel, error) {
	pkg, err := resolvePackage(ctx, short)
	if err != nil {
		return nil, err
	}
	k := &kernel{Short: short, Package: pkg, Root: filepath.Join(cache, pkg)}
	if _, err := os.Stat(filepath.Join(k.Root, ".unpacked")); err != nil {
		debs, _ := filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
		if len(debs) == 0 {
			logf("downloading %s (apt-get download)", pkg)
			if err := aptDownload(ctx, pkg, cache); err != nil {
				return nil, err
			}
			debs, _ = filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
			if len(debs) == 0 {
				return nil, fmt.Errorf("apt-get download %s left no .deb in %s", pkg, cache)
			}
		}
		_ = os.RemoveAll(k.Root)
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], k.Root).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("unpack %s: %w: %s", debs[0], err, bytes.TrimSpace(out))
		}
		if err := os.WriteFile(filepath.Join(k.Root, ".unpacked"), nil, 0o644); err != nil {
			return nil, err
		}
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(k.Root, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return nil, fmt.Errorf("package %s: want one boot/vmlinuz-*, found %d", pkg, len(vmlinuz))
	}
	k.Vmlinuz = vmlinuz[0]
	k.Release = strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	return k, nil
}

func aptDownload(ctx context.Context, pkg, dir string) error {
	try := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	out, err := try()
	if err != nil {
		// A fresh machine may have stale or no package lists.
		if uout, uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return fmt.Errorf("apt-get update: %w: %s", uerr, bytes.TrimSpace(uout))
		}
		out, err = try()
	}
	if err != nil {
		return fmt.Errorf("apt-get download %s: %w: %s", pkg, err, bytes.TrimSpace(out))
	}
	return nil
}

// module is one kernel module file in the unpacked package.
type module struct {
	Name string
	Path string // on the host, possibly compressed
}

func modName(file string) string {
	base := filepath.Base(file)
	base = base[:strings.Index(base, ".ko")]
	return strings.ReplaceAll(base, "-", "_")
}

// modules returns the modules to load, dependencies first, and the wanted
// modules that are neither a module nor built in.
func (k *kernel) modules(want []string) (load []module, missing []string, err error) {
	dir := filepath.Join(k.Root, "lib", "modules", k.Release)
	all := map[string]string{}
	err = filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			all[modName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list modules of %s: %w", k.Release, err)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				builtin[modName(l)] = true
			}
		}
	}
	seen := map[string]bool{}
	var visit func(name string) error
	visit = func(name string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		p, ok := all[name]
		if !ok {
			if !builtin[name] {
				missing = append(missing, name)
			}
			return nil
		}
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		load = append(load, module{Name: name, Path: p})
		return nil
	}
	for _, w := range want {
		if err := visit(strings.ReplaceAll(w, "-", "_")); err != nil {
			return nil, nil, err
		}
	}
	return load, missing, nil
}

// moduleBytes returns the module's ELF bytes, decompressing .xz/.zst with the
// host's xz or zstd, or busybox (which testbed.sh installs).
func moduleBytes(p string) ([]byte, error) {
	var cmd *exec.Cmd
	switch {
	case strings.HasSuffix(p, ".ko"):
		return os.ReadFile(p)
	case strings.HasSuffix(p, ".xz"):
		if x, err := exec.LookPath("xz"); err == nil {
			cmd = exec.Command(x, "-dc", p)
		} else {
			cmd = exec.Command("busybox", "unxz", "-c", p)
		}
	case strings.HasSuffix(p, ".zst"):
		cmd = exec.Command("zstd", "-dcq", p)
	case strings.HasSuffix(p, ".gz"):
		cmd = exec.Command("busybox", "gunzip", "-c", p)
	default:
		return nil, fmt.Errorf("module %s: unknown compression", p)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w: %s", p, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// moduleDepends reads "depends=" from the module's .modinfo section (what
// depmod would write to modules.dep, which the package does not ship).
func moduleDepends(p string) ([]string, error) {
	b, err := moduleBytes(p)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", p, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", p)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", p, err)
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, strings.ReplaceAll(d, "-", "_"))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// decompressedModule writes the module's plain ELF into dir (busybox insmod
// loads it as is; the kernel need not support compressed modules).
func decompressedModule(m module, dir string) (string, error) {
	out := filepath.Join(dir, m.Name+".ko")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	b, err := moduleBytes(m.Path)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}
