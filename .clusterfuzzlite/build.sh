#!/bin/bash -eu
# ClusterFuzzLite (and OSS-Fuzz) build of ktstr's native Go fuzz targets
# (docs/fuzzing.md): each one built with go-118-fuzz-build into a
# libFuzzer binary in $OUT by the base image's compile_native_go_fuzzer,
# and each one's seed corpus as $OUT/NAME_seed_corpus.zip, since
# libFuzzer ignores f.Add. It runs in the base-builder-go image from
# .clusterfuzzlite/Dockerfile, in $SRC/ktstr; `make libfuzzer` runs it
# here, in a copy under out/libfuzzer/src, with our own
# compile_native_go_fuzzer (.clusterfuzzlite/bin) on PATH.
#
# A target whose function is named in more than one .go file under its
# package's directory breaks the base image's coverage build, and a
# harness that calls what another _test.go file declares, or passes its
# f or t as a testing.TB, does not compile with go-118-fuzz-build, which
# compiles the harness file alone and whose F and T are not one
# (docs/fuzzing.md, "What a target needs to build both ways").

# go-118-fuzz-build rewrites each harness to import its own testing
# package, which go.mod must then require; this changes only the copy
# the build runs in. The same version as the tool (lfuzz build installs
# this one; the base image builds its own from the same repository).
go get github.com/AdamKorcz/go-118-fuzz-build/testing@v0.0.0-20250520111509-a70c2aa677fa

compile_native_go_fuzzer github.com/ktstr/ktstr/fuzz FuzzDispatch fuzz_dispatch
compile_native_go_fuzzer github.com/ktstr/ktstr/fuzz FuzzAssembler fuzz_assembler
compile_native_go_fuzzer github.com/ktstr/ktstr/fuzz FuzzPayloads fuzz_payloads
compile_native_go_fuzzer github.com/ktstr/ktstr/fuzz/frames FuzzFrames fuzz_frames
compile_native_go_fuzzer github.com/ktstr/ktstr/fuzz/trace FuzzTraceReader fuzz_trace_reader
compile_native_go_fuzzer github.com/ktstr/ktstr/fuzz/vmm FuzzVirtqueue fuzz_virtqueue
compile_native_go_fuzzer github.com/ktstr/ktstr/fuzz/vmm FuzzConsoleRegisters fuzz_console_registers
compile_native_go_fuzzer github.com/ktstr/ktstr/fuzz/vmm FuzzMMIORegisters fuzz_mmio_registers
compile_native_go_fuzzer github.com/ktstr/ktstr/capture FuzzReader fuzz_reader
compile_native_go_fuzzer github.com/ktstr/ktstr/dispatch FuzzSessionPastBudget fuzz_session_past_budget
compile_native_go_fuzzer github.com/ktstr/ktstr/kernel FuzzEmbeddedConfig fuzz_embedded_config
compile_native_go_fuzzer github.com/ktstr/ktstr/vmm FuzzConsoleLog fuzz_console_log

# The seed corpora: every input `go test` starts each target from (its
# f.Add seeds, built from corpus.Seeds and the checked-in traces under
# corpus/, and testdata/fuzz/FUNCTION), written as the libFuzzer input
# that decodes to the same arguments.
go run ./internal/libfuzzer/lfuzz seeds -o "$OUT" "${BASH_SOURCE[0]}"
