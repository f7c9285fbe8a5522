package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/vmtests/testenv"
)

// freeLoopbackAddr is a TCP address on 127.0.0.1 nothing listens on now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startPrometheus runs Debian's prometheus on loopback, with its own config
// and data directory, scraping target every second; it returns the address
// of its API and stops it when the test ends.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin := testenv.RequireCommand(t, "prometheus")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: hoptrace
    scrape_interval: 1s
    static_configs:
      - targets: ['%s']
`, target)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	var logs lockedBuffer
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case <-done:
			t.Fatalf("prometheus exited:\n%s", logs.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s:\n%s", logs.String())
		}
	}
}

// promSample is one series of an instant query's result.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// promQuery runs an instant query.
func promQuery(t *testing.T, addr, q string) []promSample {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	if r.Status != "success" {
		t.Fatalf("query %s: %s", q, r.Error)
	}
	return r.Data.Result
}

// waitQuery polls q until ok accepts its result, for up to 20s, doing
// meanwhile (traffic) before each look.
func waitQuery(t *testing.T, addr, q string, meanwhile func(), ok func([]promSample) bool) []promSample {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if meanwhile != nil {
			meanwhile()
		}
		res := promQuery(t, addr, q)
		if ok(res) {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %s: %v after 20s", q, res)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func nonEmpty(r []promSample) bool { return len(r) > 0 }

func scrapeText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestServePrometheus: a real Prometheus scrapes hoptrace serve. After HTTP
// traffic client -> web it finds the path histogram naming both; a
// DOCKER-USER drop raises the drop counter with NETFILTER_DROP; promtool
// accepts the scrape; a container started after serve appears, and its
// series go once it is removed.
func TestServePrometheus(t *testing.T) {
	web, client := webAndClient(t)
	testenv.RequireCommand(t, "iptables")
	promtool := testenv.RequireCommand(t, "promtool")
	addr := freeLoopbackAddr(t)
	run := startHoptrace(t, "serve", "--listen", addr)
	prom := startPrometheus(t, addr)
	webURL := "http://" + web.IP().String() + ":8080/"

	// The path histogram, named by both containers.
	q := fmt.Sprintf(`hoptrace_path_latency_seconds_count{src=%q,dst=%q}`, client.Name, web.Name)
	res := waitQuery(t, prom, q, func() { _ = wget(client.Name, webURL) }, nonEmpty)
	if res[0].Metric["network"] != "bridge" {
		t.Errorf("path series %v: want network bridge", res[0].Metric)
	}
	p99 := fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(hoptrace_path_latency_seconds_bucket{src=%q,dst=%q}[1m])))`, client.Name, web.Name)
	waitQuery(t, prom, p99, func() { _ = wget(client.Name, webURL) }, nonEmpty)
	hop := fmt.Sprintf(`hoptrace_hop_latency_seconds_count{from=%q,to=%q}`, client.Name+":veth:ingress", web.Name+":veth:egress")
	waitQuery(t, prom, hop, nil, nonEmpty)

	// promtool accepts the exposition.
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrapeText(t, addr))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	// A DOCKER-USER drop.
	rule := []string{"DOCKER-USER", "-s", client.IP().String(), "-d", web.IP().String(), "-p", "tcp", "--dport", "8080", "-j", "DROP"}
	testenv.Command(t, "iptables", append([]string{"-w", "-I"}, rule...)...)
	t.Cleanup(func() { _ = exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).Run() })
	drops := fmt.Sprintf(`hoptrace_drops_total{reason="NETFILTER_DROP",container=%q}`, client.Name)
	waitQuery(t, prom, drops, func() {
		if wget(client.Name, webURL) == nil {
			t.Fatal("wget got through the DROP rule")
		}
	}, nonEmpty)
	testenv.Command(t, "iptables", append([]string{"-w", "-D"}, rule...)...)

	// A container started after serve appears, and goes.
	late := testenv.RunContainer(t, testenv.UniqueName("ht-late"), nil, "sleep", "600")
	lateQ := fmt.Sprintf(`hoptrace_packets_total{src=%q,dst=%q}`, late.Name, web.Name)
	waitQuery(t, prom, lateQ, func() { _ = wget(late.Name, webURL) }, nonEmpty)
	testenv.Command(t, "docker", "rm", "-f", late.Name)
	waitQuery(t, prom, fmt.Sprintf(`{__name__=~"hoptrace_.*",src=%q}`, late.Name), nil, func(r []promSample) bool { return len(r) == 0 })
	if text := scrapeText(t, addr); strings.Contains(text, late.Name) {
		t.Errorf("series of the removed container %s still served:\n%s", late.Name, text)
	}

	if err := run.stop(t); err != nil {
		t.Errorf("serve: %v\n%s", err, run.stderr)
	}
}

// TestServeFlags: serve's help names its default address; flags of trace
// that mean nothing here, and bad filters, are usage errors before anything
// is loaded.
func TestServeFlags(t *testing.T) {
	help, _, err := runCmd(t, "serve", "--help")
	if !errors.Is(err, errHelp) || !strings.Contains(help, "127.0.0.1:9464") || !strings.Contains(help, "--listen") ||
		!strings.Contains(help, "--timed-rate") {
		t.Errorf("serve --help: %v\n%s", err, help)
	}
	if strings.Contains(help, "--journey-timeout") || strings.Contains(help, "--count") {
		t.Errorf("serve --help lists flags it ignores:\n%s", help)
	}
	for _, args := range [][]string{{"-c", "5"}, {"--journey-timeout", "1s"}, {"--ring-bytes", "4096"}, {"port", "nope"}, {"--timed-rate", "-1"}} {
		if _, _, err := runCmd(t, append([]string{"serve"}, args...)...); !errors.As(err, new(usageError)) {
			t.Errorf("serve %v: %v, want a usage error", args, err)
		}
	}
}

// TestMetricsNetns: without Docker, on a plain bridge with two namespaces
// (so it runs in the VMs too), serve and trace --metrics-addr both name a
// ping's path by the namespaces' interfaces and count its hops.
func TestMetricsNetns(t *testing.T) {
	topo := testenv.NewTopology(t, 2)
	a, b := topo.Hosts[0], topo.Hosts[1]
	for _, tc := range []struct{ name, flag string }{{"serve", "--listen"}, {"trace", "--metrics-addr"}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeLoopbackAddr(t)
			args := []string{tc.name, "--no-docker", tc.flag, addr, "icmp"}
			if tc.name == "trace" {
				args = append(args, "-o", "json")
			}
			run := startHoptrace(t, args...)
			path := fmt.Sprintf(`hoptrace_path_latency_seconds_count{dst=%q,network=%q,src=%q}`, b.Name+":eth0", topo.Bridge, a.Name+":eth0")
			hop := fmt.Sprintf(`hoptrace_hop_latency_seconds_count{from=%q,to=%q}`, a.HostVeth+":ingress", b.HostVeth+":egress")
			var text string
			deadline := time.Now().Add(10 * time.Second)
			for {
				if got := a.Ping(t, b.IP, 2, 0x5301); got != 2 {
					t.Fatalf("ping: %d/2 replies", got)
				}
				text = scrapeText(t, addr)
				if strings.Contains(text, path) && strings.Contains(text, hop) || time.Now().After(deadline) {
					break
				}
				time.Sleep(300 * time.Millisecond)
			}
			for _, want := range []string{path, hop, "hoptrace_build_info{"} {
				if !strings.Contains(text, want) {
					t.Errorf("%s: no %s in\n%s", tc.name, want, text)
				}
			}
			if err := run.stop(t); err != nil {
				t.Errorf("%s: %v\n%s", tc.name, err, run.stderr)
			}
		})
	}
}
