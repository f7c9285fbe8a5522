package exchange

import (
	"hash/maphash"
	"testing"
)

// CollideHashes makes every segment of the linkers made until t ends hash
// alike, as two segments of a busy host may now and then.
func CollideHashes(t testing.TB) {
	old := segHash
	segHash = func(maphash.Seed, segID) uint64 { return 42 }
	t.Cleanup(func() { segHash = old })
}
