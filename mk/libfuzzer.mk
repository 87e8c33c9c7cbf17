# libFuzzer builds of the native Go fuzz targets, as OSS-Fuzz and
# ClusterFuzzLite make them (docs/fuzzing.md, "libFuzzer and ClusterFuzzLite").
#
#   make libfuzzer             run .clusterfuzzlite/build.sh here, as the base image would
#                              (go-118-fuzz-build, then clang -fsanitize=fuzzer, into out/libfuzzer/),
#                              check that every seed reaches its binary as the values go test runs,
#                              then fuzz each target LIBFUZZER_TIME (20s) with libFuzzer and with
#                              go test -fuzz, one worker each, and print both rates
#   make libfuzzer-build       the build alone
#   make libfuzzer-brokengate  the libFuzzer build of LIBFUZZER_BROKENGATE_TARGET (fuzz_dispatch)
#                              with the broken SNRQ gate fails on its seeds and, fuzzed from
#                              LIBFUZZER_BROKENGATE_CORPUS (checked-in, or empty), finds the bug
#                              within LIBFUZZER_BROKENGATE_TIME (60s)
#   make fuzz-merge            minimize the checked-in corpora (testdata/fuzz/) with libFuzzer's
#                              -merge=1 and write them back in Go's format; FUZZ_MERGE_FROM=DIR...
#                              adds candidates (DIR/FUZZER or DIR/FUNCTION: a ClusterFuzzLite
#                              corpus, go test's fuzz cache)
#   make lint-workflows        actionlint over .github/workflows (make test runs it)
#
# lfuzz (internal/libfuzzer/lfuzz) does the work. It needs clang
# with its libFuzzer runtime (Debian 12: apt-get install clang-16
# libclang-rt-16-dev; exit 3 names it when missing) and installs
# go-118-fuzz-build, at the version build.sh pins, into out/tools/.

.PHONY: libfuzzer libfuzzer-build libfuzzer-brokengate fuzz-merge lint-workflows

LFUZZ = $(GO) run ./internal/libfuzzer/lfuzz

LIBFUZZER_TIME ?= 20s

libfuzzer: libfuzzer-build
	@$(LFUZZ) check
	@$(LFUZZ) rate -time $(LIBFUZZER_TIME) -minimize $(FUZZMINIMIZETIME)

libfuzzer-build:
	@$(LFUZZ) build

# LIBFUZZER_BUILD=keep makes the targets below use the build already in
# out/libfuzzer (as .ci/run does right after make libfuzzer) instead of
# building afresh.
LIBFUZZER_BUILD ?= fresh
LIBFUZZER_BUILT  = $(if $(filter keep,$(LIBFUZZER_BUILD)),,libfuzzer-build)

LIBFUZZER_BROKENGATE_TARGET ?= fuzz_dispatch
LIBFUZZER_BROKENGATE_TIME   ?= 60s
LIBFUZZER_BROKENGATE_CORPUS ?= checked-in

libfuzzer-brokengate: $(LIBFUZZER_BUILT)
	@$(LFUZZ) brokengate -target $(LIBFUZZER_BROKENGATE_TARGET) -time $(LIBFUZZER_BROKENGATE_TIME) -corpus $(LIBFUZZER_BROKENGATE_CORPUS)

FUZZ_MERGE_FROM ?=

fuzz-merge: $(LIBFUZZER_BUILT)
	@$(LFUZZ) merge $(addprefix -from ,$(FUZZ_MERGE_FROM))

# actionlint from the Go module proxy, at a pinned version. Where it
# cannot be fetched (offline, nothing in the module cache) the check is
# skipped with a line saying so; where it runs, the workflows must pass
# and a deliberately broken one (mk/testdata) must fail, or the check is
# not checking.
ACTIONLINT_VERSION ?= v1.7.12
ACTIONLINT = $(GO) run github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

lint-workflows:
	@if ! $(ACTIONLINT) -version >/dev/null 2>&1; then \
		echo "lint-workflows: SKIPPED: actionlint $(ACTIONLINT_VERSION) cannot be fetched from the Go module proxy (offline?), so .github/workflows is not checked"; exit 0; \
	fi; \
	$(ACTIONLINT) .github/workflows/*.yml || { echo "lint-workflows: actionlint $(ACTIONLINT_VERSION) rejects the workflows above"; exit 1; }; \
	if $(ACTIONLINT) mk/testdata/broken-workflow.yml >/dev/null 2>&1; then \
		echo "lint-workflows: actionlint passed mk/testdata/broken-workflow.yml, which it must reject: the check is not working"; exit 1; \
	fi; \
	echo "lint-workflows: actionlint $(ACTIONLINT_VERSION): the $(words $(wildcard .github/workflows/*.yml)) workflows pass, the deliberately broken one fails"
