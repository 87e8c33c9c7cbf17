# ktstr — build, test, benchmark and fuzz the bulk-port dispatch core.
#
#   make demo     record a real run under QEMU and replay it (installs what is missing)
#   make test     every test (end-to-end runs skip with a reason where QEMU is absent)
#   make bench    benchmarks, each printed as a ratio against a reference from the same run
#   make fuzz     every native fuzz target in turn, FUZZTIME each (default 60s)

GO       ?= go
BIN      ?= bin
FUZZTIME ?= 60s
BENCHTIME ?= 1s

.PHONY: all build test bench bench-dispatch fuzz vet clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/ktstr
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/ktstr-init

vet:
	$(GO) vet ./...

test:
	$(GO) test -count=1 ./...

bench: bench-dispatch

bench-dispatch:
	$(GO) test -run '^$$' -bench 'FeedDispatch|CRC32' -benchtime=$(BENCHTIME) ./dispatch \
		| $(GO) run ./tools/benchratio FeedDispatch:CRC32 FeedDispatchRejected:CRC32

clean:
	rm -rf $(BIN)

# Fragments for the live-run, native-VMM, sched_ext, fuzz and replay targets.
-include mk/*.mk

# The oracle's positive control: built with the deliberately broken SNRQ
# gate, the mutation campaign and --save-failures must catch it.
.PHONY: oracle
oracle:
	$(GO) test -count=1 -tags ktstr_brokengate -run BrokenGate ./replay ./cmd/ktstr
