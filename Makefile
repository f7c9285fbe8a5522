# hoptrace Makefile. `make help` lists the targets.
SHELL      := /bin/bash
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X main.version=$(VERSION)
BPF_CLANG  ?= clang-19
BPF_STRIP  ?= llvm-strip-19
KERNEL     ?=
export BPF_CLANG BPF_STRIP

ROOT_CHECK = @if [ "$$(id -u)" != 0 ]; then echo "make $@: needs root (BPF, netns, Docker): run 'sudo make $@'" >&2; exit 1; fi

.PHONY: help generate build test unit testbed demo vmtest bench lint clean

help: ## show this help
	@grep -hE '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

generate: ## rebuild the bpf2go outputs from bpf/*.c (needs clang-19: vmtests/testbed.sh --generate)
	$(GO) generate ./tracer/...

build: ## build the static hoptrace binary (CGO_ENABLED=0)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o hoptrace ./cmd/hoptrace

testbed: ## install and start what tests and the demo need (Debian packages, dockerd, busybox:local)
	$(ROOT_CHECK)
	vmtests/testbed.sh

test: testbed build ## set up the test bed, then run every test (unit, netns, Docker, VM kernels); needs root
	$(ROOT_CHECK)
	@# -p 1: Docker tests of different packages must not overlap (one restarts dockerd).
	CI=$${CI:-true} $(GO) test -p 1 -count=1 -timeout 30m ./...
	$(MAKE) vmtest

unit: ## run the unprivileged tests only
	$(GO) test ./...

demo: testbed build ## set up the test bed, start demo containers and trace them live; needs root
	$(ROOT_CHECK)
	vmtests/demo.sh ./hoptrace

vmtest: ## run the privileged suite in VMs on Debian kernels 6.1 and 6.12 (KERNEL=6.1 for one)
	$(ROOT_CHECK)
	vmtests/testbed.sh --vm
	$(GO) run ./cmd/vmtest $(if $(KERNEL),-kernel $(KERNEL))

bench: build ## Go benchmarks, then the overhead harness beside tcpdump (root, Docker; writes docs/BENCHMARKS.md); BENCH=go or BENCH=system for one, QUICK=1 for a short try
ifneq ($(BENCH),system)
	$(GO) test -run '^$$' -bench . -benchmem ./...
endif
ifneq ($(BENCH),go)
	$(ROOT_CHECK)
	vmtests/testbed.sh
	@command -v tcpdump >/dev/null || { echo "bench: installing tcpdump"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tcpdump >/dev/null; }
	$(GO) run ./cmd/benchharness -hoptrace ./hoptrace -out docs/BENCHMARKS.md $(if $(filter 1,$(QUICK)),-quick) $(BENCH_FLAGS) \
		-command "make bench$(if $(BENCH), BENCH=$(BENCH))$(if $(QUICK), QUICK=$(QUICK))$(if $(BENCH_FLAGS), BENCH_FLAGS='$(BENCH_FLAGS)')"
endif

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) vet ./...

clean: ## remove build outputs
	rm -f hoptrace
