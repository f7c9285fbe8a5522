package tracefile_test

import (
	"math/rand/v2"
	"testing"

	"github.com/hoptrace/hoptrace/tracer/tracefile"
)

// collidingFingerprints returns n fingerprints of one slot of the writer's
// fingerprint index.
func collidingFingerprints(n int) []uint64 {
	fps := []uint64{1}
	for fp := uint64(2); len(fps) < n; fp++ {
		if tracefile.FPIndexSlot(fp) == tracefile.FPIndexSlot(1) {
			fps = append(fps, fp)
		}
	}
	return fps
}

// TestFingerprintIndexCollisions: packets whose fingerprints share the
// index's slot take each other's references away; their hops, interleaved
// with drops, must still read back as written, and cost no more than a hop
// coded against the previous one.
func TestFingerprintIndexCollisions(t *testing.T) {
	const snaplen = 32
	rng := rand.New(rand.NewPCG(3, 4))
	items := randomItems(rng, 600, snaplen)
	fps := collidingFingerprints(4)
	for i, it := range items {
		fp := fps[(i/3)%len(fps)] // runs of three, then the next colliding one
		if i%5 == 0 {
			fp = fps[rng.IntN(len(fps))]
		}
		switch {
		case it.hop != nil:
			it.hop.Fingerprint = fp
		case it.drop != nil:
			it.drop.Fingerprint = fp
		}
	}
	data, _ := writeAll(t, testHeader(snaplen), items, true)
	_, recs, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items, recs, snaplen)
}
