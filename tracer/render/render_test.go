package render_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/render"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// offset puts the shapes' monotonic Base at 2026-11-27 12:00:00 UTC.
var offset = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano() - int64(jt.Base)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./tracer/render -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func shapes(t *testing.T) ([]*journey.Journey, render.Summary) {
	t.Helper()
	js, st := jt.Run(journey.Config{HostNetnsIno: jt.HostNS}, jt.Shapes())
	return js, render.Summary{Stats: st, Loss: event.Loss{Hops: 3, Drops: 1, Evicted: 2}, Duration: 2 * time.Second}
}

func print(t *testing.T, p render.Printer, js []*journey.Journey, s render.Summary) {
	t.Helper()
	for _, j := range js {
		if err := p.Journey(j); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Summary(s); err != nil {
		t.Fatal(err)
	}
}

func TestTextGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  render.Options
	}{
		{"text.golden", render.Options{}},
		{"text_verbose.golden", render.Options{Verbose: true}},
		{"text_color.golden", render.Options{Color: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js, s := shapes(t)
			tc.opt.WallOffsetNS, tc.opt.Location = offset, time.UTC
			var b bytes.Buffer
			print(t, render.NewText(&b, tc.opt), js, s)
			golden(t, tc.name, b.Bytes())
		})
	}
}

func TestJSONGolden(t *testing.T) {
	js, s := shapes(t)
	var b bytes.Buffer
	print(t, render.NewJSON(&b, render.Options{WallOffsetNS: offset, Location: time.UTC}), js, s)
	golden(t, "journeys.jsonl.golden", b.Bytes())

	// Every line is one object with a type.
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != len(js)+1 {
		t.Fatalf("%d lines for %d journeys + summary", len(lines), len(js))
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		want := "journey"
		if i == len(lines)-1 {
			want = "summary"
		}
		if m["type"] != want {
			t.Errorf("line %d type %v, want %s", i+1, m["type"], want)
		}
	}
}

// The text line has the shape the issue asks for.
func TestTextLine(t *testing.T) {
	js, _ := shapes(t)
	var b bytes.Buffer
	if err := render.NewText(&b, render.Options{WallOffsetNS: offset, Location: time.UTC}).Journey(js[0]); err != nil {
		t.Fatal(err)
	}
	want := "12:00:00.010000 TCP 172.17.0.2:41234 > 172.17.0.3:8080 [S] client:eth0 -> veth1a2b -> docker0 -> veth3c4d -> web:eth0  33us\n"
	if b.String() != want {
		t.Errorf("got  %q\nwant %q", b.String(), want)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850:                     "850ns",
		42 * time.Microsecond:   "42us",
		1500:                    "1.5us",
		1250 * time.Microsecond: "1.25ms",
		2500 * time.Millisecond: "2.5s",
	} {
		if got := render.FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%d) = %q, want %q", d, got, want)
		}
	}
}

// A packet freed by the receiving container's stack is shown as delivered,
// with what the receiver did, not as dropped on the way.
func TestTextDropAfterDelivery(t *testing.T) {
	j := &journey.Journey{
		ID: 1, Verdict: journey.VerdictContainer, Start: jt.Base + 10_000_000, End: jt.Base + 10_030_000, Transit: 30 * time.Microsecond, Fanout: 1,
		Hops: []journey.Hop{
			{Endpoint: topology.Endpoint{Name: "eth0", Role: topology.RoleContainer, Container: &topology.Container{Name: "client"}}, Dir: event.Egress, Parent: -1,
				Pkt: jt.TCP(jt.ClientIP, 41234, jt.WebIP, 9999, event.TCPSyn, 1)},
			{Endpoint: topology.Endpoint{Name: "eth0", Role: topology.RoleContainer, Container: &topology.Container{Name: "web"}}, Dir: event.Ingress, Parent: 0},
		},
		Drop: &journey.Drop{After: 1, AfterDelivery: true, ReasonName: "NO_SOCKET"},
	}
	var b bytes.Buffer
	if err := render.NewText(&b, render.Options{WallOffsetNS: offset, Location: time.UTC}).Journey(j); err != nil {
		t.Fatal(err)
	}
	want := "12:00:00.010000 TCP 172.17.0.2:41234 > 172.17.0.3:9999 [S] client:eth0 -> web:eth0  30us  then freed by web:eth0's stack: NO_SOCKET\n"
	if b.String() != want {
		t.Errorf("got  %q\nwant %q", b.String(), want)
	}
}
