package tracefile_test

import (
	"hash/crc32"
	"runtime"
)

func crc8(b []byte) byte { return byte(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))) }

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.total = ms.TotalAlloc
}
