package tracefile

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/resolver/topology"
	"github.com/hoptrace/hoptrace/tracer/tracefile/tracefiletest"
)

// jsonOverhead is what one json.Unmarshal allocates besides the values.
const jsonOverhead = 2 << 10

// estimate is what the walk charges for js, size classes included, and the
// lengths of the top-level arrays.
func estimate(js []byte, t *jsonType) (int64, []int, error) {
	w := jsonWalk{js: js, budget: math.MaxInt64, counts: make([]int, len(t.fields))}
	err := w.walk(t)
	return w.cost + w.cost/4, w.counts, err
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

func bigSnapshot(n int) *topology.Snapshot {
	s := tracefiletest.Snapshot()
	one := *s
	for len(s.Endpoints) < n {
		s.Endpoints = append(s.Endpoints, one.Endpoints...)
		s.Containers = append(s.Containers, one.Containers...)
	}
	s.Namespaces = []topology.Netns{{Ino: 1, Source: topology.NetnsHost, Nsid: -1}, {Ino: 2, Name: "ns1", Source: topology.NetnsNamed, Path: "/run/netns/ns1", Nsid: 0}}
	return s
}

func repeated(prefix, elem, suffix string, n int) string {
	return prefix + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + suffix
}

// TestJSONEstimate: the walk's charge is at least what decoding allocates
// (over budget or not), and real snapshots are well inside the budget.
func TestJSONEstimate(t *testing.T) {
	real := func(n int) string {
		b, err := json.Marshal(bigSnapshot(n))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	header := `{"hoptrace_version":"v1","kernel":"6.1","start":"2024-05-01T10:00:00+02:00","snaplen":96,"features":["tcx","skb-key"],"containers":["web"]}`
	run := 0
	zones := func(n int) string {
		run++ // new zones each time: they are interned once
		var b strings.Builder
		b.WriteString(`{"containers":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"networks":[{"ip":"fe80::1%%z%d.%d"}]}`, run, i)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	for _, tc := range []struct {
		name string
		js   string // or, when empty, gen()
		gen  func() string
		t    *jsonType
		real bool // a snapshot as hoptrace writes them: must be cheap
	}{
		{"real 5", real(5), nil, snapshotJSON, true},
		{"real 500", real(500), nil, snapshotJSON, true},
		{"real 20000", real(20000), nil, snapshotJSON, true},
		{"header", header, nil, headerJSON, true},
		{"empty endpoints", repeated(`{"endpoints":[`, `{}`, `]}`, 20), nil, snapshotJSON, false},
		{"nested ports", repeated(`{"bridges":[{"ports":[`, `1`, `]}]}`, 300), nil, snapshotJSON, false},
		{"nested networks", repeated(`{"containers":[{"networks":[`, `{"network":"a"}`, `]}]}`, 200), nil, snapshotJSON, false},
		{"addresses", repeated(`{"endpoints":[{"addrs":[`, `"10.0.0.1/8"`, `]}]}`, 300), nil, snapshotJSON, false},
		{"zones", "", func() string { return zones(300) }, snapshotJSON, false},
		{"escapes", repeated(`{"endpoints":[`, `{"name":"\u00e9\n","mac":"\ud83d\ude00"}`, `]}`, 100), nil, snapshotJSON, false},
		{"invalid utf-8", repeated(`{"endpoints":[`, "{\"name\":\"\xff\xfe\"}", `]}`, 100), nil, snapshotJSON, false},
		{"pointers", repeated(`{"endpoints":[`, `{"container":{"id":"x","networks":[{"ip":"::1"}]}}`, `]}`, 100), nil, snapshotJSON, false},
		{"unknown fields", repeated(`{"later":[`, `{"a":[[[{}]]],"b":"\n"}`, `]}`, 100), nil, snapshotJSON, false},
		{"times", `{"time":"2024-05-01T10:00:00.123456789-07:00","host_netns_ino":4026531840}`, nil, snapshotJSON, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Once for what encoding/json and time set up on first use.
			warm := real(5)
			if tc.t == headerJSON {
				warm = header
			}
			if err := json.Unmarshal([]byte(warm), reflect.New(tc.t.rt).Interface()); err != nil {
				t.Fatal(err)
			}
			// The least of three measurements: TotalAlloc counts the whole
			// process, and what other goroutines allocate meanwhile only adds.
			var js []byte
			var est, got int64 = 0, math.MaxInt64
			for range 3 {
				if js = []byte(tc.js); tc.gen != nil {
					js = []byte(tc.gen())
				}
				var counts []int
				var err error
				if est, counts, err = estimate(js, tc.t); err != nil {
					t.Fatalf("walk: %v", err)
				}
				v := reflect.New(tc.t.rt).Interface()
				before := totalAlloc()
				err = decodeMade(js, v, tc.t, counts)
				got = min(got, int64(totalAlloc()-before))
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
			}
			t.Logf("%d bytes of JSON: charged %d (%.2f per byte), allocated %d (%.2f per byte)",
				len(js), est, float64(est)/float64(len(js)), got, float64(got)/float64(len(js)))
			if got > est+jsonOverhead {
				t.Errorf("allocated %d bytes, more than the %d charged and %d", got, est, jsonOverhead)
			}
			if tc.real && est > 5*int64(len(js))/2+1<<10 {
				t.Errorf("charged %d for %d bytes: a real snapshot should take less than 2.5 per byte", est, len(js))
			}
		})
	}
}

// TestJSONWalkAllocs: the walk itself allocates nothing.
func TestJSONWalkAllocs(t *testing.T) {
	js, err := json.Marshal(bigSnapshot(50))
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, len(snapshotJSON.fields))
	if n := testing.AllocsPerRun(10, func() {
		w := jsonWalk{js: js, budget: math.MaxInt64, counts: counts}
		if err := w.walk(snapshotJSON); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per walk", n)
	}
}

// TestJSONTypes: every type in the header and snapshot can be sized.
func TestJSONTypes(t *testing.T) {
	for _, jt := range []*jsonType{headerJSON, snapshotJSON} {
		if jt.err != nil {
			t.Error(jt.err)
		}
	}
	for _, bad := range []any{struct{ M map[string]int }{}, struct{ F float64 }{}, struct{ A any }{}, struct{ topology.Key }{}} {
		if jt := jsonTypeFor(reflect.TypeOf(bad)); jt.err == nil {
			t.Errorf("%T: sized", bad)
		} else if err := decodeJSON([]byte(`{}`), new(struct{}), jt); err == nil {
			t.Errorf("%T: decoded", bad)
		}
	}
}

// TestJSONRefusals: what the walk refuses, with a message naming the place.
func TestJSONRefusals(t *testing.T) {
	for _, tc := range []struct{ js, want string }{
		{`{"endpoints":[{"ifindex":-1}]}`, `field "ifindex": -1 where uint32 belongs at JSON byte 25`},
		{`{"endpoints":[{"ifindex":4294967296}]}`, `field "ifindex": 4294967296 where uint32 belongs`},
		{`{"endpoints":[{"ifindex":1.5}]}`, `field "ifindex": 1.5 where uint32 belongs`},
		{`{"endpoints":[{"name":1}]}`, `field "name": 1 where string belongs`},
		{`{"endpoints":[{"name":"x"},5]}`, `field "endpoints": 5 where topology.Endpoint belongs`},
		{`{"endpoints":{}}`, `field "endpoints": an object where []topology.Endpoint belongs`},
		{`{"endpoints":[{"addrs":[1]}]}`, `field "addrs": 1 where netip.Prefix belongs`},
		{`{"docker_available":"yes"}`, `field "docker_available": a string where bool belongs`},
		{`{"endpoints":[],"Endpoints":[]}`, `field "endpoints" twice`},
		{`{"\u0065ndpoints":[]}`, `escaped key "\\u0065ndpoints"`},
		{`[]`, `an array where topology.Snapshot belongs`},
		{`{"endpoints":[{}`, `unexpected end of JSON input`},
		{`{"endpoints":[{}]}x`, `invalid character 'x' after top-level value`},
	} {
		err := decodeJSON([]byte(tc.js), new(topology.Snapshot), snapshotJSON)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.js, err, tc.want)
		}
		if jerr := json.Unmarshal([]byte(tc.js), new(topology.Snapshot)); jerr == nil && !strings.Contains(tc.want, "twice") && !strings.Contains(tc.want, "escaped") {
			t.Errorf("%s: refused, but encoding/json decodes it", tc.js)
		}
	}
	for _, js := range []string{`null`, `{}`, `{"containers":null,"bridges":[],"later":{"x":[1,"\n",{}]},"ENDPOINTS":[{"NAME":"x"}]}`} {
		var got, want topology.Snapshot
		if err := decodeJSON([]byte(js), &got, snapshotJSON); err != nil {
			t.Errorf("%s: %v", js, err)
		}
		json.Unmarshal([]byte(js), &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded %+v, encoding/json %+v", js, got, want)
		}
	}
}

// FuzzDecodeJSON: decodeJSON never accepts what encoding/json rejects, and
// what it accepts decodes as encoding/json decodes it.
func FuzzDecodeJSON(f *testing.F) {
	for _, n := range []int{1, 3} {
		js, err := json.Marshal(bigSnapshot(n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(js)
	}
	for _, js := range []string{
		`null`, `{}`, `{"ENDPOINTS":[{"NAME":"x","addrs":["10.0.0.1/8"]}],"later":[[{}]]}`,
		`{"time":"2024-05-01T10:00:00+02:00","containers":[{"networks":[{"ip":"fe80::1%eth0"}]}]}`,
		`{"endpoints":[{"name":"\u00e9\n","ifindex":-1}]}`, `{"bridges":[{"ports":[1,2,3]}]}`,
	} {
		f.Add([]byte(js))
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		var got, want topology.Snapshot
		err := decodeJSON(js, &got, snapshotJSON)
		jerr := json.Unmarshal(js, &want)
		switch {
		case err == nil && jerr != nil:
			t.Fatalf("accepted what encoding/json rejects: %v", jerr)
		case err == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("decoded\n%+v\nencoding/json decodes\n%+v", got, want)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Fatalf("error %q is more than one line", err)
		}
	})
}
