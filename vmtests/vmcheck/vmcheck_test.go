package vmcheck

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// inVM is the kernel release when running inside a vmtests VM.
var inVM = os.Getenv("HOPTRACE_VM")

func TestCanary(t *testing.T) {
	if v := os.Getenv("HOPTRACE_VMTEST_BREAK"); v != "" {
		t.Fatalf("HOPTRACE_VMTEST_BREAK=%s: deliberately broken test", v)
	}
}

func TestKernel(t *testing.T) {
	testenv.RequireRoot(t)
	rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	t.Logf("kernel %s (vm: %q)", strings.TrimSpace(string(rel)), inVM)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		testenv.SkipOrFail(t, "no kernel BTF at /sys/kernel/btf/vmlinux: hoptrace needs CONFIG_DEBUG_INFO_BTF")
	}
	if inVM == "" {
		return
	}
	// In the VM, every module cmd/vmtest loads must be live.
	for _, m := range []string{"veth", "bridge", "sch_ingress", "cls_bpf", "br_netfilter", "nf_tables", "nft_compat", "ip_tables"} {
		if _, err := os.Stat("/sys/module/" + m); err != nil {
			t.Errorf("module %s not loaded in the VM", m)
		}
	}
}

func TestTools(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range [][]string{
		{"iptables", "-w", "-L", "FORWARD", "-n"},
		{"nft", "list", "tables"},
		{"tc", "qdisc", "show", "dev", "lo"},
		{"ip", "-d", "link", "show", "lo"},
	} {
		testenv.RequireCommand(t, c[0])
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
}

// TestIptablesDropsBridgedTraffic: with br_netfilter, a FORWARD DROP rule
// stops traffic between two namespaces on one bridge, as Docker's rules do.
func TestIptablesDropsBridgedTraffic(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	ipt := testenv.RequireCommand(t, "iptables")
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		testenv.SkipOrFail(t, "br_netfilter not loaded: bridged traffic bypasses iptables")
	}
	a, b := topo.Hosts[0], topo.Hosts[1]
	if got := a.Ping(t, b.IP, 1, 0x5151); got != 1 {
		t.Fatalf("before the rule: ping %s -> %s: %d/1 replies", a.IP, b.IP, got)
	}
	rule := []string{"FORWARD", "-s", a.IP.String(), "-d", b.IP.String(), "-j", "DROP"}
	testenv.Command(t, ipt, append([]string{"-w", "-I"}, rule...)...)
	t.Cleanup(func() { _ = exec.Command(ipt, append([]string{"-w", "-D"}, rule...)...).Run() })
	if got := a.Ping(t, b.IP, 1, 0x5152); got != 0 {
		t.Fatalf("with a DROP rule: ping %s -> %s got %d replies, want 0", a.IP, b.IP, got)
	}
}
