#!/bin/sh
# overhead.sh: retired. The whole-system overhead benchmark is now the harness
# cmd/benchharness (make bench BENCH=system; see docs/BENCHMARKS.md): hoptrace's
# capture modes beside tcpdump and no tracer, interleaved, with three workloads.
# This wrapper keeps the old arguments working:
#
#   vmtests/overhead.sh [path/to/hoptrace] [rounds] [seconds-per-run]
set -eu
bin=$(readlink -f "${1:-./hoptrace}")
cd "$(dirname "$0")/.."
exec go run ./cmd/benchharness -hoptrace "$bin" -rounds "${2:-5}" -duration "${3:-5}s"
