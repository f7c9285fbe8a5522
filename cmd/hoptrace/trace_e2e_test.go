package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/tracer/render"
	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// webAndClient starts an HTTP server container and a client container on docker0.
func webAndClient(t *testing.T) (web, client testenv.Container) {
	t.Helper()
	testenv.RequireDocker(t)
	web = testenv.RunContainer(t, testenv.UniqueName("ht-web"), nil, "httpd", "-f", "-p", "8080", "-h", "/www")
	client = testenv.RunContainer(t, testenv.UniqueName("ht-client"), nil, "sleep", "600")
	return web, client
}

// wget fetches url from inside a container, giving up after 3s. (busybox
// wget's own -T crashes in Debian's busybox-static, so busybox timeout it is.)
func wget(client string, url string) error { return wgetWithin(client, url, 3) }

// wgetWithin is wget giving up after secs seconds.
func wgetWithin(client string, url string, secs int) error {
	_, err := testenv.Exec(client, "busybox", "timeout", strconv.Itoa(secs), "wget", "-q", "-O", "/dev/null", url)
	return err
}

// findTCP returns the journeys of TCP packets with exactly these flags
// between the two addresses (src -> dst).
func findTCP(js []render.JourneyJSON, src, dst, flags string) []render.JourneyJSON {
	var out []render.JourneyJSON
	for _, j := range js {
		p := j.Packet
		if p != nil && p.Proto == "TCP" && p.Src == src && p.Dst == dst && p.TCPFlags == flags {
			out = append(out, j)
		}
	}
	return out
}

// TestTraceClientToWeb: wget from client to web; the JSON journeys of the
// handshake name both containers and the veths between them, in order, with
// non-negative deltas; a text trace running alongside shows the same path.
func TestTraceClientToWeb(t *testing.T) {
	web, client := webAndClient(t)
	// Only the two containers' packets: other traffic on docker0 (another
	// test's flood) must not fill the ring this test counts on.
	only := []string{"host", client.IP().String(), "and", "host", web.IP().String()}
	jsonRun := startHoptrace(t, append([]string{"trace", "-o", "json", "-C", client.Name, "-C", web.Name}, only...)...)
	textRun := startHoptrace(t, append([]string{"trace", "--no-color", "-C", web.Name}, only...)...)
	if err := wget(client.Name, "http://"+web.IP().String()+":8080/"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the journeys finish (grace + drain)
	if err := jsonRun.stop(t); err != nil {
		t.Fatalf("trace -o json: %v\n%s", err, jsonRun.stderr)
	}
	if err := textRun.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, textRun.stderr)
	}
	js, sum := jsonRun.jsonOut(t)
	if sum == nil || sum.Lost != 0 {
		t.Fatalf("summary %+v (want one, with nothing lost)", sum)
	}
	cveth, wveth := hostVethOf(t, client.Name), hostVethOf(t, web.Name)
	forward := []string{client.Name + ":eth0", cveth, wveth, web.Name + ":eth0"}
	backward := []string{web.Name + ":eth0", wveth, cveth, client.Name + ":eth0"}
	cip, wip := client.IP().String(), web.IP().String()

	syn := findTCP(js, cip, wip, "S")
	synack := findTCP(js, wip, cip, "S.")
	if len(syn) != 1 || len(synack) != 1 {
		t.Fatalf("want 1 SYN and 1 SYN-ACK journey, got %d and %d in\n%s", len(syn), len(synack), jsonRun.stdout)
	}
	for _, c := range []struct {
		j    render.JourneyJSON
		path []string
	}{{syn[0], forward}, {synack[0], backward}} {
		if got := labels(&c.j); !slices.Equal(got, c.path) {
			t.Errorf("%s: path %v, want %v", c.j.Summary, got, c.path)
		}
		if c.j.Verdict != "delivered" {
			t.Errorf("%s: verdict %q, want delivered", c.j.Summary, c.j.Verdict)
		}
		for i, h := range c.j.Hops {
			if h.DeltaNS < 0 || (i > 0 && h.TimeNS < c.j.Hops[i-1].TimeNS) {
				t.Errorf("%s: hop %d (%s) delta %d: time goes backwards", c.j.Summary, i, h.Label, h.DeltaNS)
			}
		}
		// The step between the veths went through docker0, inferred.
		if b := c.j.Hops[2].Bridged; b == nil || b.Bridge != "docker0" || !b.Inferred {
			t.Errorf("%s: hop 2 bridged %+v, want docker0, inferred", c.j.Summary, b)
		}
		// The veth hops name the container behind them.
		if h := c.j.Hops[1]; h.Container == "" || h.Role != "host-veth" || h.Bridge != "docker0" {
			t.Errorf("%s: hop 1 %+v: want a docker0 host veth with its container", c.j.Summary, h)
		}
	}
	if syn[0].Hops[1].Container != client.Name || syn[0].Hops[2].Container != web.Name {
		t.Errorf("SYN veth hops name %q and %q, want %s and %s", syn[0].Hops[1].Container, syn[0].Hops[2].Container, client.Name, web.Name)
	}

	text := textRun.stdout.String()
	// The text path names the bridge between the two veths (inferred).
	wantPath := strings.Join([]string{client.Name + ":eth0", cveth, "docker0", wveth, web.Name + ":eth0"}, " -> ")
	found := false
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "TCP "+cip) && strings.Contains(line, "[S]") && strings.Contains(line, wantPath) {
			found = true
		}
	}
	if !found {
		t.Errorf("text output has no SYN line with path %q:\n%s", wantPath, text)
	}
	// The summary is on stderr: stdout holds only the journeys.
	if errText := textRun.stderr.String(); !strings.Contains(errText, "journeys ") || !strings.Contains(errText, "events lost 0") {
		t.Errorf("stderr lacks the summary:\n%s", errText)
	}
	if strings.Contains(text, "events lost") {
		t.Errorf("the summary is on stdout:\n%s", text)
	}
}

// TestTraceDockerUserDrop: a DOCKER-USER rule drops client -> web:8080; every
// SYN the rule dropped (its packet counter) is a journey that ends as
// dropped at the client's veth with NETFILTER_DROP, and the summary counts
// them.
func TestTraceDockerUserDrop(t *testing.T) {
	web, client := webAndClient(t)
	testenv.RequireCommand(t, "iptables")
	rule := []string{"DOCKER-USER", "-s", client.IP().String(), "-d", web.IP().String(), "-p", "tcp", "--dport", "8080", "-j", "DROP"}
	testenv.Command(t, "iptables", append([]string{"-w", "-I"}, rule...)...)
	t.Cleanup(func() { _ = exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).Run() })

	run := startHoptrace(t, "trace", "-o", "json", "-C", client.Name)
	// Given up after 2s, the SYNs go at 0s and 1s (the next would be due
	// at 3s): none is on its way when hoptrace stops. With 3s the third
	// raced the kill, and a vCPU the host held up could still be carrying
	// it after hoptrace stopped.
	if err := wgetWithin(client.Name, "http://"+web.IP().String()+":8080/", 2); err == nil {
		t.Fatal("wget got through the DROP rule")
	}
	cip, wip := client.IP().String(), web.IP().String()
	dropped := ruleDrops(t, cip, wip)
	if dropped == 0 {
		t.Fatal("the DROP rule dropped nothing")
	}
	// Stop once every dropped SYN was printed (or give up and let the
	// checks below say what is missing).
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if droppedSYNsPrinted(run.stdout.Bytes(), cip, wip) >= dropped {
			break
		}
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	js, sum := run.jsonOut(t)
	syns := findTCP(js, cip, wip, "S")
	if uint64(len(syns)) != dropped {
		t.Fatalf("%d SYN journeys, the rule dropped %d, in\n%s", len(syns), dropped, run.stdout)
	}
	cveth := hostVethOf(t, client.Name)
	for _, j := range syns {
		if j.Verdict != "dropped" || j.Drop == nil {
			t.Errorf("SYN %d: verdict %q drop %+v path %v, want dropped", j.ID, j.Verdict, j.Drop, labels(&j))
			continue
		}
		if j.Drop.Reason != "NETFILTER_DROP" || j.Drop.Where != cveth {
			t.Errorf("SYN %d: dropped at %q for %q, want at %s for NETFILTER_DROP", j.ID, j.Drop.Where, j.Drop.Reason, cveth)
		}
		if got := labels(&j); !slices.Equal(got, []string{client.Name + ":eth0", cveth}) {
			t.Errorf("SYN %d: path %v, want client:eth0 -> its veth, then the drop", j.ID, got)
		}
	}
	if sum == nil || sum.DropsByReason["NETFILTER_DROP"] < dropped || sum.Verdicts["dropped"] < dropped {
		t.Errorf("summary %+v: want at least %d NETFILTER_DROP drops and dropped journeys", sum, dropped)
	}
}

// ruleDrops is the packet counter of the DOCKER-USER rule that drops src ->
// dst (iptables -L -v -x: pkts bytes target prot opt in out source dest ...).
func ruleDrops(t *testing.T, src, dst string) uint64 {
	t.Helper()
	out := testenv.Command(t, "iptables", "-w", "-L", "DOCKER-USER", "-v", "-x", "-n")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 9 && f[2] == "DROP" && f[7] == src && f[8] == dst {
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				t.Fatalf("counter of %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no DROP rule %s -> %s in\n%s", src, dst, out)
	return 0
}

// droppedSYNsPrinted counts the dropped SYN journeys src -> dst among the
// complete JSON lines of a running trace's output.
func droppedSYNsPrinted(out []byte, src, dst string) uint64 {
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[:i]
	} else {
		return 0
	}
	var js []render.JourneyJSON
	for _, line := range splitLines(out) {
		var j render.JourneyJSON
		if json.Unmarshal(line, &j) == nil && j.Type == "journey" {
			js = append(js, j)
		}
	}
	var n uint64
	for _, j := range findTCP(js, src, dst, "S") {
		if j.Verdict == "dropped" {
			n++
		}
	}
	return n
}

// TestTraceFollowsNewContainers: a container started after trace began is
// traced without restarting hoptrace.
func TestTraceFollowsNewContainers(t *testing.T) {
	testenv.RequireDocker(t)
	web := testenv.RunContainer(t, testenv.UniqueName("ht-web"), nil, "httpd", "-f", "-p", "8080", "-h", "/www")
	run := startHoptrace(t, "trace", "-o", "json")
	late := testenv.RunContainer(t, testenv.UniqueName("ht-late"), nil, "sleep", "600")
	var js []render.JourneyJSON
	// The new veth is attached within a moment; keep trying briefly.
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 0; ; attempt++ {
		if err := wget(late.Name, "http://"+web.IP().String()+":8080/"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
		js, _ = run.jsonOut(t)
		if len(findTCP(js, late.IP().String(), web.IP().String(), "S")) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	js, _ = run.jsonOut(t)
	syns := findTCP(js, late.IP().String(), web.IP().String(), "S")
	if len(syns) == 0 {
		t.Fatalf("no journey from the late container %s:\n%s", late.Name, run.stdout)
	}
	if got := labels(&syns[len(syns)-1]); len(got) == 0 || got[0] != late.Name+":eth0" || got[len(got)-1] != web.Name+":eth0" {
		t.Errorf("late container's SYN path %v, want %s:eth0 ... %s:eth0", got, late.Name, web.Name)
	}
}

// TestTraceSurvivesDockerRestart: a running trace keeps working when the
// Docker daemon restarts (it takes the containers with it), and containers
// started right after it are named in the very first journeys printed: a
// hop from a namespace Docker has not told about yet makes the resolver ask
// Docker again, and the journey waits for the answer.
func TestTraceSurvivesDockerRestart(t *testing.T) {
	testenv.RequireDocker(t)
	if os.Getenv("HOPTRACE_SKIP_DOCKERD_RESTART") != "" {
		testenv.SkipOrFail(t, "HOPTRACE_SKIP_DOCKERD_RESTART is set")
	}
	// Docker's events are ignored: names of the containers started below
	// come from listing, after the reconnect or on a name miss.
	// Only docker0's traffic: a busy host's other traffic must not starve
	// the refresh this test is about.
	run := startHoptraceEnv(t, []string{"HOPTRACE_TEST_IGNORE_DOCKER_EVENTS=1"}, "trace", "-o", "json", "net", docker0Subnet(t))
	restartDockerd(t)
	web, client := webAndClient(t)
	fetchUntilTraced(t, run, client, web)
	if err := run.stop(t); err != nil {
		t.Fatalf("trace across a dockerd restart: %v\n%s", err, run.stderr)
	}
	assertNamedFromFirst(t, run, client, web)
}

// TestTraceNamesOnMiss: with Docker's events ignored, containers started
// after the trace began can only be named by the refresh that a hop from
// an unknown namespace asks for; their first journeys wait for it.
func TestTraceNamesOnMiss(t *testing.T) {
	testenv.RequireDocker(t)
	run := startHoptraceEnv(t, []string{"HOPTRACE_TEST_IGNORE_DOCKER_EVENTS=1"}, "trace", "-o", "json", "net", docker0Subnet(t))
	web, client := webAndClient(t)
	fetchUntilTraced(t, run, client, web)
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	sum := assertNamedFromFirst(t, run, client, web)
	if sum != nil && sum.NamesWaited == 0 {
		t.Errorf("summary %+v: no journey waited for names, yet Docker's events were ignored", sum)
	}
}

// fetchUntilTraced fetches web's page from client until the trace shows a
// SYN between them (the hooks on new containers' veths are attached a
// moment after they appear), for at most 10s.
func fetchUntilTraced(t *testing.T, run *proc, client, web testenv.Container) {
	t.Helper()
	cip, wip := client.IP().String(), web.IP().String()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := wget(client.Name, "http://"+wip+":8080/"); err != nil {
			t.Fatal(err)
		}
		js, _ := run.jsonOut(t)
		if len(findTCP(js, cip, wip, "S")) > 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// docker0Subnet is the subnet of Docker's default bridge network.
func docker0Subnet(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(testenv.Command(t, "docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "bridge"))
}

// assertNamedFromFirst checks that every journey of the two containers
// names them, the first SYN included, and that none went out unnamed.
func assertNamedFromFirst(t *testing.T, run *proc, client, web testenv.Container) *render.SummaryJSON {
	t.Helper()
	cip, wip := client.IP().String(), web.IP().String()
	js, sum := run.jsonOut(t)
	syns := findTCP(js, cip, wip, "S")
	if len(syns) == 0 {
		t.Fatalf("no journey after the restart:\n%s\nstderr:\n%s", run.stdout, run.stderr)
	}
	j := syns[0]
	if got := labels(&j); len(got) != 4 || got[0] != client.Name+":eth0" || got[3] != web.Name+":eth0" || j.Hops[1].Container != client.Name {
		t.Errorf("first SYN: path %v (hop 1 container %q), want named %s ... %s", got, j.Hops[1].Container, client.Name, web.Name)
	}
	// Every journey of the two containers names them, from the first on.
	named := map[string]string{cip: client.Name, wip: web.Name}
	for _, j := range js {
		if j.Packet == nil || (named[j.Packet.Src] == "" && named[j.Packet.Dst] == "") {
			continue
		}
		for _, h := range j.Hops {
			if (h.Role == "host-veth" && h.Container == "") || h.Role == "netns" || h.Role == "unknown" {
				t.Errorf("journey %d (%s): hop %s (%s) is not named after its container", j.ID, j.Summary, h.Label, h.Role)
			}
		}
	}
	if sum != nil {
		t.Logf("%d journeys waited for names, %d printed without", sum.NamesWaited, sum.NamesGaveUp)
	}
	if sum == nil || sum.NamesGaveUp != 0 {
		t.Errorf("summary %+v: want one, with no journey printed before its names came", sum)
	}
	return sum
}

// TestTraceContainerChurnKeepsNoNamespaces: ten containers started and
// removed while a trace runs; once they are gone hoptrace holds no more
// network namespace file descriptors than before them.
func TestTraceContainerChurnKeepsNoNamespaces(t *testing.T) {
	testenv.RequireDocker(t)
	run := startHoptrace(t, "trace", "-o", "json")
	pid := run.cmd.Process.Pid
	before := netnsFDs(t, pid)
	var names []string
	for i := 0; i < 10; i++ {
		c := testenv.RunContainer(t, testenv.UniqueName("ht-churn"), nil, "sleep", "600")
		names = append(names, c.Name)
	}
	// Wait until hoptrace hooked the last one's eth0 inside its namespace,
	// so the churn really went through its attach path.
	deadline := time.Now().Add(10 * time.Second)
	for netnsFDs(t, pid) <= before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	during := netnsFDs(t, pid)
	testenv.Command(t, "docker", append([]string{"rm", "-f"}, names...)...)
	deadline = time.Now().Add(15 * time.Second)
	after := netnsFDs(t, pid)
	for after > before && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		after = netnsFDs(t, pid)
	}
	t.Logf("netns fds: %d before, %d with 10 more containers, %d after they went", before, during, after)
	if after > before {
		out, _ := exec.Command("ls", "-l", fmt.Sprintf("/proc/%d/fd", pid)).CombinedOutput()
		t.Errorf("hoptrace holds %d namespace fds after the containers went, %d before:\n%s", after, before, out)
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
}

// netnsFDs counts the namespaces a process holds open: fds on nsfs, be
// they opened as /proc/PID/ns/net or through a bind mount such as Docker's
// /var/run/docker/netns/ID (whose link text is that path, not "net:[...]").
func netnsFDs(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	n := 0
	for _, e := range ents {
		var st unix.Statfs_t
		if unix.Statfs(dir+"/"+e.Name(), &st) == nil && st.Type == unix.NSFS_MAGIC {
			n++
		}
	}
	return n
}

// TestTraceUserNetworkBridge: on a user-defined network the text path
// names its bridge (br-<id>) with the network between the two containers.
func TestTraceUserNetworkBridge(t *testing.T) {
	testenv.RequireDocker(t)
	net := testenv.UniqueName("ht-net")
	testenv.CreateNetwork(t, net)
	web := testenv.RunContainer(t, testenv.UniqueName("ht-web"), []string{"--network", net}, "httpd", "-f", "-p", "8080", "-h", "/www")
	client := testenv.RunContainer(t, testenv.UniqueName("ht-client"), []string{"--network", net}, "sleep", "600")
	id := strings.TrimSpace(testenv.Command(t, "docker", "network", "inspect", "-f", "{{.Id}}", net))
	bridge := "br-" + id[:12]
	run := startHoptrace(t, "trace", "--no-color", "-C", web.Name)
	if err := wget(client.Name, "http://"+web.IP().String()+":8080/"); err != nil {
		t.Fatal(err)
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("trace: %v\n%s", err, run.stderr)
	}
	want := client.Name + ":eth0 -> " + hostVethOf(t, client.Name) + " -> " + bridge + "(" + net + ") -> " + hostVethOf(t, web.Name) + " -> " + web.Name + ":eth0"
	if !strings.Contains(run.stdout.String(), want) {
		t.Errorf("no journey with path %q in:\n%s", want, run.stdout)
	}
}
