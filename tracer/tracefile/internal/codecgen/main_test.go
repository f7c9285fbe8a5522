package main

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestGenerated: the committed code is what the table makes.
func TestGenerated(t *testing.T) {
	want, err := generate(fields)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../codec_packet_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("codec_packet_gen.go is stale: run go generate ./tracer/tracefile")
	}
}

// TestCheck: a table that misses a field of event.Packet, lists one twice,
// names one that is not there or codes one as another type is refused.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func([]field) []field
		want string
	}{
		{"missing", func(f []field) []field { return f[:len(f)-1] }, "ARPTargetMAC is not in the table"},
		{"twice", func(f []field) []field { return append(f, f[3]) }, "EtherType is listed twice"},
		{"unknown", func(f []field) []field { return append(f, field{"Flow", uvarint16, "flow"}) }, "no field Flow"},
		{"misfit", func(f []field) []field { f[13].coding = mac; return f }, "Seq is a uint32: coding mac does not fit"},
		{"too many", func(f []field) []field {
			for len(f) <= 64 {
				f = append(f, f...)
			}
			return f
		}, "do not fit a 64-bit field mask"},
	} {
		_, err := generate(tc.edit(slices.Clone(fields)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}
