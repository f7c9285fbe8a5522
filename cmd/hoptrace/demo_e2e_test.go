package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// TestDemo runs vmtests/demo.sh (make demo) briefly: it ends cleanly, its
// traffic loop ends before its containers are removed (it used to outlive
// them: "cannot exec in a stopped state"), and it leaves nothing behind.
func TestDemo(t *testing.T) {
	testenv.RequireDocker(t)
	cmd := exec.Command("sh", "../../vmtests/demo.sh", hoptraceBinary(t), "--no-color")
	cmd.Env = append(os.Environ(), "DEMO_DURATION=3s")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out)
	}
	for _, bad := range []string{"cannot exec", "Error", "hoptrace: error"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("demo output has %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(string(out), "ht-demo-client:eth0") {
		t.Errorf("demo shows no journey of its client:\n%.2000s", out)
	}
	if ps, _ := exec.Command("docker", "ps", "-a", "--filter", "name=ht-demo-", "--format", "{{.Names}}").Output(); len(strings.TrimSpace(string(ps))) > 0 {
		t.Errorf("containers left behind: %s", ps)
	}
	if procs, _ := exec.Command("pgrep", "-af", "docker exec ht-demo-").Output(); len(procs) > 0 {
		t.Errorf("traffic loop still running after the demo: %s", procs)
	}
}
